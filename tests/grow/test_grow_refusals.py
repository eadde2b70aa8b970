"""Impossible growths stop with one ConfigError line naming the field."""

from __future__ import annotations

import dataclasses

import pytest

from raygrow.errors import ConfigError
from raygrow.grow import grow

BASE = dict(layers=2, hidden=16, heads=4, kv_heads=2, ffn=24)
WIDER = dict(hidden=32, heads=8, kv_heads=4, ffn=48)


def broken(shape, **fields):
    """A shape with fields no Shape constructor would accept (grow must not trust its input)."""
    shape = dataclasses.replace(shape)
    for name, value in fields.items():
        setattr(shape, name, value)
    return shape


# (id, target fields, depth op, width op, extra grow kwargs, field named in the error)
REFUSALS = [
    ("shrink-layers", dict(layers=1), "stack", None, {}, "layers"),
    ("shrink-hidden", dict(hidden=8, heads=2, kv_heads=1, ffn=24), None, "zero", {}, "hidden"),
    ("shrink-ffn", dict(ffn=16), None, "split", {}, "ffn"),
    ("shrink-kv-heads", dict(hidden=32, heads=8, kv_heads=1), None, "split", {}, "kv_heads"),
    ("head-dim-changes", dict(hidden=32, heads=4, kv_heads=2), None, "split", {}, "heads"),
    ("kv-group-shrinks", dict(hidden=32, heads=8, kv_heads=8), None, "split", {}, "kv_heads"),
    ("hyperclone-hidden", dict(hidden=24, heads=6, kv_heads=2, ffn=48), None, "hyperclone",
     {}, "hidden"),
    ("hyperclone-ffn", dict(ffn=36), None, "hyperclone", {}, "ffn"),
    ("hyperclone-kv", dict(hidden=48, heads=12, kv_heads=3, ffn=48), None, "hyperclone", {},
     "kv_heads"),
    ("unknown-depth-op", dict(layers=4), "grow", None, {}, "depth_op"),
    ("unknown-width-op", WIDER, None, "net2net", {}, "width_op"),
    ("unknown-optimizer", dict(layers=4), "stack", None, {"optimizer": "sgd"}, "optimizer"),
    ("depth-without-op", dict(layers=4), None, None, {}, "depth_op"),
    ("width-without-op", WIDER, None, None, {}, "width_op"),
    ("ffn-without-op", dict(ffn=32), None, None, {}, "width_op"),
    ("interleave-not-multiple", dict(layers=3), "interleave", None, {}, "layers"),
    ("stack-not-multiple", dict(layers=3), "stack", None, {}, "layers"),
    ("order-wrong-length", dict(layers=4), "stack", None, {"layer_order": [0, 1, 0]},
     "layer_order"),
    ("order-bad-layer", dict(layers=3), "stack", None, {"layer_order": [0, 1, 2]}, "layer_order"),
    ("order-not-stack", dict(layers=4), "zero", None, {"layer_order": [0, 1, 0, 1]}, "layer_order"),
    ("tie-changes", dict(tie_embeddings=True), None, None, {}, "tie_embeddings"),
]


@pytest.mark.parametrize("target_fields, depth_op, width_op, extra, field",
                         [r[1:] for r in REFUSALS],
                         ids=[r[0] for r in REFUSALS])
def test_refusal(kit, target_fields, depth_op, width_op, extra, field):
    source, target = kit.shape(**BASE), kit.shape(**{**BASE, **target_fields})
    with pytest.raises(ConfigError) as error:
        grow(kit.state(source), source, target, kit.vocab, depth_op, width_op, **extra)
    assert error.value.field == field
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("fields, field",
                         [(dict(heads=3), "heads"), (dict(kv_heads=3), "kv_heads")])
def test_inconsistent_target_shape(kit, fields, field):
    source = kit.shape(**BASE)
    with pytest.raises(ConfigError) as error:
        grow(kit.state(source), source, broken(source, **fields), kit.vocab, None, "split")
    assert error.value.field == field


def test_state_that_does_not_match_the_source_shape(kit):
    source = kit.shape(**BASE)
    state = kit.state(kit.shape(**{**BASE, "ffn": 32}))
    with pytest.raises(ConfigError, match="gate_proj") as error:
        grow(state, source, kit.shape(**{**BASE, "layers": 4}), kit.vocab, "stack", None)
    assert error.value.field == "source"
