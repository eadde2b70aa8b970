"""Depth operators put exactly the requested blocks in place and leave the rest alone."""

from __future__ import annotations

import pytest
import torch

from raygrow.grow import grow, load_into_model
from raygrow.grow.depth import layer_sources
from raygrow.grow.state import BLOCK_TENSORS, EMBED, FINAL_NORM, LM_HEAD, layer_key


def assert_blocks_copied(grown: dict, source: dict, order: list[int]) -> None:
    for target_layer, source_layer in enumerate(order):
        for tensor in BLOCK_TENSORS:
            assert torch.equal(grown[layer_key(target_layer, tensor)],
                               source[layer_key(source_layer, tensor)])


@pytest.mark.parametrize("order, layers", [
    (None, 6),  # default: the whole sequence repeated, 0 1 2 0 1 2
    ([0, 1, 2, 0, 1, 2, 0, 1], 8),  # any list: here a partial stack
    ([0, 1, 1, 2], 4),  # middle stacking
    ([2, 0, 1], 3),  # same depth, reordered
])
def test_stack_copies_the_requested_blocks(kit, order, layers):
    source, target = kit.shape(layers=3), kit.shape(layers=layers)
    state = kit.state(source)
    result = grow(state, source, target, kit.vocab, "stack", None, layer_order=order)
    assert_blocks_copied(result.state.params, state.params, order or [0, 1, 2, 0, 1, 2])
    for name in (EMBED, FINAL_NORM, LM_HEAD):
        assert torch.equal(result.state.params[name], state.params[name])
    # Copies are separate tensors: saving to safetensors refuses shared storage.
    pointers = {value.data_ptr() for value in result.state.params.values()}
    assert len(pointers) == len(result.state.params)


def test_interleave_repeats_each_block_in_place(kit):
    source, target = kit.shape(layers=2), kit.shape(layers=6)
    state = kit.state(source)
    result = grow(state, source, target, kit.vocab, "interleave", None)
    assert_blocks_copied(result.state.params, state.params, [0, 0, 0, 1, 1, 1])


def test_new_blocks_spread_between_source_blocks():
    assert layer_sources("zero", 2, 8, None) == [0, None, None, None, 1, None, None, None]
    assert layer_sources("masked", 3, 4, None) == [0, 1, 2, None]
    assert layer_sources("stack", 2, 4, None) == [0, 1, 0, 1]


def test_zero_blocks_are_identities_that_still_learn(kit):
    source, target = kit.shape(layers=2), kit.shape(layers=4)
    state = kit.state(source)
    result = grow(state, source, target, kit.vocab, "zero", None)
    new_layers = [layer for layer, src in enumerate(layer_sources("zero", 2, 4, None))
                  if src is None]
    for layer in new_layers:
        for tensor in ("self_attn.o_proj.weight", "mlp.down_proj.weight"):
            assert not result.state.params[layer_key(layer, tensor)].any()
        # random, not copied
        assert result.state.params[layer_key(layer, "mlp.up_proj.weight")].std() > 0.01
    model = load_into_model(result.state, target, kit.vocab)
    tokens = kit.batch()
    model(tokens, labels=tokens).loss.backward()
    for layer in new_layers:
        block = model.model.layers[layer]
        assert block.self_attn.o_proj.weight.grad.abs().sum() > 0
        assert block.mlp.down_proj.weight.grad.abs().sum() > 0
