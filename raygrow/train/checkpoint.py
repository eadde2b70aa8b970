"""Checkpoints: full training state in safetensors plus JSON, verified before any load.

A checkpoint directory holds (for a `raygrow.grow.TrainState` plus counters)
  model.safetensors      full fp32 parameters by Hugging Face name (world-size independent)
  optimizer.safetensors  AdamW moments as `exp_avg/<name>` and `exp_avg_sq/<name>`
  state.json             step, stream position, counters
  complete.json          written last: size and sha256 of every other file
A directory without a matching `complete.json` is incomplete (a crash during save or upload) or
tampered with, and is never loaded. Nothing is unpickled: safetensors and JSON only. Because the
state is full and keyed by name, a run resumes at any worker count and ZeRO stage, and growth
reads the same files.

`save` writes a local directory (Ray Train uploads it, or `publish` puts it in place);
everything that reads takes a local path or an s3:// URI. Local checkpoints come back as `Path`,
object-store ones as URI strings.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from raygrow import storage
from raygrow.errors import CheckpointError, DataError
from raygrow.grow.state import TrainState

log = logging.getLogger("raygrow")

MARKER = "complete.json"
DIR_PATTERN = re.compile(r"^checkpoint_(\d+)$")
MOMENTS = ("exp_avg", "exp_avg_sq")


def dir_name(step: int) -> str:
    return f"checkpoint_{step:08d}"


def set_fault(fault: str | None) -> None:
    """Make `fault` this process's test hook, or clear it: Ray reuses task processes across
    runs, and a hook left from an earlier run must not fire in the next one."""
    if fault:
        os.environ["RAYGROW_FAULT"] = fault
    else:
        os.environ.pop("RAYGROW_FAULT", None)


def fault_point(point: str) -> None:
    """Test hook: RAYGROW_FAULT=<point> kills this process at that point, like a crash would."""
    if os.environ.get("RAYGROW_FAULT") == point:
        log.error("RAYGROW_FAULT=%s: crashing on purpose", point)
        os._exit(17)


def save(directory: str | Path, state: TrainState, meta: dict[str, Any]) -> None:
    """Write `state` and `meta` (counters: step, rows_consumed, …) into `directory`; the completion
    marker goes last. The optimizer step count is kept in meta as `optimizer_step`."""
    bad = nonfinite(state)
    if bad:
        raise CheckpointError(f"refusing to checkpoint step {meta.get('step')}: {bad} holds "
                              "non-finite values (the previous checkpoint stays the newest)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({name: t.contiguous() for name, t in state.params.items()},
              directory / "model.safetensors")
    fault_point(f"save_after_model:{meta.get('step')}")
    moments = {f"{key}/{name}": t.contiguous()
               for key in MOMENTS for name, t in getattr(state, key).items()}
    save_file(moments, directory / "optimizer.safetensors")
    meta = {**meta, "optimizer_step": state.step}
    (directory / "state.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    files = {p.name: {"bytes": p.stat().st_size, "sha256": storage.sha256(p)}
             for p in sorted(directory.iterdir()) if p.name != MARKER}
    tmp = directory / (MARKER + ".tmp")
    tmp.write_text(json.dumps({"files": files}, indent=1))
    os.replace(tmp, directory / MARKER)


def publish(run_dir: str | Path, step: int, state: TrainState, meta: dict[str, Any],
            keep: int) -> None:
    """`save` step's checkpoint into `run_dir` itself (atomically, the marker last), then drop
    all but the newest `keep`: what Ray Train does with a reported checkpoint, for a stage whose
    worker group Ray Train runs under another stage's directory."""
    with storage.staged_dir(storage.join(run_dir, dir_name(step)), last=MARKER) as staging:
        save(staging, state, meta)
    for old in candidates(run_dir)[keep:]:
        storage.remove_tree(old)


def verify(directory: str | Path) -> None:
    """Raise CheckpointError unless every file matches the completion marker."""
    marker = storage.join(directory, MARKER)
    if not storage.exists(marker):
        raise CheckpointError(f"{directory}: incomplete checkpoint (no {MARKER})")
    try:
        files = json.loads(storage.read_bytes(marker))["files"]
    except (ValueError, KeyError):
        raise CheckpointError(f"{marker}: unreadable completion marker") from None
    for name, expected in files.items():
        try:
            path = storage.join(directory, storage.contained(name, marker))
        except DataError as error:
            raise CheckpointError(str(error)) from None
        entry = storage.info(path)
        if entry.type != storage.FileType.File or entry.size != expected["bytes"]:
            raise CheckpointError(f"{path}: missing or truncated")
        if storage.sha256(path) != expected["sha256"]:
            raise CheckpointError(f"{path}: contents changed since the checkpoint was written")


def load(directory: str | Path, moments: bool = True) -> tuple[TrainState, dict[str, Any]]:
    """Verify, then read a checkpoint (safetensors and JSON only; nothing is unpickled). One on
    S3 is downloaded first and the download is what gets verified and read. `moments=False`
    leaves the AdamW moments (two thirds of the bytes) unread, for readers of the weights."""
    with storage.local_copy(directory) as local:
        verify(local)
        saved = load_file(local / "optimizer.safetensors") if moments else {}
        meta = json.loads((local / "state.json").read_text())
        state = TrainState(params=load_file(local / "model.safetensors"),
                           step=meta["optimizer_step"])
    for key in MOMENTS:
        prefix = f"{key}/"
        getattr(state, key).update({n[len(prefix):]: t for n, t in saved.items()
                                    if n.startswith(prefix)})
    bad = nonfinite(state)
    if bad:  # never resumed from, grown or exported (DESIGN.md invariant 8)
        raise CheckpointError(f"{directory}: {bad} holds non-finite values")
    return state, meta


def nonfinite(state: TrainState) -> str | None:
    """The name of the first tensor of `state` with a NaN or an infinity, else None."""
    for table_name in ("params", *MOMENTS):
        for name, tensor in getattr(state, table_name).items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                return name if table_name == "params" else f"{table_name}/{name}"
    return None


def step_of(directory: str | Path) -> int:
    """The step a checkpoint directory is named for."""
    return int(DIR_PATTERN.match(storage.base_name(directory)).group(1))


def size_bytes(directory: str | Path) -> int:
    """Bytes of a checkpoint's files."""
    return sum(entry.size for entry in storage.list_files(directory))


def candidates(run_dir: str | Path) -> list[str | Path]:
    """Checkpoint directories of a run, newest step first."""
    found = [(int(m.group(1)), entry.path) for entry in storage.list_files(run_dir, recursive=False)
             if entry.type == storage.FileType.Directory
             and (m := DIR_PATTERN.match(storage.base_name(entry.path)))]
    return [path if storage.is_remote(path) else Path(path)
            for _, path in sorted(found, reverse=True)]


def latest_valid(run_dir: str | Path) -> str | Path | None:
    """The newest checkpoint that verifies; broken ones are reported and skipped, never loaded."""
    for path in candidates(run_dir):
        try:
            verify(path)
            return path
        except CheckpointError as error:
            log.warning("skipping checkpoint: %s", error)
    _refuse_if_all_broken(run_dir)
    return None


def load_latest(run_dir: str | Path, moments: bool = True
                ) -> tuple[str | Path, TrainState, dict[str, Any]] | None:
    """(path, state, meta) of the newest checkpoint that verifies, or None when there is none:
    each file is hashed once (and an object-store checkpoint downloaded once) on the way."""
    for path in candidates(run_dir):
        try:
            return (path, *load(path, moments))
        except (CheckpointError, DataError) as error:  # DataError: a key that leaves its directory
            log.warning("skipping checkpoint: %s", error)
    _refuse_if_all_broken(run_dir)
    return None


def _refuse_if_all_broken(run_dir: str | Path) -> None:
    found = candidates(run_dir)
    if found:
        raise CheckpointError(f"{run_dir}: no checkpoint verifies ({len(found)} found, all "
                              "broken); refusing to start over silently — start a new run (another "
                              f"--name), or delete {run_dir} to train this stage again "
                              "from its start")
