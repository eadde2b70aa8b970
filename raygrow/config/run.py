"""The run config: one YAML file for a whole run (a single model, a growth plan or versions).

Every section validates itself in `__post_init__` and raises `ConfigError` naming the field;
`RunConfig` then checks what needs several sections: every growth of a plan completely (shapes,
operators, layer orders, mask ramps that end inside their stage), batches that split over the
workers, versions. Nothing here starts Ray or touches data.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from raygrow.config.binding import apply_override, from_dict, read_yaml, require
from raygrow.config.growth import GrowthConfig, check_transition
from raygrow.config.pretrained import run_config_raw
from raygrow.config.shape import Shape
from raygrow.config.versions import VersionsConfig, check_versions

# The module, not the class: raygrow.eval.config imports this package's binding, so whichever of
# the two is imported first, the class is only looked up once both are loaded (from_dict reads the
# type hints at call time).
from raygrow.eval import config as eval_config


@dataclass
class SourceConfig:
    """One source of a data mixture (`data.sources[i]`)."""

    source: str  # like data.source: "stdlib[:glob]", a file, directory (a `datasets` save_to_disk
    #              directory too), or a glob (local or s3://)
    weight: float = 1.0  # the source's share of the packed rows, relative to the other weights
    text_field: str | None = None  # column holding its text; None = data.text_field

    def __post_init__(self) -> None:
        require(bool(self.source), "source", "must name 'stdlib', a file, a directory or a glob")
        require(self.weight > 0, "weight", f"must be > 0, got {self.weight}")
        require(self.text_field is None or bool(self.text_field), "text_field",
                "must name a column, or be left out")


INGESTS = ("ray_data", "direct")  # data.ingest: how training workers get their rows


@dataclass
class DataConfig:
    """Where text comes from and how it becomes packed rows."""

    source: str | None = None  # "stdlib" (this Python's standard library; "stdlib:email/*" a part
    #   of it), a file, directory or glob (local or s3://); None = stdlib unless `sources` is given
    sources: list[SourceConfig] | None = None  # a mixture instead of `source`: rows of each source
    #   interleaved by weight when packing (README: Data mixtures)
    text_field: str = "text"  # column holding the text in .jsonl / .parquet / .arrow sources
    tokenizer: str = "byte"  # "byte" or a local Hugging Face tokenizer directory
    # tokens per training sequence; rows hold seq_len + 1 (inputs and shifted labels)
    seq_len: int = 128
    # share of documents held out for validation (chosen by content hash)
    val_fraction: float = 0.02
    max_documents: int | None = None  # use only the first N documents (sorted by path): small runs
    cache_dir: str | None = None  # packed shards live here; None = <storage>/datasets
    rows_per_shard: int = 4096  # packed rows per parquet shard
    shuffle_seed: int = 0  # row order: a seeded streaming order per epoch
    shuffle_window: int = 8  # shards whose rows are shuffled together (locality and memory: a
    # worker holds at most two windows of shards; a window ≥ the shard count shuffles whole epochs)
    ingest: str = "ray_data"  # how workers get their rows: "ray_data" (a Ray Data pipeline per
    #   worker: read tasks, prefetch) or "direct" (read in the worker's process)
    ingest_cpus: float = 0.25  # CPUs each worker's read task asks for; the workers' default CPU
    #   share leaves them free, so the data never waits behind training
    prefetch_steps: int = 2  # steps of rows a worker holds ready ahead of training
    ingest_timeout_s: float = 300.0  # a step's rows that take longer are an error, not a hang

    def __post_init__(self) -> None:
        if self.sources is None:
            self.source = "stdlib" if self.source is None else self.source
            require(bool(self.source), "source",
                    "must name 'stdlib', a file, a directory or a glob")
        else:
            require(self.source is None, "sources", "give either data.source or data.sources, not "
                    "both (a single source is data.sources: [{source: ...}])")
            require(len(self.sources) >= 1, "sources", "must list at least one source")
        require(self.seq_len >= 2, "seq_len", f"must be ≥ 2, got {self.seq_len}")
        require(0.0 < self.val_fraction < 1.0, "val_fraction",
                 f"must be in (0, 1), got {self.val_fraction}")
        require(self.max_documents is None or self.max_documents >= 1, "max_documents",
                 f"must be ≥ 1, got {self.max_documents}")
        require(self.rows_per_shard >= 1, "rows_per_shard",
                f"must be ≥ 1, got {self.rows_per_shard}")
        require(self.shuffle_window >= 1, "shuffle_window",
                f"must be ≥ 1 shard, got {self.shuffle_window}")
        require(self.ingest in INGESTS, "ingest",
                f"must be one of {', '.join(INGESTS)}, got {self.ingest!r}")
        require(self.ingest_cpus > 0, "ingest_cpus", f"must be > 0, got {self.ingest_cpus}")
        require(self.prefetch_steps >= 1, "prefetch_steps",
                f"must be ≥ 1, got {self.prefetch_steps}")
        require(self.ingest_timeout_s > 0, "ingest_timeout_s",
                f"must be > 0, got {self.ingest_timeout_s}")

    @property
    def mixture(self) -> list[SourceConfig]:
        """The sources with their text fields resolved; `data.source` is a mixture of one."""
        if self.sources is None:
            return [SourceConfig(self.source, 1.0, self.text_field)]
        return [SourceConfig(item.source, item.weight, item.text_field or self.text_field)
                for item in self.sources]

    def source_field(self, index: int) -> str:
        """The config field that names source `index`, for error messages."""
        return "data.source" if self.sources is None else f"data.sources[{index}].source"


@dataclass
class TrainConfig:
    """The per-worker training loop: batch, optimizer, schedule, parallelism."""

    tokens: int = 1_000_000  # training tokens for the run (rounded down to whole steps); 0 only
    #                          for a plan's pretrained first stage (`stages[0].init`)
    workers: int = 1  # Ray Train workers (data-parallel ranks)
    cpus_per_worker: float | None = None  # None = share the node's CPUs, leaving room for Ray Data
    use_gpu: bool | None = None  # None = use GPUs when the cluster has them
    zero_stage: int = 2  # DeepSpeed ZeRO stage 0..3
    precision: Literal["fp32", "bf16"] = "fp32"
    batch_tokens: int = 8192  # global batch in tokens, fixed whatever the worker count
    micro_batch: int = 16  # rows per worker per forward pass; the rest is gradient accumulation
    lr: float = 3e-3  # peak learning rate
    min_lr_ratio: float = 0.1  # floor of cosine / WSD decay as a fraction of lr
    warmup_steps: int = 20
    schedule: Literal["constant", "cosine", "wsd"] = "cosine"
    decay_fraction: float = 0.1  # WSD: share of steps in the final decay (MiniCPM: ~10% suffices)
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping
    log_every: int = 10  # steps between metric lines
    val_every: int = 50  # steps between validation passes; the last step always validates
    val_rows: int = 64  # packed validation rows per validation pass
    seed: int = 0  # model init
    # Ray Train restarts the worker group from the latest checkpoint this often
    max_failures: int = 2
    resource_timeout_s: float = 600.0  # how long a stage waits for the cluster to grow to its
    #                                    workers, or to place them again after losing a node
    placement: Literal["pack", "spread"] = "pack"  # workers on as few nodes as fit, or one per node
    stop_grace_s: float = 120.0  # on SIGTERM / Ctrl-C: how long the driver waits for the workers to
    #                              checkpoint at the next step boundary before it stops them anyway
    lease_timeout_s: float = 120.0  # a run's lease (one writer per run directory) not renewed for
    #                                 this long is stale: another driver may take the run over
    on_nonfinite: Literal["skip", "rollback", "stop"] = "rollback"  # a step whose loss or gradient
    #   norm is not finite is never applied; then: skip its rows and go on, roll back to the
    #   stage's last checkpoint and leave its rows out, or stop the run (incomplete, resumable)
    max_rollbacks: int = 3  # rollbacks with no checkpoint between them before the run stops
    spike_zscore: float = 6.0  # a loss this many standard deviations above the recent mean is
    #                            logged as a `spike` event
    spike_window: int = 50  # steps the spike detector's mean and deviation are taken over
    deterministic: bool = False  # torch deterministic algorithms, for bit-exact resume; measured
    #                              here about 6x slower inside a DeepSpeed worker on CPU
    stop_after: int | None = None  # end this invocation after this many steps (checkpointed), as a
    #                                preemption would; rerunning the same name continues the run
    log_rows: bool = False  # debug: each rank writes the packed-row ids it trains on to <run>/rows/
    # torch.compile each transformer block (regional; names unchanged): faster
    compile: bool = False
    #                        steps on a GPU after a one-off compile; ZeRO 0-2 only
    activation_checkpointing: Literal["none", "full", "every_k"] = "none"  # recompute blocks'
    #   activations in the backward pass instead of keeping them (less memory, ~1/3 more compute):
    #   none; full = every decoder block; every_k = blocks 0, k, 2k, ... (the Hugging Face model's
    #   own non-reentrant gradient checkpointing)
    activation_checkpointing_every: int = 2  # every_k: the k
    trainable: str | list[str] = "all"  # what trains; the rest is frozen (no gradient, no AdamW
    #   state, bit-identical): all; new_blocks = the blocks the stage's growth added (LLaMA-Pro
    #   block expansion); or parameter-name patterns (fnmatch), e.g. ["model.layers.1[2-5].*"]

    def __post_init__(self) -> None:
        require(self.tokens >= 0, "tokens", f"must be ≥ 0, got {self.tokens}")
        require(self.workers >= 1, "workers", f"must be ≥ 1, got {self.workers}")
        require(self.cpus_per_worker is None or self.cpus_per_worker > 0, "cpus_per_worker",
                 f"must be > 0, got {self.cpus_per_worker}")
        require(0 <= self.zero_stage <= 3, "zero_stage", f"must be 0..3, got {self.zero_stage}")
        require(self.precision in ("fp32", "bf16"), "precision",
                 f"must be fp32 or bf16, got {self.precision!r}")
        require(self.schedule in ("constant", "cosine", "wsd"), "schedule",
                 f"must be constant, cosine or wsd, got {self.schedule!r}")
        require(self.batch_tokens >= 1, "batch_tokens", f"must be ≥ 1, got {self.batch_tokens}")
        require(self.micro_batch >= 1, "micro_batch", f"must be ≥ 1, got {self.micro_batch}")
        require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        require(0 <= self.min_lr_ratio <= 1, "min_lr_ratio",
                f"must be in [0, 1], got {self.min_lr_ratio}")
        require(self.warmup_steps >= 0, "warmup_steps", f"must be ≥ 0, got {self.warmup_steps}")
        require(0 < self.decay_fraction <= 1, "decay_fraction",
                 f"must be in (0, 1], got {self.decay_fraction}")
        require(self.grad_clip >= 0, "grad_clip", f"must be ≥ 0, got {self.grad_clip}")
        require(self.weight_decay >= 0, "weight_decay", f"must be ≥ 0, got {self.weight_decay}")
        for name in ("beta1", "beta2"):  # AdamW's decay rates: 1 or more never forgets (or grows)
            require(0 <= getattr(self, name) < 1, name,
                    f"must be in [0, 1), got {getattr(self, name)}")
        require(self.on_nonfinite in ("skip", "rollback", "stop"), "on_nonfinite",
                f"must be skip, rollback or stop, got {self.on_nonfinite!r}")
        require(self.max_rollbacks >= 0, "max_rollbacks", f"must be ≥ 0, got {self.max_rollbacks}")
        require(self.spike_zscore > 0, "spike_zscore", f"must be > 0, got {self.spike_zscore}")
        require(self.spike_window >= 2, "spike_window", f"must be ≥ 2, got {self.spike_window}")
        for name in ("resource_timeout_s", "stop_grace_s", "lease_timeout_s"):
            require(getattr(self, name) > 0, name,
                    f"must be > 0 seconds, got {getattr(self, name)}")
        require(self.max_failures >= -1, "max_failures",
                f"must be ≥ -1 (-1 = forever), got {self.max_failures}")
        require(not (self.compile and self.zero_stage == 3), "compile",
                 "is not supported with zero_stage 3 (ZeRO-3 gathers parameters inside the "
                 "blocks); use zero_stage 0-2 or compile: false")
        require(self.activation_checkpointing in ("none", "full", "every_k"),
                "activation_checkpointing",
                f"must be none, full or every_k, got {self.activation_checkpointing!r}")
        require(isinstance(self.activation_checkpointing_every, int)
                and self.activation_checkpointing_every >= 1, "activation_checkpointing_every",
                f"must be a whole number ≥ 1, got {self.activation_checkpointing_every!r}")
        check_trainable(self.trainable, "trainable")
        require(self.trainable == "all" or self.zero_stage < 3, "trainable",
                "freezing parameters is supported with zero_stage 0-2 (ZeRO-3 partitions frozen "
                "parameters too); use zero_stage 2 or trainable: all")
        require(self.stop_after is None or self.stop_after >= 1, "stop_after",
                 f"must be ≥ 1, got {self.stop_after}")
        for name in ("log_every", "val_every", "val_rows"):
            require(getattr(self, name) >= 1, name, f"must be ≥ 1, got {getattr(self, name)}")


@dataclass
class CheckpointConfig:
    every_steps: int = 50  # save a checkpoint every K steps and at the end
    keep: int = 2  # keep the last k complete checkpoints

    def __post_init__(self) -> None:
        require(self.every_steps >= 1, "every_steps", f"must be ≥ 1, got {self.every_steps}")
        require(self.keep >= 1, "keep", f"must be ≥ 1, got {self.keep}")


@dataclass
class S3Config:
    """Settings for `s3://bucket/prefix` paths (storage, data.source, data.cache_dir). Credentials
    are never config: each process takes them from the standard AWS chain (AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance role)."""

    # an S3-compatible store (MinIO, R2, ...); None = AWS_ENDPOINT_URL, else AWS
    endpoint_url: str | None = None
    region: str | None = None  # None = AWS_REGION / AWS_DEFAULT_REGION / the profile's

    def __post_init__(self) -> None:
        require(self.endpoint_url is None or self.endpoint_url.startswith(("http://", "https://")),
                 "endpoint_url", f"must be an http:// or https:// URL, got {self.endpoint_url!r}")


@dataclass
class WandbConfig:
    """Weights & Biases: the run is one W&B run, resumed by id when the run resumes."""

    project: str  # W&B project the run is logged to
    # offline: files only (`wandb sync` later)
    mode: Literal["online", "offline", "disabled"] = "online"
    entity: str | None = None  # team or user; None = the API key's default entity
    dir: str | None = None  # local directory for W&B's files; None = the run directory (local
    #                         storage only: W&B writes to a local disk)

    def __post_init__(self) -> None:
        require(bool(self.project), "project", "must name a W&B project")


@dataclass
class MlflowConfig:
    """MLflow: the run is one MLflow run in `experiment`, continued by id when the run resumes."""

    tracking_uri: str | None = None  # a server (http://…), `file:/path` or a database URI;
    #                                  None = MLFLOW_TRACKING_URI, else MLflow's own default
    experiment: str = "raygrow"  # created when missing

    def __post_init__(self) -> None:
        require(bool(self.experiment), "experiment", "must name an MLflow experiment")


@dataclass
class TrackingConfig:
    """Experiment trackers the driver logs the run to (config, per-step metrics, validation,
    growth events and stage boundaries); each is off unless given."""

    tensorboard: bool = False  # TensorBoard event files
    tensorboard_dir: str | None = None  # None = <run directory>/tensorboard (local storage only)
    wandb: WandbConfig | None = None
    mlflow: MlflowConfig | None = None
    every_s: float = 10.0  # how often the driver forwards new records while a stage trains

    def __post_init__(self) -> None:
        require(self.every_s > 0, "every_s", f"must be > 0 seconds, got {self.every_s}")

    @property
    def enabled(self) -> bool:
        return self.tensorboard or self.wandb is not None or self.mlflow is not None


@dataclass
class WorkerRange:
    """Elastic worker count: Ray Train runs with as many as fit, between min and max."""

    min: int
    max: int

    def __post_init__(self) -> None:
        require(self.min >= 1, "min", f"must be ≥ 1, got {self.min}")
        require(self.max >= self.min, "max", f"must be ≥ min ({self.min}), got {self.max}")


@dataclass
class StageConfig:
    """One stage of a growth plan: a shape trained for a number of tokens."""

    tokens: int  # training tokens in this stage (0: a pretrained first stage grown at once)
    shape: Shape | None = None  # the model of this stage; with `init`, read from the model (a
    #   shape given must agree), and a later stage's fields left out are the stage before's
    init: str | None = None  # first stage only: a Hugging Face model directory (local or s3://)
    #   whose weights, config and tokenizer (unless data.tokenizer names one) start the run
    params: float | None = None  # planning only: a parameter count instead of a shape (e.g. 16e9)
    workers: int | WorkerRange | None = None  # None = train.workers
    zero_stage: int | None = None  # None = train.zero_stage
    growth: GrowthConfig | None = None  # how this stage's model comes from the previous one
    trainable: str | list[str] | None = None  # None = train.trainable (all, new_blocks, patterns)

    def __post_init__(self) -> None:
        require(self.tokens >= 0, "tokens", f"must be ≥ 0, got {self.tokens}")
        require((self.shape is None) != (self.params is None), "shape",
                 "give either a shape or params (a parameter count, for planning only)")
        require(self.params is None or self.params >= 1, "params",
                f"must be ≥ 1, got {self.params}")
        require(not isinstance(self.workers, int) or self.workers >= 1, "workers",
                 f"must be ≥ 1, got {self.workers}")
        require(self.zero_stage is None or 0 <= self.zero_stage <= 3, "zero_stage",
                 f"must be 0..3, got {self.zero_stage}")
        if self.trainable is not None:
            check_trainable(self.trainable, "trainable")


def check_trainable(trainable: str | list[str], name: str) -> None:
    if isinstance(trainable, str):
        require(trainable in ("all", "new_blocks"), name,
                f"must be all, new_blocks or a list of parameter-name patterns, got {trainable!r}")
    else:
        require(bool(trainable) and all(isinstance(p, str) and p for p in trainable), name,
                f"must list at least one parameter-name pattern, got {trainable!r}")


@dataclass
class RunConfig:
    """A whole run: one YAML file. Either one `model` trained for `train.tokens`, or `stages`."""

    model: Shape | None = None  # single-stage runs
    stages: list[StageConfig] = field(default_factory=list)  # growth plans (replaces `model`)
    name: str = "run"  # run directory name under storage; rerunning the same name resumes
    # where run directories and packed datasets live: a path or s3://bucket/prefix
    storage: str = "./runs"
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    # data versions released one after another (raygrow.versions)
    versions: VersionsConfig | None = None
    s3: S3Config = field(default_factory=S3Config)
    eval: eval_config.EvalConfig | None = None  # evaluate the stages' exports (raygrow.eval)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def __post_init__(self) -> None:
        require(bool(self.name) and "/" not in self.name and not self.name.startswith("."), "name",
                f"must be a plain directory name, got {self.name!r}")
        require((self.model is None) != (not self.stages), "model",
                "give either model (one stage) or stages (a growth plan)")
        require(self.train.batch_tokens % self.data.seq_len == 0, "train.batch_tokens",
                f"must be a multiple of data.seq_len ({self.data.seq_len}), "
                f"got {self.train.batch_tokens}")
        if self.stages:
            require(self.stages[0].growth is None, "stages[0].growth",
                    "the first stage has nothing to grow from")
            for index, stage in enumerate(self.stages):
                require(not (index and stage.init), f"stages[{index}].init",
                        "only the first stage can start from a pretrained model")
                require(stage.tokens >= 1 or (index == 0 and stage.init), f"stages[{index}].tokens",
                        f"must be ≥ 1, got {stage.tokens} (0 only for a first stage with init)")
            for index in range(1, len(self.stages)):
                self._check_growth(index)
        for index, stage in enumerate(self.plan_stages):
            self._check_stage(f"stages[{index}]." if self.stages else "", stage)
        self._check_tracking()
        if self.versions is not None:
            require(not self.stages, "stages",
                    "a versions plan trains `model` and grows at version "
                    "boundaries (versions.data[k].shape and .growth); leave stages out")
            require(self.data.sources is None, "data.sources", "a versions plan reads data.source "
                    "and versions.data[k].source; a mixture is not supported there")
            check_versions(self.versions, self.model, self.data.source, self.train.batch_tokens)

    def _check_growth(self, index: int) -> None:
        """Stage `index` grows stage index-1 in a way the growth step can do, and a mask ramp
        ends inside the stage (its final checkpoint and export must hold the unmasked model)."""
        before, after = self.stages[index - 1], self.stages[index]
        where = f"stages[{index}]"
        require(after.growth is not None, f"{where}.growth",
                "required for every stage after the first")
        if before.shape is None or after.shape is None:
            return  # a params-only plan: nothing to check beyond the operator names
        check_transition(before.shape, after.shape, after.growth, where, f"stage {index - 1}")
        steps = after.tokens // self.train.batch_tokens
        require(not after.growth.masked or after.growth.ramp_steps < steps,
                f"{where}.growth.ramp_steps",
                f"the mask ramp ({after.growth.ramp_steps} steps) must end inside the stage's "
                f"{steps} steps; lower it below {steps} or give the stage more tokens")

    def _check_tracking(self) -> None:
        """TensorBoard and W&B write to a local disk: with s3:// storage they need a local dir."""
        if not self.storage.startswith("s3://"):
            return
        tracking = self.tracking
        require(not tracking.tensorboard or tracking.tensorboard_dir is not None,
                "tracking.tensorboard_dir", "required when storage is s3:// (TensorBoard writes "
                "to a local directory); give one")
        require(tracking.wandb is None or tracking.wandb.dir is not None, "tracking.wandb.dir",
                "required when storage is s3:// (W&B writes to a local directory); give one")

    def _check_stage(self, where: str, stage: StageConfig) -> None:
        if stage.shape is not None:
            require(self.data.seq_len <= stage.shape.max_positions, "data.seq_len",
                    f"{self.data.seq_len} is over {where or 'model.'}max_positions "
                    f"({stage.shape.max_positions})")
        trainable = stage.trainable or self.train.trainable
        require(trainable == "all" or self.stage_zero(stage) < 3,
                f"{where}zero_stage" if where else "train.zero_stage",
                "must be 0-2 while parameters are frozen (train.trainable)")
        low, high = self.worker_range(stage)
        for workers in range(low, high + 1):
            require(self.batch_rows % (workers * self.train.micro_batch) == 0, "train.micro_batch",
                    f"{self.batch_rows} rows per step must split evenly over {workers} workers × "
                    f"micro_batch {self.train.micro_batch}")
        # 0 tokens: a pretrained first stage (or the single-stage config of it) trains nothing
        require(stage.tokens >= self.train.batch_tokens or stage.tokens == 0,
                f"{where}tokens" if where else "train.tokens",
                f"{stage.tokens} is less than one batch ({self.train.batch_tokens} tokens)")

    @property
    def plan_stages(self) -> list[StageConfig]:
        """The stages of this run; a single-stage run is one stage of `model` for `train.tokens`."""
        if self.stages:
            return self.stages
        return [StageConfig(tokens=self.train.tokens, shape=self.model, workers=self.train.workers,
                            zero_stage=self.train.zero_stage)]

    def worker_range(self, stage: StageConfig) -> tuple[int, int]:
        workers = self.train.workers if stage.workers is None else stage.workers
        return ((workers.min, workers.max) if isinstance(workers, WorkerRange)
                else (workers, workers))

    def stage_config(self, index: int) -> "RunConfig":
        """Stage `index` as a single-stage run `<run_dir>/stage-<index>` (the coordinator trains
        these)."""
        stage = self.plan_stages[index]
        train = dataclasses.replace(self.train, tokens=stage.tokens,
                                    workers=self.worker_range(stage)[1],
                                    zero_stage=self.stage_zero(stage))
        data = dataclasses.replace(self.data, cache_dir=self.dataset_root)
        return dataclasses.replace(self, model=stage.shape, stages=[], name=stage_name(index),
                                   storage=self.run_dir, train=train, data=data)

    @property
    def batch_rows(self) -> int:
        """Packed rows per optimizer step, across all workers."""
        return self.train.batch_tokens // self.data.seq_len

    @property
    def total_steps(self) -> int:
        """Optimizer steps of a single-stage run (what `train.tokens` buys in whole batches)."""
        return self.train.tokens // self.train.batch_tokens

    @property
    def stage_steps(self) -> list[int]:
        """Optimizer steps of each stage: its tokens in whole batches of `train.batch_tokens`."""
        return [stage.tokens // self.train.batch_tokens for stage in self.plan_stages]

    def stage_zero(self, stage: StageConfig) -> int:
        """The ZeRO stage a stage runs at: its own, else `train.zero_stage`."""
        return self.train.zero_stage if stage.zero_stage is None else stage.zero_stage

    def grad_accum(self, workers: int) -> int:
        """Micro-steps per optimizer step at `workers` data-parallel ranks (the batch is fixed)."""
        return self.batch_rows // (workers * self.train.micro_batch)

    @property
    def run_dir(self) -> str:
        return f"{self.storage.rstrip('/')}/{self.name}"

    @property
    def dataset_root(self) -> str:
        return self.data.cache_dir or f"{self.storage.rstrip('/')}/datasets"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def stage_name(index: int) -> str:
    """The directory of a plan's stage `index` under the run directory."""
    return f"stage-{index}"


def load_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    """Read a run config YAML, apply `a.b=c` overrides, validate. Raises ConfigError."""
    raw = read_yaml(path)
    for assignment in overrides:
        apply_override(raw, assignment)
    return run_config(raw)


def run_config(raw: dict[str, Any]) -> RunConfig:
    """A RunConfig from a raw mapping, a pretrained first stage resolved first. Raises
    ConfigError."""
    return from_dict(RunConfig, run_config_raw(raw))
