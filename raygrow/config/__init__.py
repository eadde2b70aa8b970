"""Typed configs: YAML → validated dataclasses, for runs, growth plans, versions and sweeps.

    binding     from_dict / apply_override / read_yaml / require: the one YAML binding
    shape       Shape: a Llama-architecture model shape, with its family (llama, mistral, qwen2)
    pretrained  `stages[0].init`: the shape of a Hugging Face model directory, read from its config
    operators   the growth operators' table: what each preserves, does to optimizer and LR
    growth      GrowthConfig and check_growth: every growth check that needs no tensor
    versions    the `versions:` section (data versions released one after another)
    run         RunConfig and its sections; load_config

Lower layers (`grow`, `model`, `versions`, `tune`) import from here; this package imports
nothing of raygrow but `errors` (and `storage`, lazily, to read an s3:// model's config), so a
RunConfig can validate its growths completely at load time.
"""

from raygrow.config.binding import apply_override, from_dict, read_yaml, require
from raygrow.config.growth import GrowthConfig, check_growth
from raygrow.config.operators import LR_POLICIES, OPERATORS, OPTIMIZER_POLICIES, Operator
from raygrow.config.run import (
    CheckpointConfig,
    DataConfig,
    MlflowConfig,
    RunConfig,
    S3Config,
    SourceConfig,
    StageConfig,
    TrackingConfig,
    TrainConfig,
    WandbConfig,
    WorkerRange,
    load_config,
    run_config,
)
from raygrow.config.shape import Shape
from raygrow.config.versions import DocumentSlice, VersionsConfig, VersionSpec

__all__ = [
    "LR_POLICIES", "OPERATORS", "OPTIMIZER_POLICIES", "CheckpointConfig", "DataConfig",
    "DocumentSlice", "GrowthConfig", "MlflowConfig", "Operator", "RunConfig", "S3Config", "Shape",
    "SourceConfig", "StageConfig", "TrackingConfig", "TrainConfig", "VersionSpec", "VersionsConfig",
    "WandbConfig",
    "WorkerRange", "apply_override", "check_growth", "from_dict", "load_config", "read_yaml",
    "require", "run_config",
]
