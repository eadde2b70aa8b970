"""Model shapes, parameter counts and the FLOP formula against hand-computed values."""

import pytest
import torch

from raygrow.config import Shape
from raygrow.model import build_model, compile_blocks, flops_per_token, param_counts, shape_of


@pytest.mark.parametrize("shape", [
    Shape(layers=2, hidden=64, heads=4, kv_heads=2, ffn=172),
    Shape(layers=3, hidden=48, heads=6, ffn=100, tie_embeddings=True),
    Shape(layers=1, hidden=32, heads=1),
])
def test_param_counts_match_the_real_model(shape):
    model = build_model(shape, vocab=258)
    counts = param_counts(shape, 258)
    assert counts["params"] == sum(p.numel() for p in model.parameters())
    embedding = sum(p.numel() for n, p in model.named_parameters()
                    if "embed" in n or "lm_head" in n)
    assert counts["non_embedding_params"] == counts["params"] - embedding
    assert shape_of(model.config) == Shape(**{**shape.__dict__, "vocab": 258})


def test_flops_per_token_hand_computed():
    # d=64, L=2, heads 4 (head_dim 16), kv 2 → kv_dim 32, ffn 172.
    # block: q 64·64 + k 64·32 + v 64·32 + o 64·64 = 12288; mlp 3·64·172 = 33024; norms 128 → 45440
    # non-embedding: 2·45440 + 64 (final norm) = 90944; FLOPs/token = 6·90944 + 12·2·64·128 = 742272
    shape = Shape(layers=2, hidden=64, heads=4, kv_heads=2, ffn=172)
    assert param_counts(shape, 258)["non_embedding_params"] == 90944
    assert flops_per_token(shape, 258, 128) == 6 * 90944 + 12 * 2 * 64 * 128 == 742272


def test_same_seed_same_weights_and_causal_logits():
    shape = Shape(layers=2, hidden=32, heads=4)
    a, b = build_model(shape, 258, seed=3), build_model(shape, 258, seed=3)
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert torch.equal(pa, pb), name
    tokens = torch.randint(0, 258, (2, 16))
    logits = a(input_ids=tokens).logits
    assert logits.shape == (2, 16, 258)
    changed = tokens.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 258
    torch.testing.assert_close(a(input_ids=changed).logits[:, :-1], logits[:, :-1])


def test_compiled_blocks_keep_names_and_logits():
    """`train.compile` compiles each block in place: same parameter names (checkpoints, growth and
    export are unaffected), same logits and gradients as eager up to float rounding. The graph
    capture is what is tested here (aot_eager: inductor's C++ build takes minutes on 2 cores);
    tests/test_gpu.py trains with inductor on a GPU."""
    shape = Shape(layers=2, hidden=32, heads=4, kv_heads=2, ffn=64)
    eager, compiled = build_model(shape, 258, seed=1), build_model(shape, 258, seed=1)
    compile_blocks(compiled, backend="aot_eager")
    assert [n for n, _ in compiled.named_parameters()] == [n for n, _ in eager.named_parameters()]
    assert compiled.state_dict().keys() == eager.state_dict().keys()
    tokens = torch.randint(0, 258, (2, 16))
    expected, got = eager(input_ids=tokens).logits, compiled(input_ids=tokens).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    expected.sum().backward()
    got.sum().backward()
    for (name, a), (_, b) in zip(eager.named_parameters(), compiled.named_parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-3, atol=1e-4, msg=name)
