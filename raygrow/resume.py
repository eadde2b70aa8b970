"""A resume belongs to its inputs (DESIGN.md invariant 7).

A run records what it was started with: the user-facing config fields that decide its rows,
model and optimisation (`run_inputs`, in coordinator.json) and, per spec, the spec's own
fingerprint (`StageSpec.fingerprint`, also kept in every checkpoint). Rerunning the same name
with other inputs is refused with one line naming the first field that changed, before any
cluster work where the driver can tell (`check_inputs`), and by the coordinator per spec in any
case (`check_resume`). Only the fields in SAFE_TO_CHANGE may differ between invocations.
"""

from __future__ import annotations

import re
from typing import Any

from raygrow.errors import ConfigError

# Fields that change how a run is carried out, not what it computes on which rows: parallelism,
# logging, checkpoint cadence, failure handling, where things are stored. README lists them.
SAFE_TO_CHANGE = (
    "name", "storage", "s3.*", "data.cache_dir", "data.ingest", "data.ingest_cpus",
    "data.prefetch_steps", "data.ingest_timeout_s",
    "train.workers", "train.zero_stage", "train.cpus_per_worker", "train.use_gpu",
    "train.micro_batch", "train.placement", "train.log_every", "train.val_every", "train.val_rows",
    "train.stop_after", "train.max_failures", "train.resource_timeout_s", "train.deterministic",
    "train.log_rows", "train.compile", "train.stop_grace_s", "train.lease_timeout_s",
    "checkpoint.*",
    "stages[*].workers", "stages[*].workers.*", "stages[*].zero_stage", "eval", "eval.*",
    "tracking.*",
    "tracking.*.*", "train.activation_checkpointing", "train.activation_checkpointing_every",
)
_SAFE = [re.compile(re.escape(p).replace(r"\*", r"[^.]+") + r"$") for p in SAFE_TO_CHANGE]
# Lists that may grow at the end between invocations: a versions plan gets new versions.
APPENDABLE = ("versions.data",)
HOW = ("rerun with the settings it was started with, or start a new run with another --name "
       "(safe to change: workers, ZeRO stage, logging and checkpoint intervals; see README)")


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{dotted field: leaf value}, lists indexed as `stages[1].tokens`."""
    if isinstance(value, dict):
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat or {prefix: {}}
    if isinstance(value, (list, tuple)):
        flat = {prefix: len(value)} if value else {prefix: []}
        for index, item in enumerate(value):
            flat.update(flatten(item, f"{prefix}[{index}]"))
        return flat
    return {prefix: value}


def run_inputs(config_dict: dict[str, Any], dataset: str | None) -> dict[str, Any]:
    """The flat inputs of a run: every config field that is not safe to change, and the dataset
    key (it changes when the corpus files do, under the same config)."""
    inputs = {key: value for key, value in flatten(config_dict).items() if not _safe(key)}
    if dataset is not None:
        inputs["dataset"] = dataset
    return inputs


def _safe(key: str) -> bool:
    return any(pattern.match(key) for pattern in _SAFE)


def first_change(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """The first input that differs, as `field: old → new`, or None. A list in APPENDABLE may
    have grown at its end (its count and new items are not a change)."""
    for key in sorted(set(old) | set(new)):
        if _appended(key, old, new):
            continue
        # A field added to raygrow since the run was recorded, at its None default, is absent
        # from the old record: None and absent are the same input.
        if old.get(key) != new.get(key):
            return f"{key}: {old.get(key, '<unset>')!r} → {new.get(key, '<unset>')!r}"
    return None


def _appended(key: str, old: dict[str, Any], new: dict[str, Any]) -> bool:
    for name in APPENDABLE:
        if key == name:
            return (isinstance(old.get(key), int) and isinstance(new.get(key), int)
                    and new[key] >= old[key])
        match = re.match(re.escape(name) + r"\[(\d+)\]", key)
        if (match and key not in old and isinstance(old.get(name), int)
                and int(match.group(1)) >= old[name]):
            return True
    return False


def check_inputs(recorded: dict[str, Any], now: dict[str, Any], run: str) -> None:
    """Refuse a rerun of `run` whose inputs differ from those it was started with."""
    change = first_change(recorded, now) if recorded else None
    if change:
        raise ConfigError("", f"run {run} was started with other inputs ({change}); {HOW}")


def check_spec(name: str, recorded: dict[str, Any], now: dict[str, Any]) -> None:
    change = first_change(flatten(recorded), flatten(now))
    if change:
        raise ConfigError("", f"{name} was started with other inputs ({change}); {HOW}")


def check_resume(state, specs) -> None:
    """Refuse to continue any spec of `specs` that the run (its CoordinatorState) started with
    other inputs; specs it has not started are new and fine."""
    for spec in specs:
        known = state.specs.get(spec.name)
        if known is not None:
            check_spec(spec.name, known.fingerprint, spec.fingerprint())
