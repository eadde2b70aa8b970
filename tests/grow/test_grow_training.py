"""A grown model trains: loss falls over a few AdamW steps on a fixed batch."""

from __future__ import annotations

import pytest

from raygrow.grow import grow, load_into_model


@pytest.mark.parametrize("depth_op, width_op",
                         [("stack", "split"), ("zero", "zero"), ("interleave", "hyperclone")])
def test_grown_model_trains(kit, depth_op, width_op):
    source, target = kit.shape(), kit.shape(layers=4, hidden=32, heads=8, kv_heads=4, ffn=48)
    result = grow(kit.state(source), source, target, kit.vocab, depth_op, width_op)
    model = load_into_model(result.state, target, kit.vocab)
    losses = kit.train(model, kit.batch(), steps=8)
    assert losses[-1] < 0.9 * losses[0]


def test_copied_units_drift_apart_while_training(kit):
    """Symmetry-breaking noise lets a unit and its copy learn different things."""
    source, target = kit.shape(), kit.shape(ffn=48)
    result = grow(kit.state(source), source, target, kit.vocab, None, "hyperclone")
    model = load_into_model(result.state, target, kit.vocab)
    kit.train(model, kit.batch(), steps=5)
    up = model.model.layers[0].mlp.up_proj.weight
    assert (up[:24] - up[24:]).abs().max() > 1e-3
