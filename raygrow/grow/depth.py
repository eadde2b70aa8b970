"""Depth growth: which source block each target block copies, or a new block.

- stack (G_stack): target block i copies source block order[i]; default order 0..L-1 repeated.
- interleave: each block repeated in place (0,0,1,1,...).
- zero: new identity blocks (zeroed o_proj and down_proj, and their biases) spread between the
  source blocks, or one after every k source blocks (LLaMA-Pro block expansion).
- masked (MSG): new random blocks at the same places, behind h <- m·Block(h) + (1-m)·h.
Embeddings, the final norm and the LM head are not touched here.
"""

from __future__ import annotations

import torch

from raygrow.config import Shape
from raygrow.grow.state import LAYER_PREFIX, TrainState, layer_key, param_shapes
from raygrow.model import block_shapes
from raygrow.grow.width import INIT_STD

# Zeroing the two projections that write into the residual stream makes a block an identity that
# still learns; zeroing a norm instead would also zero every gradient behind it (LLaMA-Pro).
IDENTITY_ZEROED = ("self_attn.o_proj.weight", "mlp.down_proj.weight")


def default_stack_order(source_layers: int, target_layers: int) -> list[int]:
    """The whole block sequence repeated (G_stack); the caller checks that it divides."""
    return list(range(source_layers)) * (target_layers // source_layers)


def layer_sources(op: str, source_layers: int, target_layers: int, layer_order: list[int] | None,
                  every: int | None = None) -> list[int | None]:
    """For each target block, the source block it copies (None: a new block)."""
    if op == "stack":
        return (list(layer_order) if layer_order is not None
                else default_stack_order(source_layers, target_layers))
    if op == "interleave":
        repeats = target_layers // source_layers
        return [layer for layer in range(source_layers) for _ in range(repeats)]
    if every is not None:  # LLaMA-Pro: a new block after each group of `every` source blocks
        placed: list[int | None] = []
        for layer in range(source_layers):
            placed += [layer] + ([None] if (layer + 1) % every == 0 else [])
        return placed
    # zero / masked: source block j keeps the place floor(j·L'/L), so new blocks spread evenly
    # (one group of new blocks after each source block for an integer multiple).
    sources: list[int | None] = [None] * target_layers
    for layer in range(source_layers):
        sources[layer * target_layers // source_layers] = layer
    return sources


def grow_depth(state: TrainState, sources: list[int | None], shape: Shape, vocab: int, op: str,
               policy: str, generator: torch.Generator) -> TrainState:
    """`state` (at the width of `shape`) with its blocks rearranged as `sources` says."""
    grown = TrainState(params=_outside_blocks(state.params), exp_avg=_outside_blocks(state.exp_avg),
                       exp_avg_sq=_outside_blocks(state.exp_avg_sq), step=state.step)
    sizes = param_shapes(shape, vocab)
    carried: set[int | None] = set()
    for target, source in enumerate(sources):
        # Moments: a new block starts from zero; "carry" gives a source block's moments to its
        # first copy only, "transform" to every copy (each copy is that block, moments and all).
        moments_from = source if policy == "transform" or source not in carried else None
        carried.add(source)
        for tensor in block_shapes(shape):
            key = layer_key(target, tensor)
            grown.params[key] = _new_block_tensor(tensor, sizes[key], op, generator) \
                if source is None else state.params[layer_key(source, tensor)].clone()
            for old, new in ((state.exp_avg, grown.exp_avg), (state.exp_avg_sq, grown.exp_avg_sq)):
                if old:
                    new[key] = torch.zeros(sizes[key]) if moments_from is None \
                        else old[layer_key(moments_from, tensor)].clone()
    return grown


def _outside_blocks(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: value for name, value in tensors.items() if not name.startswith(LAYER_PREFIX)}


def _new_block_tensor(tensor: str, size: tuple[int, ...], op: str,
                      generator: torch.Generator) -> torch.Tensor:
    if tensor.endswith("layernorm.weight"):
        return torch.ones(size)
    if tensor.endswith(".bias"):  # as Hugging Face initialises them; zero keeps o/down silent
        return torch.zeros(size)
    if op == "zero" and tensor in IDENTITY_ZEROED:
        return torch.zeros(size)
    return torch.randn(size, generator=generator) * INIT_STD
