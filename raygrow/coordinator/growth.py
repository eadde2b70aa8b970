"""The growth step between stages: stage k's final full state → operators → stage k+1's start."""

from __future__ import annotations

import logging
import time

from raygrow.config import RunConfig
from raygrow import storage
from raygrow.errors import CheckpointError
from raygrow.grow import grow
from raygrow.train import checkpoint

log = logging.getLogger("raygrow")

INIT_DIR = "init"  # <run>/stage-<k>/init: the grown checkpoint stage k starts from


def stage_dir(run_dir: str, index: int) -> str:
    return storage.join(run_dir, f"stage-{index}")


def init_dir(run_dir: str, index: int) -> str:
    return storage.join(stage_dir(run_dir, index), INIT_DIR)


def grow_into_stage(config: RunConfig, run_dir: str, index: int) -> dict:
    """Grow stage index-1's final checkpoint into <run>/stage-<index>/init (atomically).

    Deterministic (seeded per stage), so a growth interrupted and redone gives the same tensors.
    Returns what the next stage and the summary need to know about the growth.
    """
    before, after = config.stages[index - 1], config.stages[index]
    source = checkpoint.latest_valid(stage_dir(run_dir, index - 1))
    if source is None:
        raise CheckpointError(f"stage {index - 1} has no complete checkpoint to grow from")
    started = time.perf_counter()
    state, meta = checkpoint.load(source)
    spec = after.growth
    result = grow(state, before.shape, after.shape, meta["vocab"], spec.depth_op, spec.width_op,
                  optimizer=spec.optimizer, layer_order=spec.layer_order, seed=config.train.seed + index)
    grown_meta = {**meta, "step": 0, "shape": after.shape.__dict__, "grown_from": storage.base_name(source)}
    # Replaces a stale, unverified leftover of a killed growth; the marker goes last.
    with storage.staged_dir(init_dir(run_dir, index), last=checkpoint.MARKER) as staging:
        checkpoint.save(staging, result.state, grown_meta)
        checkpoint.fault_point(f"grow:{index}")
    log.info("stage %d → %d: %s/%s growth, function-preserving %s, optimizer %s, LR %s (%.1f s)",
             index - 1, index, spec.depth_op, spec.width_op, result.function_preserving,
             result.optimizer_policy, spec.lr or result.lr_policy, time.perf_counter() - started)
    return {"from_stage": index - 1, "to_stage": index, "depth_op": spec.depth_op, "width_op": spec.width_op,
            "optimizer": result.optimizer_policy, "lr": spec.lr or result.lr_policy,
            "function_preserving": result.function_preserving,
            "masks": result.masks.to_dict() if result.masks is not None else None,
            "ramp_steps": spec.ramp_steps if result.masks is not None else 0,
            "grow_seconds": time.perf_counter() - started}
