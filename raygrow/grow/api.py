"""`grow`: one growth step on a full training state, width first, then depth.

Width runs first, on the source's blocks, so depth copies whole grown blocks and new blocks are
drawn at the target width directly.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import torch

from raygrow.config import Shape
from raygrow.config.growth import active_operators, check_growth, shape_text, width_changes
from raygrow.config.operators import Operator, combined_lr, combined_optimizer
from raygrow.grow.depth import grow_depth, layer_sources
from raygrow.grow.masks import MaskSpec
from raygrow.grow.state import TrainState, check_state, param_shapes
from raygrow.grow.width import WidthPlan, grow_width, plan_width

log = logging.getLogger("raygrow.grow")

@dataclass
class GrowthResult:
    state: TrainState
    shape: Shape
    function_preserving: bool  # the operators claim identical logits (masked: at m = 0)
    optimizer_policy: str  # "reset" | "carry" | "transform": what was done to the moments
    lr_policy: str  # recommended: "restart" | "rewind" | "continue"
    masks: MaskSpec | None  # new parts to fade in with apply_masks (masked operators only)


def grow(state: TrainState, source: Shape, target: Shape, vocab: int, depth_op: str | None,
         width_op: str | None, optimizer: str | None = None, layer_order: list[int] | None = None,
         seed: int = 0, every: int | None = None) -> GrowthResult:
    """Grow `state` from `source` to `target`. Raises ConfigError naming the field on bad input.

    optimizer None takes the operators' declared default; layer_order (stack only) names the source
    block of each target block; every (zero / masked) puts a new block after every `every` source
    blocks (LLaMA-Pro); seed draws new weights, symmetry noise and split's unit choice.
    Unchanged tensors may be shared with `state`, not copied.
    """
    check_growth(source, target, vocab, depth_op, width_op, optimizer, layer_order, every)
    check_state(state, source, vocab)
    state = _on_cpu_in_fp32(state)
    generator = torch.Generator().manual_seed(seed)
    mid = dataclasses.replace(target, layers=source.layers)  # target width, source depth
    plan = plan_width(source, mid, width_op, generator) if width_changes(source, target) else None
    sources = layer_sources(depth_op, source.layers, target.layers, layer_order, every) \
        if depth_op else None

    active = active_operators(source, target, depth_op, width_op, layer_order)
    policy = optimizer or combined_optimizer(active)
    grown = state if policy != "reset" else TrainState(params=state.params)
    if plan is not None:
        grown = grow_width(grown, plan, mid, vocab, policy, generator)
    if sources is not None:
        grown = grow_depth(grown, sources, target, vocab, depth_op, policy, generator)
    grown = _in_model_order(grown, target, vocab)

    preserving = all(op.function_preserving for op in active) and (plan is None or plan.exact)
    log.info("grew %s -> %s (depth %s, width %s): function-preserving %s, optimizer %s",
             shape_text(source), shape_text(target), depth_op, width_op, preserving, policy)
    return GrowthResult(state=grown, shape=target, function_preserving=preserving,
                        optimizer_policy=policy,
                        lr_policy=combined_lr(active), masks=_mask_spec(active, plan, sources))


def _mask_spec(active: list[Operator], plan: WidthPlan | None,
               sources: list[int | None] | None) -> MaskSpec | None:
    masked = {op.dimension for op in active if op.masked}
    if not masked:
        return None
    spec = MaskSpec()
    if "depth" in masked:
        spec.layers = [layer for layer, source in enumerate(sources) if source is None]
    if "width" in masked:
        new = {name: plan.units[name].is_new.nonzero().flatten().tolist()
               for name in ("hidden", "ffn", "heads")}
        spec.hidden, spec.ffn, spec.heads = new["hidden"], new["ffn"], new["heads"]
    return spec


def _on_cpu_in_fp32(state: TrainState) -> TrainState:
    """Growth math runs on the CPU in fp32; tensors already there are not copied."""
    def convert(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: value.detach().to("cpu", torch.float32) for name, value in tensors.items()}
    return TrainState(convert(state.params), convert(state.exp_avg),
                      convert(state.exp_avg_sq), state.step)


def _in_model_order(state: TrainState, shape: Shape, vocab: int) -> TrainState:
    order = list(param_shapes(shape, vocab))
    return TrainState(params={name: state.params[name] for name in order},
                      exp_avg={name: state.exp_avg[name] for name in order
                               if name in state.exp_avg},
                      exp_avg_sq={name: state.exp_avg_sq[name] for name in order
                                  if name in state.exp_avg_sq},
                      step=state.step)
