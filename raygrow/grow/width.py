"""Width growth: hidden size, FFN units, attention heads (with GQA key/value heads).

Rule for heads: head_dim stays fixed and growth adds heads, so hidden = heads × head_dim grows with
the head count. RoPE ties each coordinate of a head to a frequency that depends on head_dim, so a
wider head could not keep the function; new heads can.

Every tensor axis has a role that says how growth treats it:
- OUT: a unit's own incoming weights (q/k/v/gate/up rows): copied unchanged.
- READ: fan-in over a grown dimension (q/k/v/gate/up/lm_head columns over hidden, o_proj columns
  over heads, down_proj columns over FFN units): divided by the copy count, so copies sum to one.
- WRITE: rows that write into the residual stream (embedding, o_proj, down_proj over hidden):
  copied, times the residual scale.
- NORM: RMSNorm weights over hidden: copied, divided by the residual scale.

Operators (REFERENCES.md): `split` (Net2Net/bert2BERT: added units copy source units), `hyperclone`
(integer multiples only: every unit copied equally, [x; x; ...]), `zero` (added units zero-padded)
and `masked` (MSG: added units random, hidden behind masks; see masks.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import torch

from raygrow.config import Shape
from raygrow.grow.state import EMBED, FINAL_NORM, LM_HEAD, TrainState, param_shapes
from raygrow.grow.units import UnitMap, extend, head_maps

INIT_STD = 0.02  # new random weights, as Hugging Face Llama and MSG initialise them
# Copies of a unit get identical gradients and would stay identical forever. Noise on their
# fan-in weights that sums to zero over each set of copies breaks the tie yet cancels exactly
# in the forward pass, because the copies carry equal activations (HyperCloning's noise pairs).
SYMMETRY_NOISE = 0.1  # std of that noise, relative to the std of the source tensor

OUT, READ, WRITE, NORM = "out", "read", "write", "norm"
# Per parameter (by name suffix): one (dimension, role) per axis; None = the vocabulary, not grown.
AXES: dict[str, tuple[tuple[str, str] | None, ...]] = {
    EMBED: (None, ("hidden", WRITE)),
    LM_HEAD: (None, ("hidden", READ)),
    "norm.weight": (("hidden", NORM),),  # also input_layernorm / post_attention_layernorm
    "q_proj.weight": (("heads", OUT), ("hidden", READ)),
    "k_proj.weight": (("kv_heads", OUT), ("hidden", READ)),
    "v_proj.weight": (("kv_heads", OUT), ("hidden", READ)),
    "o_proj.weight": (("hidden", WRITE), ("heads", READ)),
    "gate_proj.weight": (("ffn", OUT), ("hidden", READ)),
    "up_proj.weight": (("ffn", OUT), ("hidden", READ)),
    "down_proj.weight": (("hidden", WRITE), ("ffn", READ)),
    # Biases (Qwen2's q/k/v; Llama's attention_bias / mlp_bias) belong to a projection's output
    # units: a unit's own bias is copied with it; a bias added to the residual stream is a WRITE.
    "q_proj.bias": (("heads", OUT),),
    "k_proj.bias": (("kv_heads", OUT),),
    "v_proj.bias": (("kv_heads", OUT),),
    "o_proj.bias": (("hidden", WRITE),),
    "gate_proj.bias": (("ffn", OUT),),
    "up_proj.bias": (("ffn", OUT),),
    "down_proj.bias": (("hidden", WRITE),),
}


def axes_of(name: str) -> tuple[tuple[str, str] | None, ...]:
    for suffix, axes in AXES.items():
        if name.endswith(suffix):
            return axes
    raise KeyError(f"no growth rule for parameter {name}")


@dataclass
class WidthPlan:
    """The unit maps of one width growth and the numbers derived from them."""

    op: str
    units: dict[str, UnitMap]  # "hidden", "ffn", "heads", "kv_heads" (heads in whole heads)
    head_dim: int
    tied: bool  # tied embeddings: the final norm takes over the head's fan-in scaling

    @property
    def residual_scale(self) -> float:
        """Factor on the residual stream that keeps its RMS when zero coordinates are appended.

        RMSNorm of s·[x; 0] over D coordinates equals RMSNorm of x over d when s = sqrt(D/d), eps
        included, so the norms' weights divided by s give back the source's normalised values.
        """
        hidden = self.units["hidden"]
        return math.sqrt(hidden.size / int((~hidden.is_new).sum())) if self.op == "zero" else 1.0

    @property
    def exact(self) -> bool:
        """Whether the growth preserves the function: only an uneven hidden split does not, as
        RMSNorm's mean square over [x; some copied coordinates] differs from the source's."""
        copies = self.units["hidden"].copies
        return self.op not in ("split", "hyperclone") or bool((copies == copies[0]).all())

    @cached_property
    def axis_maps(self) -> dict[str, UnitMap]:
        """Maps over tensor coordinates: heads expand to head_dim coordinates each."""
        return {name: unit_map.per_dimension(self.head_dim) if name in ("heads", "kv_heads")
                else unit_map
                for name, unit_map in self.units.items()}


def plan_width(source: Shape, target: Shape, op: str, generator: torch.Generator) -> WidthPlan:
    how = "copy" if op in ("split", "hyperclone") else "new"
    # split picks which units a remainder copies at random (Net2Net); hyperclone has no remainder.
    choose = generator if op == "split" else None
    heads, kv_heads = head_maps(source.heads, source.kv_heads, target.heads, target.kv_heads,
                                how, choose)
    units = {
        "hidden": extend(source.hidden, target.hidden, how, choose),
        "ffn": extend(source.ffn, target.ffn, how, choose),
        "heads": heads,
        "kv_heads": kv_heads,
    }
    return WidthPlan(op, units, source.head_size, source.tie_embeddings)


def grow_width(state: TrainState, plan: WidthPlan, shape: Shape, vocab: int, policy: str,
               generator: torch.Generator) -> TrainState:
    """`state` grown to the width of `shape` (whose layer count is the source's)."""
    grown = TrainState(params={}, step=state.step)
    for name in param_shapes(shape, vocab):
        grower = _TensorGrowth(name, plan)
        grown.params[name] = grower.param(state.params[name], generator)
        if name in state.exp_avg:
            grown.exp_avg[name] = grower.moment(state.exp_avg[name], policy, power=1)
        if name in state.exp_avg_sq:
            grown.exp_avg_sq[name] = grower.moment(state.exp_avg_sq[name], policy, power=2)
    return grown


class _TensorGrowth:
    """Growth of one tensor: index each grown axis by its unit map, then scale, fill and perturb."""

    def __init__(self, name: str, plan: WidthPlan):
        self.plan = plan
        specs = axes_of(name)
        self.ndim = len(specs)
        # (axis, dimension, role, map) per grown axis
        self.axes: list[tuple[int, str, str, UnitMap]] = []
        for axis, spec in enumerate(specs):
            if spec is not None:
                dimension, role = spec
                self.axes.append((axis, dimension, role, plan.axis_maps[dimension]))
        self.final_norm_tied = name == FINAL_NORM and plan.tied

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        for axis, _, _, unit_map in self.axes:
            tensor = tensor.index_select(axis, unit_map.source.clamp(min=0))
        return tensor

    def broadcast(self, vector: torch.Tensor, axis: int) -> torch.Tensor:
        return vector.reshape([-1 if a == axis else 1 for a in range(self.ndim)])

    def scale(self) -> torch.Tensor:
        """The factor on each copied value (broadcastable to the grown tensor)."""
        total = torch.ones([1] * self.ndim)
        for axis, _, role, unit_map in self.axes:
            total = total * self.broadcast(self.axis_factor(role, unit_map), axis)
        return total

    def axis_factor(self, role: str, unit_map: UnitMap) -> torch.Tensor:
        s = self.plan.residual_scale
        factor = {READ: 1.0 / unit_map.copies.float(), WRITE: torch.full((unit_map.size,), s),
                  NORM: torch.full((unit_map.size,), 1 / s)}.get(role, torch.ones(unit_map.size))
        if self.final_norm_tied:
            # The tied head reads the embedding: copied unscaled and times s where a head would
            # be divided by the copy count. The final norm takes over both corrections.
            factor = factor / (s * unit_map.copies.float())
        return factor

    def mask(self, attribute: str, combine) -> torch.Tensor:
        result = None
        for axis, _, _, unit_map in self.axes:
            flags = self.broadcast(getattr(unit_map, attribute), axis)
            result = flags if result is None else combine(result, flags)
        return result

    def param(self, tensor: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        scale = self.scale()
        grown = self.gather(tensor) * scale
        is_new = self.mask("is_new", torch.logical_or).expand_as(grown)
        if is_new.any():
            grown = torch.where(is_new, self.fill(grown, scale, generator), grown)
        if self.plan.op in ("split", "hyperclone"):
            grown = grown + self.symmetry_noise(tensor, grown.shape, generator)
        return grown

    def fill(self, grown: torch.Tensor, scale: torch.Tensor,
             generator: torch.Generator) -> torch.Tensor:
        """Values for added entries (zero and masked growth)."""
        roles = {(dim, role) for _, dim, role, _ in self.axes}
        if any(role == NORM for _, role in roles):
            # a norm weight of 1, seen through the residual scale
            return scale.expand_as(grown).clone()
        # Under zero growth an added entry must not change the output: rows writing the residual
        # and weights reading an added head or FFN unit (whose activations are not zero) stay 0.
        # Weights reading added hidden coordinates may be random: those coordinates hold zeros.
        silent = any(role == WRITE or (role == READ and dim != "hidden") for dim, role in roles)
        if self.plan.op == "zero" and silent:
            return torch.zeros_like(grown)
        return torch.randn(grown.shape, generator=generator) * INIT_STD

    def symmetry_noise(self, tensor: torch.Tensor, shape: torch.Size,
                       generator: torch.Generator) -> torch.Tensor:
        """Noise on fan-in weights that sums to zero over each source unit's copies."""
        noise = torch.zeros(shape)
        for axis, _, role, unit_map in self.axes:
            if role != READ or bool((unit_map.copies == 1).all()):
                continue
            raw = (torch.randn(shape, generator=generator)
                   * (SYMMETRY_NOISE * tensor.std(correction=0).item()))
            sums_shape = list(shape)
            sums_shape[axis] = int(unit_map.source.max()) + 1
            sums = torch.zeros(sums_shape).index_add_(axis, unit_map.source, raw)
            mean = (sums.index_select(axis, unit_map.source)
                    / self.broadcast(unit_map.copies.float(), axis))
            noise = noise + raw - mean
        return noise

    def moment(self, tensor: torch.Tensor, policy: str, power: int) -> torch.Tensor:
        """An Adam moment under `policy`: "carry" (originals only, unscaled) or "transform" (mapped
        like the parameter; the second moment takes the square of the parameter's factor)."""
        grown = self.gather(tensor)
        if policy == "carry":
            keep = self.mask("is_original", torch.logical_and)
        else:
            grown = grown * self.scale() ** power
            keep = ~self.mask("is_new", torch.logical_or)
        return torch.where(keep, grown, torch.zeros_like(grown))
