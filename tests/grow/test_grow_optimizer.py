"""Adam moments under reset, carry and transform, and the operators' declared defaults."""

from __future__ import annotations

import pytest
import torch

from raygrow.grow import OPERATORS, grow, param_shapes
from raygrow.grow.state import EMBED, layer_key

UP, DOWN = layer_key(0, "mlp.up_proj.weight"), layer_key(0, "mlp.down_proj.weight")


def assert_moment_shapes(result, kit):
    sizes = param_shapes(result.shape, kit.vocab)
    for table in (result.state.params, result.state.exp_avg, result.state.exp_avg_sq):
        assert {name: tuple(value.shape) for name, value in table.items()} == sizes


def grow_ffn(kit, optimizer):
    """FFN 24 -> 40 by split: 16 of the 24 units (chosen at random) get a copy."""
    source, target = kit.shape(), kit.shape(ffn=40)
    state = kit.state(source, moments=True)
    return state, grow(state, source, target, kit.vocab, None, "split", optimizer=optimizer)


def copied_units(state, result) -> list[int]:
    """The source unit behind each added FFN unit, found by its (copied, unchanged) up_proj row."""
    source_rows, added_rows = state.params[UP], result.state.params[UP][24:]
    return [next(j for j in range(24) if torch.equal(row, source_rows[j])) for row in added_rows]


def test_reset_empties_moments_and_step(kit):
    _, result = grow_ffn(kit, "reset")
    assert result.state.exp_avg == {} and result.state.exp_avg_sq == {} and result.state.step == 0


def test_carry_puts_old_moments_in_the_old_block(kit):
    state, result = grow_ffn(kit, "carry")
    assert_moment_shapes(result, kit)
    assert result.state.step == 7
    for table, old in ((result.state.exp_avg, state.exp_avg),
                       (result.state.exp_avg_sq, state.exp_avg_sq)):
        assert torch.equal(table[UP][:24], old[UP]) and not table[UP][24:].any()
        assert torch.equal(table[DOWN][:, :24], old[DOWN]) and not table[DOWN][:, 24:].any()
        assert torch.equal(table[EMBED], old[EMBED])


def test_transform_maps_moments_like_the_weights(kit):
    state, result = grow_ffn(kit, "transform")
    assert_moment_shapes(result, kit)
    assert result.state.step == 7
    units = copied_units(state, result)
    # fan-in factor is 1 / copies
    copies = torch.ones(24).index_add_(0, torch.tensor(units), torch.ones(16))
    exp_avg, exp_avg_sq = result.state.exp_avg, result.state.exp_avg_sq
    assert torch.equal(exp_avg[UP][24:], state.exp_avg[UP][units])  # copied rows: copied moments
    assert torch.allclose(exp_avg[DOWN][:, :24], state.exp_avg[DOWN] / copies)
    assert torch.allclose(exp_avg[DOWN][:, 24:], state.exp_avg[DOWN][:, units] / 2)
    assert torch.allclose(exp_avg_sq[DOWN][:, :24], state.exp_avg_sq[DOWN] / copies**2)
    assert torch.allclose(exp_avg_sq[DOWN][:, 24:], state.exp_avg_sq[DOWN][:, units] / 4)


@pytest.mark.parametrize("optimizer", ["carry", "transform"])
def test_stacked_moments(kit, optimizer):
    source, target = kit.shape(layers=2), kit.shape(layers=4)
    state = kit.state(source, moments=True)
    result = grow(state, source, target, kit.vocab, "stack", None, optimizer=optimizer)
    assert_moment_shapes(result, kit)
    first_copy, second_copy = result.state.exp_avg[layer_key(1, "mlp.up_proj.weight")], \
        result.state.exp_avg[layer_key(3, "mlp.up_proj.weight")]
    assert torch.equal(first_copy, state.exp_avg[layer_key(1, "mlp.up_proj.weight")])
    if optimizer == "transform":
        assert torch.equal(second_copy, first_copy)  # every copy is that block, moments and all
    else:
        assert not second_copy.any()  # the old block is the first copy; the rest start at zero


def test_new_masked_blocks_start_with_zero_moments(kit):
    source, target = kit.shape(layers=2), kit.shape(layers=4)
    result = grow(kit.state(source, moments=True), source, target, kit.vocab, "masked", None)
    assert result.optimizer_policy == "carry" and result.state.step == 7
    for layer in result.masks.layers:
        assert not result.state.exp_avg_sq[layer_key(layer, "self_attn.q_proj.weight")].any()


def test_no_moments_stay_no_moments(kit):
    source, target = kit.shape(), kit.shape(layers=4, hidden=32, heads=8, kv_heads=4, ffn=48)
    result = grow(kit.state(source), source, target, kit.vocab, "zero", "split",
                  optimizer="transform")
    assert result.state.exp_avg == {} and result.state.exp_avg_sq == {}


@pytest.mark.parametrize("depth_op, width_op, optimizer, lr", [
    ("stack", "split", "reset", "restart"),
    ("masked", "masked", "carry", "rewind"),
    ("zero", "split", "transform", "rewind"),
    (None, "hyperclone", "transform", "continue"),
])
def test_combined_defaults(kit, depth_op, width_op, optimizer, lr):
    source = kit.shape()
    target = kit.shape(layers=4 if depth_op else 2, hidden=32, heads=8, kv_heads=4, ffn=48)
    result = grow(kit.state(source), source, target, kit.vocab, depth_op, width_op)
    assert (result.optimizer_policy, result.lr_policy) == (optimizer, lr)


def test_operator_table_declares_every_operator():
    assert set(OPERATORS["depth"]) == {"stack", "interleave", "zero", "masked"}
    assert set(OPERATORS["width"]) == {"split", "hyperclone", "zero", "masked"}
    assert (OPERATORS["depth"]["stack"].optimizer == "reset"
            and not OPERATORS["depth"]["stack"].function_preserving)
    assert OPERATORS["width"]["masked"].masked and OPERATORS["width"]["masked"].function_preserving
