"""The growth step between specs: a final full state → growth operators → the next spec's init.

`grow_checkpoint`, `rebase_checkpoint` and `pretrained_checkpoint` (a Hugging Face model
directory as the first spec's init) work on checkpoint directories (local or s3://), not
on a run directory's layout: the coordinator says which checkpoint and where the result goes.
All are deterministic (growth is seeded), so a step interrupted and redone writes the same
tensors, and all publish their output atomically (marker last), replacing a stale leftover.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass

import torch

from raygrow import storage
from raygrow.config import GrowthConfig, Shape
from raygrow.grow import MaskSpec, TrainState, grow, state_from_model
from raygrow.grow.state import check_state
from raygrow.model import FAMILY_CLASSES
from raygrow.train import checkpoint
from raygrow.train.checkpoint import MOMENTS

log = logging.getLogger("raygrow")


@dataclass
class GrowthRecord:
    """What a growth did, for the grown spec's training (masks) and the run's summary."""

    depth_op: str | None
    width_op: str | None
    optimizer: str  # reset | carry | transform: what was done to the AdamW moments
    function_preserving: bool  # what the operators claim (measured: val loss before and after)
    masks: MaskSpec | None  # MSG: the new parts to fade in over `ramp_steps`
    ramp_steps: int
    seconds: float  # wall time of load + grow + save


def grow_checkpoint(source: str, before: Shape, after: Shape, growth: GrowthConfig, seed: int,
                    out: str, rebase: bool = False) -> GrowthRecord:
    """Grow the checkpoint at `source` (a model of shape `before`) into shape `after` with
    `growth`, and write it as a checkpoint at `out` at step 0. The stream position and the token
    and FLOP counters carry over, unless `rebase` (the next spec trains other data: position 0)."""
    started = time.perf_counter()
    state, meta = checkpoint.load(source)
    result = grow(complete_moments(state), before, after, meta["vocab"], growth.depth_op,
                  growth.width_op, optimizer=growth.optimizer, layer_order=growth.layer_order,
                  seed=seed, every=growth.every)
    grown_meta = {**meta, "step": 0, "shape": dataclasses.asdict(after),
                  "grown_from": storage.base_name(source),
                  **({"rows_consumed": 0} if rebase else {})}
    _publish(out, result.state, grown_meta, fault=f"grow:{storage.base_name(storage.parent(out))}")
    record = GrowthRecord(depth_op=growth.depth_op, width_op=growth.width_op,
                          optimizer=result.optimizer_policy,
                          function_preserving=result.function_preserving, masks=result.masks,
                          ramp_steps=growth.ramp_steps if result.masks is not None else 0,
                          seconds=time.perf_counter() - started)
    log.info("grew %s into %s: %s/%s, function-preserving %s, optimizer %s (%.1f s)",
             source, out, growth.depth_op, growth.width_op, result.function_preserving,
             result.optimizer_policy, record.seconds)
    return record


def complete_moments(state: TrainState) -> TrainState:
    """A state whose frozen parameters (`train.trainable`) had no AdamW moments, with zero ones:
    growth transforms every parameter's moments, and a parameter that trains after the growth
    starts from none, as a new one does."""
    if not state.exp_avg:
        return state
    for key in MOMENTS:
        table = getattr(state, key)
        for name, value in state.params.items():
            if name not in table:
                table[name] = torch.zeros_like(value)
    return state


def pretrained_checkpoint(model_dir: str, shape: Shape, out: str) -> None:
    """Write the weights of the Hugging Face model in `model_dir` (local or s3://), a model of
    `shape`, as a checkpoint at `out` at step 0: no moments, nothing trained yet."""
    with storage.local_copy(model_dir) as local:
        model = FAMILY_CLASSES[shape.family][1].from_pretrained(local, dtype=torch.float32)
    state = state_from_model(model)
    check_state(state, shape, shape.vocab)
    _publish(out, state, {"step": 0, "rows_consumed": 0, "tokens": 0, "flops": 0.0,
                          "shape": dataclasses.asdict(shape), "vocab": shape.vocab,
                          "pretrained_from": str(model_dir)})
    log.info("loaded the pretrained model %s into %s", model_dir, out)


def rebase_checkpoint(source: str, out: str) -> None:
    """Copy the checkpoint at `source` to `out` as the start of other data: step and stream
    position 0; weights, AdamW moments and step count, token and FLOP counters unchanged."""
    state, meta = checkpoint.load(source)
    _publish(out, state, {**meta, "step": 0, "rows_consumed": 0,
                          "rebased_from": storage.base_name(source)})


def _publish(out: str, state, meta: dict, fault: str | None = None) -> None:
    """Write a checkpoint directory in place of `out` (replacing a stale, unverified leftover of a
    killed step); the completion marker goes last."""
    with storage.staged_dir(out, last=checkpoint.MARKER) as staging:
        checkpoint.save(staging, state, meta)
        if fault:
            checkpoint.fault_point(fault)
