"""Typed run configs: YAML -> nested dataclasses, `a.b=c` overrides, validation.

Every section validates itself in `__post_init__` and raises `ConfigError` naming the field;
`from_dict` rejects unknown keys and prefixes nested fields with their section, so a user sees
`train.zero_stage: must be 0..3, got 5`. Nothing here starts Ray or touches data.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from raygrow.errors import ConfigError


def _require(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ConfigError(name, message)


@dataclass
class Shape:
    """A Llama-architecture model shape."""

    layers: int  # transformer blocks
    hidden: int  # model width d
    heads: int  # attention heads; head_dim = hidden / heads
    kv_heads: int | None = None  # grouped-query heads; None = heads (plain multi-head attention)
    ffn: int | None = None  # SwiGLU intermediate size; None = 8/3·hidden rounded up to 8
    vocab: int | None = None  # None = the tokenizer's vocabulary size
    max_positions: int = 2048  # RoPE positions the model is built for; data.seq_len must fit
    tie_embeddings: bool = False  # share input embedding and LM head

    def __post_init__(self) -> None:
        for name in ("layers", "hidden", "heads"):
            _require(getattr(self, name) >= 1, name, f"must be ≥ 1, got {getattr(self, name)}")
        if self.kv_heads is None:
            self.kv_heads = self.heads
        if self.ffn is None:
            self.ffn = -(-8 * self.hidden // 3 // 8) * 8
        _require(self.hidden % self.heads == 0, "hidden",
                 f"must be divisible by heads ({self.heads}), got {self.hidden}")
        _require(self.kv_heads >= 1 and self.heads % self.kv_heads == 0, "kv_heads",
                 f"must divide heads ({self.heads}), got {self.kv_heads}")
        _require(self.ffn >= 1, "ffn", f"must be ≥ 1, got {self.ffn}")
        _require(self.vocab is None or self.vocab >= 2, "vocab", f"must be ≥ 2, got {self.vocab}")
        _require(self.max_positions >= 1, "max_positions", f"must be ≥ 1, got {self.max_positions}")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


@dataclass
class DataConfig:
    """Where text comes from and how it becomes packed rows."""

    source: str = "stdlib"  # "stdlib" (this Python's standard library), a file, directory or glob
    text_field: str = "text"  # column holding the text in .jsonl / .parquet sources
    tokenizer: str = "byte"  # "byte" or a local Hugging Face tokenizer directory
    seq_len: int = 128  # tokens per training sequence; rows hold seq_len + 1 (inputs and shifted labels)
    val_fraction: float = 0.02  # share of documents held out for validation (chosen by content hash)
    max_documents: int | None = None  # use only the first N documents (sorted by path): small runs
    cache_dir: str | None = None  # packed shards live here; None = <storage>/datasets
    rows_per_shard: int = 4096  # packed rows per parquet shard
    shuffle_seed: int = 0  # row order is a seeded permutation per epoch

    def __post_init__(self) -> None:
        _require(bool(self.source), "source", "must name 'stdlib', a file, a directory or a glob")
        _require(self.seq_len >= 2, "seq_len", f"must be ≥ 2, got {self.seq_len}")
        _require(0.0 < self.val_fraction < 1.0, "val_fraction",
                 f"must be in (0, 1), got {self.val_fraction}")
        _require(self.max_documents is None or self.max_documents >= 1, "max_documents",
                 f"must be ≥ 1, got {self.max_documents}")
        _require(self.rows_per_shard >= 1, "rows_per_shard", f"must be ≥ 1, got {self.rows_per_shard}")


@dataclass
class TrainConfig:
    """The per-worker training loop: batch, optimizer, schedule, parallelism."""

    tokens: int = 1_000_000  # training tokens for the run (rounded down to whole steps)
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
    max_failures: int = 2  # Ray Train restarts the worker group from the latest checkpoint this often
    deterministic: bool = True  # torch deterministic algorithms: bit-exact resume
    stop_after: int | None = None  # end this invocation after this many steps (checkpointed), as a
    #                                preemption would; rerunning the same name continues the run
    log_rows: bool = False  # debug: each rank writes the packed-row ids it trains on to <run>/rows/

    def __post_init__(self) -> None:
        _require(self.tokens >= 1, "tokens", f"must be ≥ 1, got {self.tokens}")
        _require(self.workers >= 1, "workers", f"must be ≥ 1, got {self.workers}")
        _require(self.cpus_per_worker is None or self.cpus_per_worker > 0, "cpus_per_worker",
                 f"must be > 0, got {self.cpus_per_worker}")
        _require(0 <= self.zero_stage <= 3, "zero_stage", f"must be 0..3, got {self.zero_stage}")
        _require(self.precision in ("fp32", "bf16"), "precision",
                 f"must be fp32 or bf16, got {self.precision!r}")
        _require(self.schedule in ("constant", "cosine", "wsd"), "schedule",
                 f"must be constant, cosine or wsd, got {self.schedule!r}")
        _require(self.batch_tokens >= 1, "batch_tokens", f"must be ≥ 1, got {self.batch_tokens}")
        _require(self.micro_batch >= 1, "micro_batch", f"must be ≥ 1, got {self.micro_batch}")
        _require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        _require(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", f"must be in [0, 1], got {self.min_lr_ratio}")
        _require(self.warmup_steps >= 0, "warmup_steps", f"must be ≥ 0, got {self.warmup_steps}")
        _require(0 < self.decay_fraction <= 1, "decay_fraction",
                 f"must be in (0, 1], got {self.decay_fraction}")
        _require(self.grad_clip >= 0, "grad_clip", f"must be ≥ 0, got {self.grad_clip}")
        _require(self.max_failures >= -1, "max_failures", f"must be ≥ -1 (-1 = forever), got {self.max_failures}")
        _require(self.stop_after is None or self.stop_after >= 1, "stop_after",
                 f"must be ≥ 1, got {self.stop_after}")
        for name in ("log_every", "val_every", "val_rows"):
            _require(getattr(self, name) >= 1, name, f"must be ≥ 1, got {getattr(self, name)}")


@dataclass
class CheckpointConfig:
    every_steps: int = 50  # save a checkpoint every K steps and at the end
    keep: int = 2  # keep the last k complete checkpoints

    def __post_init__(self) -> None:
        _require(self.every_steps >= 1, "every_steps", f"must be ≥ 1, got {self.every_steps}")
        _require(self.keep >= 1, "keep", f"must be ≥ 1, got {self.keep}")


@dataclass
class RunConfig:
    """A whole run: one YAML file."""

    model: Shape
    name: str = "run"  # run directory name under storage; rerunning the same name resumes
    storage: str = "./runs"  # where run directories and packed datasets live
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)

    def __post_init__(self) -> None:
        _require(bool(self.name) and "/" not in self.name and not self.name.startswith("."), "name",
                 f"must be a plain directory name, got {self.name!r}")
        _require(self.data.seq_len <= self.model.max_positions, "data.seq_len",
                 f"{self.data.seq_len} is over model.max_positions ({self.model.max_positions})")
        rows = self.batch_rows
        _require(self.train.batch_tokens % self.data.seq_len == 0, "train.batch_tokens",
                 f"must be a multiple of data.seq_len ({self.data.seq_len}), got {self.train.batch_tokens}")
        per_step = self.train.workers * self.train.micro_batch
        _require(rows % per_step == 0, "train.micro_batch",
                 f"{rows} rows per step must split evenly over {self.train.workers} workers × "
                 f"micro_batch {self.train.micro_batch}")
        _require(self.total_steps >= 1, "train.tokens",
                 f"{self.train.tokens} is less than one batch ({self.train.batch_tokens} tokens)")

    @property
    def batch_rows(self) -> int:
        """Packed rows per optimizer step, across all workers."""
        return self.train.batch_tokens // self.data.seq_len

    @property
    def total_steps(self) -> int:
        return self.train.tokens // self.train.batch_tokens

    @property
    def grad_accum(self) -> int:
        return self.batch_rows // (self.train.workers * self.train.micro_batch)

    @property
    def run_dir(self) -> str:
        return f"{self.storage.rstrip('/')}/{self.name}"

    @property
    def dataset_root(self) -> str:
        return self.data.cache_dir or f"{self.storage.rstrip('/')}/datasets"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---- building dataclasses from plain dicts -------------------------------------------------------


def _coerce(value: Any, hint: Any, name: str) -> Any:
    """Check `value` against a field's type hint; numbers written as strings ('3e-3') become numbers."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _coerce(value, option, name)
            except ConfigError as error:
                errors.append(error)
        raise errors[0]
    if origin is Literal:
        allowed = typing.get_args(hint)
        _require(value in allowed, name, f"must be one of {', '.join(map(str, allowed))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(hint):
        _require(isinstance(value, dict), name, f"must be a mapping, got {value!r}")
        return from_dict(hint, value)
    if hint is bool:
        _require(isinstance(value, bool), name, f"must be true or false, got {value!r}")
        return value
    if hint in (int, float):
        if isinstance(value, str):
            value = _number(value)
        if hint is int and isinstance(value, float) and value.is_integer():
            value = int(value)
        ok = isinstance(value, (int, float) if hint is float else int) and not isinstance(value, bool)
        _require(ok, name, f"must be {'a number' if hint is float else 'an integer'}, got {value!r}")
        return hint(value)
    if hint is str:
        _require(isinstance(value, str), name, f"must be a string, got {value!r}")
        return value
    return value


def _number(text: str) -> Any:
    """'3e-3' or '2_000_000' as a number; anything else unchanged (YAML 1.1 reads 3e-3 as a string)."""
    try:
        return float(text.replace("_", ""))
    except ValueError:
        return text


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build dataclass `cls` from `data`, refusing unknown keys; errors name the dotted field."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(str(key), f"unknown key (known: {', '.join(sorted(known))})")
    missing = [f.name for f in dataclasses.fields(cls)
               if f.name not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(missing[0], "is required")
    kwargs = {}
    for key, value in data.items():
        try:
            kwargs[key] = _coerce(value, hints[key], "")
        except ConfigError as error:
            raise error.under(key) from None
    return cls(**kwargs)


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply one `a.b=c` override to a raw config dict; the value is parsed as YAML."""
    if "=" not in assignment:
        raise ConfigError(assignment, "override must look like section.key=value")
    path, text = assignment.split("=", 1)
    keys = path.strip().split(".")
    node = raw
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(path, "cannot set a key inside a non-mapping value")
    node[keys[-1]] = yaml.safe_load(text) if text.strip() else None


def load_config(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    """Read a run config YAML, apply `a.b=c` overrides, validate. Raises ConfigError."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("", f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise ConfigError("", f"{path}{where} is not valid YAML") from None
    if not isinstance(raw, dict):
        raise ConfigError("", f"{path} must hold a mapping of sections")
    for assignment in overrides:
        apply_override(raw, assignment)
    return from_dict(RunConfig, raw)
