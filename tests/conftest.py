"""Shared fixtures: one real local Ray cluster per session, tiny run configs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # shared helpers of tests (cluster_procs)

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray cluster. Four logical CPUs on a 2-core machine leave room for Ray Data
    tasks beside two 1-CPU training workers (see REFERENCES.md: resource starvation)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def dataset_cache(tmp_path_factory):
    """Packed datasets shared by every test of the session (same config key → prepared once)."""
    return str(tmp_path_factory.mktemp("datasets"))


@pytest.fixture(scope="session")
def tiny_config(tmp_path_factory, dataset_cache):
    """Factory: a tiny single-stage RunConfig on the stdlib corpus; keyword args override sections.
    All runs of the session share one storage directory, so each test uses its own run names."""
    storage_root = str(tmp_path_factory.mktemp("runs"))
    from raygrow.config import RunConfig, from_dict

    def make(name: str = "run", storage: str | None = None, **sections) -> RunConfig:
        raw = {
            "name": name,
            "storage": storage or storage_root,
            "data": {"source": "stdlib", "seq_len": 32, "max_documents": 60, "val_fraction": 0.1,
                     "cache_dir": dataset_cache,
                     "rows_per_shard": 512},
            "model": {"layers": 2, "hidden": 32, "heads": 4, "kv_heads": 2, "ffn": 64},
            "train": {"tokens": 6 * 512, "batch_tokens": 512, "micro_batch": 4, "workers": 1,
                      "cpus_per_worker": 1, "zero_stage": 2, "lr": 1e-3, "warmup_steps": 2,
                      "log_every": 1, "val_every": 3, "val_rows": 8, "max_failures": 0,
                      "deterministic": True},
            "checkpoint": {"every_steps": 2, "keep": 5},
        }
        for section, values in sections.items():
            if isinstance(values, dict):
                raw[section].update(values)
            else:
                raw[section] = values
        return from_dict(RunConfig, raw)

    return make


@pytest.fixture(scope="session")
def shipped_plan(tmp_path_factory):
    """Factory: a shipped plan loaded as a RunConfig; one that starts from a pretrained model
    (`init: ./models/tiny-llama`) gets the tiny model jobs/make_tiny_hf.py writes, in a tmp dir."""
    from raygrow.config import load_config

    made: dict[str, str] = {}

    def load(path: Path):
        raw = path.read_text()
        if "init:" not in raw:
            return load_config(path)
        if "llama" not in made:
            from raygrow.tiny_hf import write_tiny_model

            made["llama"] = str(write_tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama"))
        return load_config(path, [f"stages.0.init={made['llama']}"])

    return load
