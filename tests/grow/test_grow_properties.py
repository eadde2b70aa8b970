"""Property tests over random valid (source, target, operators): shapes line up, and every growth
that claims to preserve the function does so on real Hugging Face forward passes."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raygrow.config import Shape
from raygrow.grow import (PRESERVATION_TOLERANCE, grow, load_into_model, max_logit_difference,
                          param_shapes)

DEPTH_OPS = [None, "stack", "interleave", "zero", "masked"]
WIDTH_OPS = [None, "split", "hyperclone", "zero", "masked"]


@st.composite
def growths(draw):
    """(source, target, depth_op, width_op, layer_order), tiny and valid."""
    head_dim, kv, group = (draw(st.sampled_from([2, 4])), draw(st.integers(1, 2)),
                           draw(st.integers(1, 2)))
    layers, ffn, tied = draw(st.integers(1, 3)), draw(st.integers(2, 12)), draw(st.booleans())
    source = Shape(layers=layers, hidden=kv * group * head_dim, heads=kv * group,
                   kv_heads=kv, ffn=ffn,
                   tie_embeddings=tied)
    depth_op, width_op = draw(st.sampled_from(DEPTH_OPS)), draw(st.sampled_from(WIDTH_OPS))
    if width_op == "hyperclone":  # integer multiples
        kv, group, ffn = (kv * draw(st.integers(1, 2)), group * draw(st.integers(1, 2)),
                          ffn * draw(st.integers(1, 3)))
    elif width_op is not None:
        kv, group, ffn = (kv + draw(st.integers(0, 2)), group + draw(st.integers(0, 2)),
                          ffn + draw(st.integers(0, 8)))
    order = None
    if depth_op in ("stack", "interleave"):
        layers *= draw(st.integers(1, 3))
        if depth_op == "stack" and draw(st.booleans()):
            order = draw(st.lists(st.integers(0, source.layers - 1), min_size=source.layers,
                                  max_size=6))
            layers = len(order)
    elif depth_op is not None:
        layers += draw(st.integers(0, 4))
    target = Shape(layers=layers, hidden=kv * group * head_dim, heads=kv * group,
                   kv_heads=kv, ffn=ffn,
                   tie_embeddings=tied)
    return source, target, depth_op, width_op, order


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=growths(), moments=st.booleans(), seed=st.integers(0, 3))
def test_any_valid_growth(kit, case, moments, seed):
    source, target, depth_op, width_op, order = case
    state = kit.state(source, moments=moments)
    result = grow(state, source, target, kit.vocab, depth_op, width_op,
                  layer_order=order, seed=seed)

    sizes = param_shapes(target, kit.vocab)
    assert {name: tuple(value.shape) for name, value in result.state.params.items()} == sizes
    for moments_table in (result.state.exp_avg, result.state.exp_avg_sq):
        if moments and result.optimizer_policy != "reset":
            assert {name: tuple(value.shape) for name, value in moments_table.items()} == sizes
        else:
            assert moments_table == {}

    same_blocks = target.layers == source.layers and order in (None, list(range(source.layers)))
    copies_depth = depth_op in ("stack", "interleave") and not same_blocks
    uneven_hidden_split = width_op == "split" and target.hidden % source.hidden != 0
    assert result.function_preserving == (not copies_depth and not uneven_hidden_split)
    if result.function_preserving:
        before = load_into_model(state, source, kit.vocab)
        assert (max_logit_difference(before, kit.model(result), kit.vocab, seq_len=8)
                <= PRESERVATION_TOLERANCE)
