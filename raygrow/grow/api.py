"""`grow`: one growth step on a full training state, width first, then depth.

Width runs first, on the source's blocks, so depth copies whole grown blocks and new blocks are
drawn at the target width directly.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import torch

from raygrow.config import Shape, require
from raygrow.grow.depth import grow_depth, layer_sources
from raygrow.grow.masks import MaskSpec
from raygrow.grow.operators import (
    OPERATORS,
    OPTIMIZER_POLICIES,
    Operator,
    combined_lr,
    combined_optimizer,
)
from raygrow.grow.state import TrainState, check_state, param_shapes
from raygrow.grow.width import WidthPlan, grow_width, plan_width

log = logging.getLogger("raygrow.grow")

WIDTH_FIELDS = ("hidden", "heads", "kv_heads", "ffn")
GROWN_FIELDS = ("layers",) + WIDTH_FIELDS


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
         seed: int = 0) -> GrowthResult:
    """Grow `state` from `source` to `target`. Raises ConfigError naming the field on bad input.

    optimizer None takes the operators' declared default; layer_order (stack only) names the source
    block of each target block; seed draws new weights, symmetry noise and split's unit choice.
    Unchanged tensors may be shared with `state`, not copied.
    """
    check_growth(source, target, vocab, depth_op, width_op, optimizer, layer_order)
    check_state(state, source, vocab)
    state = _on_cpu_in_fp32(state)
    generator = torch.Generator().manual_seed(seed)
    mid = dataclasses.replace(target, layers=source.layers)  # target width, source depth
    plan = plan_width(source, mid, width_op, generator) if _width_changes(source, target) else None
    sources = layer_sources(depth_op, source.layers, target.layers, layer_order) if depth_op else None

    active = _active_operators(depth_op, width_op, plan, sources, source.layers)
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
    return GrowthResult(state=grown, shape=target, function_preserving=preserving, optimizer_policy=policy,
                        lr_policy=combined_lr(active), masks=_mask_spec(active, plan, sources))


def check_growth(source: Shape, target: Shape, vocab: int, depth_op: str | None, width_op: str | None,
                 optimizer: str | None = None, layer_order: list[int] | None = None) -> None:
    """Refuse a growth that cannot be done, with one ConfigError naming the field."""
    _check_names(depth_op, width_op, optimizer)
    for shape, prefix in ((source, "source."), (target, "")):
        require(shape.hidden % shape.heads == 0, f"{prefix}heads",
                 f"{shape.heads} heads do not divide hidden {shape.hidden}")
        require(shape.heads % shape.kv_heads == 0, f"{prefix}kv_heads",
                 f"{shape.kv_heads} kv heads do not divide {shape.heads} heads")
        require(shape.vocab in (None, vocab), f"{prefix}vocab", f"is {shape.vocab}, the state's vocab is {vocab}")
    require(target.tie_embeddings == source.tie_embeddings, "tie_embeddings",
             f"cannot change during growth (source {source.tie_embeddings})")
    for name in GROWN_FIELDS:
        before, after = getattr(source, name), getattr(target, name)
        require(after >= before, name, f"cannot shrink from {before} to {after}")
    if _width_changes(source, target):
        require(width_op is not None, "width_op",
                 f"the width changes ({shape_text(source)} -> {shape_text(target)}): choose one of "
                 f"{', '.join(OPERATORS['width'])}")
        _check_width(source, target, width_op)
    if target.layers != source.layers:
        require(depth_op is not None, "depth_op",
                 f"layers change {source.layers} -> {target.layers}: choose one of {', '.join(OPERATORS['depth'])}")
    if depth_op is not None or layer_order is not None:
        _check_depth(source, target, depth_op, layer_order)


def _check_names(depth_op: str | None, width_op: str | None, optimizer: str | None) -> None:
    for field, name, known in (("depth_op", depth_op, OPERATORS["depth"]), ("width_op", width_op, OPERATORS["width"]),
                               ("optimizer", optimizer, OPTIMIZER_POLICIES)):
        require(name is None or name in known, field, f"unknown {name!r} (known: {', '.join(known)})")


def _check_width(source: Shape, target: Shape, width_op: str) -> None:
    head_dim = source.head_dim
    require(target.hidden % head_dim == 0 and target.heads == target.hidden // head_dim, "heads",
             f"must be hidden / head_dim = {target.hidden / head_dim:g} to keep head_dim {head_dim} "
             f"(width growth adds heads; RoPE ties each head coordinate to its frequency)")
    source_group, target_group = source.heads // source.kv_heads, target.heads // target.kv_heads
    require(target_group >= source_group, "kv_heads",
             f"{target.kv_heads} kv heads give {target_group} query heads per kv head, fewer than the "
             f"source's {source_group}: use at most {target.heads // source_group} kv heads")
    if width_op == "hyperclone":
        pairs = [("hidden", source.hidden, target.hidden), ("ffn", source.ffn, target.ffn),
                 ("kv_heads", source.kv_heads, target.kv_heads), ("heads", source_group, target_group)]
        for field, before, after in pairs:
            require(after % before == 0, field, f"hyperclone needs an integer multiple of {before}, got {after}"
                     + (" query heads per kv head" if field == "heads" else ""))


def _check_depth(source: Shape, target: Shape, depth_op: str | None, layer_order: list[int] | None) -> None:
    multiple = target.layers % source.layers == 0
    if layer_order is not None:
        require(depth_op == "stack", "layer_order", f"only applies to depth_op stack, not {depth_op}")
        require(len(layer_order) == target.layers, "layer_order",
                 f"has {len(layer_order)} entries, target layers is {target.layers}")
        bad = [layer for layer in layer_order if not 0 <= layer < source.layers]
        require(not bad, "layer_order", f"source layer {bad[0] if bad else ''} does not exist "
                                         f"(source has {source.layers} layers)")
    elif depth_op in ("stack", "interleave"):
        hint = ": give layer_order for a partial stack" if depth_op == "stack" else ""
        require(multiple, "layers", f"{depth_op} needs a multiple of {source.layers} layers, "
                                     f"got {target.layers}{hint}")


def _width_changes(source: Shape, target: Shape) -> bool:
    return any(getattr(source, name) != getattr(target, name) for name in WIDTH_FIELDS)


def shape_text(shape: Shape) -> str:
    """The grown fields of a shape, as `--to` takes them."""
    return ",".join(f"{name}={getattr(shape, name)}" for name in GROWN_FIELDS)


def _active_operators(depth_op: str | None, width_op: str | None, plan: WidthPlan | None,
                      sources: list[int | None] | None, source_layers: int) -> list[Operator]:
    """The operators that change something; a named operator with nothing to do has no say."""
    active = []
    if sources is not None and sources != list(range(source_layers)):
        active.append(OPERATORS["depth"][depth_op])
    if plan is not None:
        active.append(OPERATORS["width"][width_op])
    return active


def _mask_spec(active: list[Operator], plan: WidthPlan | None, sources: list[int | None] | None) -> MaskSpec | None:
    masked = {op.dimension for op in active if op.masked}
    if not masked:
        return None
    spec = MaskSpec()
    if "depth" in masked:
        spec.layers = [layer for layer, source in enumerate(sources) if source is None]
    if "width" in masked:
        new = {name: plan.units[name].is_new.nonzero().flatten().tolist() for name in ("hidden", "ffn", "heads")}
        spec.hidden, spec.ffn, spec.heads = new["hidden"], new["ffn"], new["heads"]
    return spec


def _on_cpu_in_fp32(state: TrainState) -> TrainState:
    """Growth math runs on the CPU in fp32; tensors already there are not copied."""
    def convert(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: value.detach().to("cpu", torch.float32) for name, value in tensors.items()}
    return TrainState(convert(state.params), convert(state.exp_avg), convert(state.exp_avg_sq), state.step)


def _in_model_order(state: TrainState, shape: Shape, vocab: int) -> TrainState:
    order = list(param_shapes(shape, vocab))
    return TrainState(params={name: state.params[name] for name in order},
                      exp_avg={name: state.exp_avg[name] for name in order if name in state.exp_avg},
                      exp_avg_sq={name: state.exp_avg_sq[name] for name in order if name in state.exp_avg_sq},
                      step=state.step)
