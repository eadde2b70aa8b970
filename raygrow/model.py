"""Llama-architecture models from a shape; parameter and FLOP counts.

FLOP convention (PaLM appendix B, as torchtitan): training FLOPs per token =
6·N_non-embedding + 12·L·d·T, where the second term is attention's QK^T and AV matmuls
(forward + backward) over a context of T tokens. Embedding lookups cost no FLOPs; an untied LM
head is a matmul but, following that convention, is counted with the embeddings (excluded).
"""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from raygrow.config import Shape

ROPE_THETA = 10_000.0
NORM_EPS = 1e-5


def hf_config(shape: Shape, vocab: int, bos_id: int | None = None, eos_id: int | None = None) -> LlamaConfig:
    """The Hugging Face config for `shape` with a vocabulary of `vocab` tokens."""
    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.ffn,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        head_dim=shape.head_dim,
        max_position_embeddings=shape.max_positions,
        tie_word_embeddings=shape.tie_embeddings,
        rms_norm_eps=NORM_EPS,
        rope_parameters={"rope_type": "default", "rope_theta": ROPE_THETA},
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=None,
        use_cache=False,
    )


def build_model(shape: Shape, vocab: int, seed: int = 0, **token_ids: int | None) -> LlamaForCausalLM:
    """A freshly initialised fp32 Llama model; the same seed gives the same weights on every rank."""
    config = hf_config(shape, vocab, **token_ids)
    # sdpa is exact enough for the logit checks and much faster than eager on CPU.
    config._attn_implementation = "sdpa"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model


def compile_blocks(model: LlamaForCausalLM, backend: str = "inductor") -> None:
    """torch.compile each decoder block in place (regional compilation): the blocks share one
    compiled graph, parameter names stay as they are (checkpoints, growth and export see no
    difference), and hooks on a block (MSG masks) are traced with it."""
    for block in model.model.layers:
        block.compile(backend=backend)


def shape_of(config: LlamaConfig) -> Shape:
    """The raygrow shape of a Hugging Face Llama config (e.g. of an export)."""
    return Shape(
        layers=config.num_hidden_layers,
        hidden=config.hidden_size,
        heads=config.num_attention_heads,
        kv_heads=config.num_key_value_heads,
        ffn=config.intermediate_size,
        vocab=config.vocab_size,
        max_positions=config.max_position_embeddings,
        tie_embeddings=bool(config.tie_word_embeddings),
    )


def block_params(shape: Shape) -> int:
    """Parameters of one transformer block: attention, SwiGLU MLP and two RMSNorms."""
    d, kv_dim = shape.hidden, shape.kv_heads * shape.head_dim
    attention = d * d + 2 * d * kv_dim + d * d  # q, k, v, o projections (no biases)
    mlp = 3 * d * shape.ffn  # gate, up, down
    return attention + mlp + 2 * d


def param_counts(shape: Shape, vocab: int) -> dict[str, int]:
    """Total and non-embedding parameter counts (the non-embedding count excludes the LM head too)."""
    embedding = vocab * shape.hidden
    head = 0 if shape.tie_embeddings else vocab * shape.hidden
    non_embedding = shape.layers * block_params(shape) + shape.hidden  # + final norm
    return {"params": non_embedding + embedding + head, "non_embedding_params": non_embedding}


def flops_per_token(shape: Shape, vocab: int, seq_len: int) -> int:
    """Training FLOPs per token: 6·N_non-embedding + 12·L·d·T."""
    non_embedding = param_counts(shape, vocab)["non_embedding_params"]
    return 6 * non_embedding + 12 * shape.layers * shape.hidden * seq_len


def tokens_for_flops(flops: float, per_token: float, batch_tokens: int, round_down: bool = False) -> int:
    """The training tokens `flops` buys at `per_token` FLOPs each, in whole batches of
    `batch_tokens` (to the nearest batch, or down), at least one batch: how a FLOP budget
    becomes a stage's tokens (the trainer runs whole steps)."""
    batches = flops / per_token / batch_tokens
    return max(1, int(batches) if round_down else round(batches)) * batch_tokens
