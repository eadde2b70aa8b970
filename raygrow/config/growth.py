"""How a stage's model is made from the previous stage's, and every check that needs no tensor.

`check_growth` is the whole set of refusals a growth can meet (shapes, operators, layer order),
so a run config runs it at load time for every stage (`raygrow.config.run`) and the growth
step itself (`raygrow.grow.grow`) runs it again on what it is handed. Field names in its errors
are bare (`heads`, `layer_order`); callers place them under their own section.
"""

from __future__ import annotations

from dataclasses import dataclass

from raygrow.config.binding import require
from raygrow.config.operators import (LR_POLICIES, OPERATORS, OPTIMIZER_POLICIES, Operator,
                                      combined_lr)
from raygrow.config.shape import GROWN_DIMENSIONS, Shape
from raygrow.errors import ConfigError

DEPTH_OPS = tuple(OPERATORS["depth"])
WIDTH_OPS = tuple(OPERATORS["width"])
WIDTH_FIELDS = GROWN_DIMENSIONS[1:]
WHY_HEAD_DIM = "RoPE ties each head coordinate to its frequency"
GROWTH_FIELDS = ("depth_op", "width_op", "optimizer", "lr", "layer_order", "every", "ramp_steps")


@dataclass
class GrowthConfig:
    """How a stage's model comes from the previous stage's (DESIGN.md, growth operators)."""

    depth_op: str | None = None  # stack | interleave | zero | masked; None: layers unchanged
    width_op: str | None = None  # split | hyperclone | zero | masked; None: widths unchanged
    optimizer: str | None = None  # reset | carry | transform; None = the operator's default
    lr: str | None = None  # restart | rewind | continue; None = the operator's recommendation
    layer_order: list[int | str] | None = None  # stack: the source layer of each target layer;
    #   inclusive ranges allowed, e.g. [0..23, 8..31] (SOLAR's depth up-scaling of 32 layers to 48)
    every: int | None = None  # zero / masked: one new block after every `every` source blocks
    #   (LLaMA-Pro block expansion); the target has layers + layers // every blocks
    ramp_steps: int = 100  # masked ops: optimizer steps for the mask to rise from 0 to 1

    def __post_init__(self) -> None:
        for name, allowed in (("depth_op", DEPTH_OPS), ("width_op", WIDTH_OPS),
                              ("optimizer", OPTIMIZER_POLICIES), ("lr", LR_POLICIES)):
            value = getattr(self, name)
            require(value is None or value in allowed, name,
                    f"must be one of {', '.join(allowed)}, got {value!r}")
        require(self.ramp_steps >= 1, "ramp_steps", f"must be ≥ 1, got {self.ramp_steps}")
        require(self.every is None or self.every >= 1, "every", f"must be ≥ 1, got {self.every}")
        if self.layer_order is not None:
            self.layer_order = expand_layer_order(self.layer_order)

    @property
    def masked(self) -> bool:
        """Whether the growth fades new parts in over `ramp_steps` (MSG)."""
        return "masked" in (self.depth_op, self.width_op)


def expand_layer_order(items: list[int | str]) -> list[int]:
    """A layer order with inclusive ranges (`0..23`) expanded; ConfigError naming layer_order."""
    order: list[int] = []
    for item in items:
        if isinstance(item, int):
            order.append(item)
            continue
        first, dots, last = str(item).strip().partition("..")
        require(bool(dots) and first.strip().isdigit() and last.strip().isdigit(), "layer_order",
                f"{item!r} is neither a layer number nor a range like 0..23")
        start, end = int(first), int(last)
        require(start <= end, "layer_order", f"range {item!r} runs backwards")
        order.extend(range(start, end + 1))
    return order


def shape_text(shape: Shape) -> str:
    """The grown fields of a shape, as `raygrow grow --to` takes them."""
    return ",".join(f"{name}={getattr(shape, name)}" for name in GROWN_DIMENSIONS)


def width_changes(source: Shape, target: Shape) -> bool:
    return any(getattr(source, name) != getattr(target, name) for name in WIDTH_FIELDS)


def check_growth(source: Shape, target: Shape, vocab: int | None, depth_op: str | None,
                 width_op: str | None, optimizer: str | None = None,
                 layer_order: list[int] | None = None, every: int | None = None) -> None:
    """Refuse a growth that cannot be done, with one ConfigError naming the field. `vocab` None:
    not known yet (a config before its tokenizer is loaded), so only the shapes' own are
    compared."""
    _check_names(depth_op, width_op, optimizer)
    for shape, prefix in ((source, "source."), (target, "")):
        require(shape.hidden % shape.heads == 0, f"{prefix}heads",
                f"{shape.heads} heads do not divide hidden {shape.hidden}")
        require(shape.heads % shape.kv_heads == 0, f"{prefix}kv_heads",
                f"{shape.kv_heads} kv heads do not divide {shape.heads} heads")
        require(vocab is None or shape.vocab in (None, vocab), f"{prefix}vocab",
                f"is {shape.vocab}, the state's vocab is {vocab}")
    require(vocab is not None or None in (source.vocab, target.vocab)
            or source.vocab == target.vocab,
            "vocab", f"cannot change during growth (source {source.vocab}, target {target.vocab})")
    require(target.tie_embeddings == source.tie_embeddings, "tie_embeddings",
            f"cannot change during growth (source {source.tie_embeddings})")
    require(target.family == source.family, "family",
            f"cannot change during growth (source {source.family}, target {target.family})")
    require(target.arch == source.arch, "arch", "cannot change during growth (the source's rope, "
            "norm and bias settings are the model's function); leave it out to keep them")
    for name in GROWN_DIMENSIONS:
        before, after = getattr(source, name), getattr(target, name)
        require(after >= before, name, f"cannot shrink from {before} to {after}")
    if width_changes(source, target):
        require(width_op is not None, "width_op",
                f"the width changes ({shape_text(source)} -> {shape_text(target)}): choose one of "
                f"{', '.join(WIDTH_OPS)}")
        _check_width(source, target, width_op)
    if target.layers != source.layers:
        require(depth_op is not None, "depth_op", f"layers change {source.layers} -> "
                f"{target.layers}: choose one of {', '.join(DEPTH_OPS)}")
    if depth_op is not None or layer_order is not None or every is not None:
        _check_depth(source, target, depth_op, layer_order, every)


def _check_names(depth_op: str | None, width_op: str | None, optimizer: str | None) -> None:
    for field, name, known in (("depth_op", depth_op, DEPTH_OPS), ("width_op", width_op, WIDTH_OPS),
                               ("optimizer", optimizer, OPTIMIZER_POLICIES)):
        require(name is None or name in known, field,
                f"unknown {name!r} (known: {', '.join(known)})")


def _check_width(source: Shape, target: Shape, width_op: str) -> None:
    head_dim = source.head_size
    if target.head_dim is None:
        heads_fit = target.hidden % head_dim == 0 and target.heads == target.hidden // head_dim
        require(heads_fit, "heads",
                f"must be hidden / head_dim = {target.hidden / head_dim:g} to keep head_dim "
                f"{head_dim} (width growth adds heads; {WHY_HEAD_DIM})")
    require(target.head_size == head_dim, "head_dim",
            f"must stay {head_dim}, got {target.head_size} (width growth adds heads; "
            f"{WHY_HEAD_DIM})")
    source_group, target_group = source.heads // source.kv_heads, target.heads // target.kv_heads
    require(target_group >= source_group, "kv_heads",
            f"{target.kv_heads} kv heads give {target_group} query heads per kv head, fewer than "
            f"the source's {source_group}: use at most {target.heads // source_group} kv heads")
    if width_op == "hyperclone":
        pairs = [("hidden", source.hidden, target.hidden), ("ffn", source.ffn, target.ffn),
                 ("kv_heads", source.kv_heads, target.kv_heads),
                 ("heads", source_group, target_group)]
        for field, before, after in pairs:
            require(after % before == 0, field,
                    f"hyperclone needs an integer multiple of {before}, got {after}"
                    + (" query heads per kv head" if field == "heads" else ""))


def _check_depth(source: Shape, target: Shape, depth_op: str | None,
                 layer_order: list[int] | None, every: int | None = None) -> None:
    multiple = target.layers % source.layers == 0
    if every is not None:
        require(depth_op in ("zero", "masked"), "every",
                f"places new blocks: only for depth_op zero or masked, not {depth_op}")
        expected = source.layers + source.layers // every
        require(target.layers == expected, "layers",
                f"one new block after every {every} of {source.layers} blocks makes {expected} "
                f"layers, got {target.layers}")
    if layer_order is not None:
        require(depth_op == "stack", "layer_order",
                f"only applies to depth_op stack, not {depth_op}")
        require(len(layer_order) == target.layers, "layer_order",
                f"has {len(layer_order)} entries, target layers is {target.layers}")
        bad = [layer for layer in layer_order if not 0 <= layer < source.layers]
        require(not bad, "layer_order", f"source layer {bad[0] if bad else ''} does not exist "
                                        f"(source has {source.layers} layers)")
    elif depth_op in ("stack", "interleave"):
        hint = ": give layer_order for a partial stack" if depth_op == "stack" else ""
        require(multiple, "layers", f"{depth_op} needs a multiple of {source.layers} layers, "
                                    f"got {target.layers}{hint}")


def check_transition(before: Shape, after: Shape, growth: GrowthConfig | None, where: str,
                     previous: str) -> None:
    """`after` (the model at `where`, e.g. `stages[1]`) grows `before` (the model of `previous`,
    e.g. `stage 0`) through `growth`: every check of `check_growth`, errors named under `where`."""
    require(growth is not None, f"{where}.growth", "required for every stage after the first")
    for name in GROWN_DIMENSIONS:
        old, new = getattr(before, name), getattr(after, name)
        require(new >= old, f"{where}.shape.{name}",
                f"must be ≥ {old} ({previous}'s); growth never shrinks, got {new}")
    require(after.tie_embeddings == before.tie_embeddings, f"{where}.shape.tie_embeddings",
            f"must match {previous}'s")
    require(after.layers == before.layers or growth.depth_op is not None,
            f"{where}.growth.depth_op",
            f"layers grow {before.layers} → {after.layers}: name a depth operator")
    require(not width_changes(before, after) or growth.width_op is not None,
            f"{where}.growth.width_op", "widths grow: name a width operator")
    try:
        check_growth(before, after, None, growth.depth_op, growth.width_op, growth.optimizer,
                     growth.layer_order, growth.every)
    except ConfigError as error:
        section = "growth" if error.field in GROWTH_FIELDS else "shape"
        raise ConfigError(f"{where}.{section}.{error.field.removeprefix('source.')}",
                          error.message) from None


def active_operators(source: Shape, target: Shape, depth_op: str | None, width_op: str | None,
                     layer_order: list[int] | None = None) -> list[Operator]:
    """The operators that change something: a named operator with nothing to do has no say in
    the optimizer or LR policy."""
    active = []
    reorders = layer_order is not None and list(layer_order) != list(range(source.layers))
    if depth_op is not None and (target.layers != source.layers or reorders):
        active.append(OPERATORS["depth"][depth_op])
    if width_op is not None and width_changes(source, target):
        active.append(OPERATORS["width"][width_op])
    return active


def lr_policy(growth: GrowthConfig, source: Shape, target: Shape) -> str:
    """The LR policy at a growth: the plan's own, else what its active operators recommend."""
    if growth.lr is not None:
        return growth.lr
    return combined_lr(active_operators(source, target, growth.depth_op, growth.width_op,
                                        growth.layer_order))
