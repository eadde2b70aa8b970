"""Every function-preserving operator (masked ones at m = 0) keeps the logits, on real HF models."""

from __future__ import annotations

import pytest

from raygrow.grow import PRESERVATION_TOLERANCE, grow, load_into_model, max_logit_difference

SMALL = dict(layers=2, hidden=16, heads=4, kv_heads=2, ffn=24)
# (id, target shape fields, depth op, width op)
CASES = [
    ("depth-zero", dict(layers=5), "zero", None),
    ("depth-masked", dict(layers=4), "masked", None),
    ("split-ffn-uneven", dict(ffn=37), None, "split"),
    ("split-hidden-x2", dict(hidden=32, heads=8, kv_heads=4, ffn=48), None, "split"),
    ("split-hidden-x3-gqa-groups", dict(hidden=48, heads=12, kv_heads=4, ffn=40), None, "split"),
    ("hyperclone-x2", dict(hidden=32, heads=8, kv_heads=4, ffn=48), None, "hyperclone"),
    ("hyperclone-x2-kv-fixed", dict(hidden=32, heads=8, kv_heads=2, ffn=72), None, "hyperclone"),
    ("zero-width-uneven", dict(hidden=24, heads=6, kv_heads=2, ffn=30), None, "zero"),
    ("masked-width-uneven", dict(hidden=24, heads=6, kv_heads=2, ffn=30), None, "masked"),
    ("zero+zero", dict(layers=8, hidden=32, heads=8, kv_heads=2, ffn=50), "zero", "zero"),
    ("zero+split", dict(layers=8, hidden=32, heads=8, kv_heads=4, ffn=50), "zero", "split"),
    ("masked+hyperclone", dict(layers=8, hidden=32, heads=8, kv_heads=4, ffn=48), "masked",
     "hyperclone"),
    ("masked+masked", dict(layers=3, hidden=24, heads=6, kv_heads=3, ffn=30), "masked", "masked"),
    ("masked+zero", dict(layers=4, hidden=24, heads=6, kv_heads=2, ffn=30), "masked", "zero"),
]


# Model families and the config fields that change a block's function: growth must keep them.
FAMILIES = {
    "llama": {},
    "llama3-rope-biases": {"arch": {
        "rms_norm_eps": 1e-6, "attention_bias": True, "mlp_bias": True,
        "rope_parameters": {"rope_type": "llama3", "rope_theta": 500_000.0, "factor": 8.0,
                            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                            "original_max_position_embeddings": 8}}},
    "mistral-head_dim": {"family": "mistral", "head_dim": 8, "arch": {"sliding_window": 4096}},
    "qwen2-qkv-biases": {"family": "qwen2", "arch": {"rope_parameters": {
        "rope_type": "default", "rope_theta": 1_000_000.0}}},
}


# Every operator once per other family (at its usual embedding tying), plus the whole matrix for
# raygrow's own Llama: enough to catch a bias or head_dim grown wrongly, at a third of the time.
EVERY_OPERATOR = ("depth-zero", "depth-masked", "split-hidden-x2", "split-hidden-x3-gqa-groups",
                  "hyperclone-x2", "zero-width-uneven", "masked-width-uneven", "zero+split",
                  "masked+hyperclone")
OTHER_FAMILIES = (("llama3-rope-biases", False), ("mistral-head_dim", True),
                  ("qwen2-qkv-biases", True))
FAMILY_CASES = [("llama", tied, *case) for case in CASES for tied in (False, True)] + [
    (family, tied, *case) for family, tied in OTHER_FAMILIES
    for case in CASES if case[0] in EVERY_OPERATOR]


@pytest.mark.parametrize("family, tied, target_fields, depth_op, width_op",
                         [(family, tied, *rest) for family, tied, _, *rest in FAMILY_CASES],
                         ids=[f"{family}-{name}-{'tied' if tied else 'untied'}"
                              for family, tied, name, *_ in FAMILY_CASES])
def test_preserving_growth_keeps_logits(kit, target_fields, depth_op, width_op, tied, family):
    source = kit.shape(tie_embeddings=tied, **FAMILIES[family])
    target = kit.shape(**target_fields, tie_embeddings=tied, **FAMILIES[family])
    assert len(source.biased) == {"llama3-rope-biases": 7, "qwen2-qkv-biases": 3}.get(family, 0)
    state = kit.state(source)
    result = grow(state, source, target, kit.vocab, depth_op, width_op)
    assert result.function_preserving
    difference = max_logit_difference(load_into_model(state, source, kit.vocab),
                                      kit.model(result), kit.vocab)
    print(f"max |logit diff| {family} {depth_op}/{width_op} tied={tied}: {difference:.2e}")
    assert difference <= PRESERVATION_TOLERANCE


def test_uneven_hidden_split_is_declared_not_preserving(kit):
    """RMSNorm over [x; some copies of x] has another mean square: a small, measured drift."""
    source, target = kit.shape(), kit.shape(hidden=24, heads=6, kv_heads=3, ffn=36)
    state = kit.state(source)
    result = grow(state, source, target, kit.vocab, None, "split")
    assert not result.function_preserving
    drift = max_logit_difference(load_into_model(state, source, kit.vocab),
                                 kit.model(result), kit.vocab)
    print(f"uneven hidden split drift: {drift:.2e}")
    assert drift > PRESERVATION_TOLERANCE  # the claim is honest: it really is not exact


@pytest.mark.parametrize("depth_op", ["stack", "interleave"])
def test_copying_depth_is_declared_not_preserving(kit, depth_op):
    source, target = kit.shape(), kit.shape(layers=4)
    result = grow(kit.state(source), source, target, kit.vocab, depth_op, None)
    assert not result.function_preserving
    assert (result.optimizer_policy, result.lr_policy) == ("reset", "restart")
