"""Llama-architecture models from a shape (Llama, Mistral, Qwen2); parameter and FLOP counts.

FLOP convention (PaLM appendix B, as torchtitan): training FLOPs per token =
6·N_non-embedding + 12·L·d·T, where the second term is attention's QK^T and AV matmuls
(forward + backward) over a context of T tokens. Embedding lookups cost no FLOPs; an untied LM
head is a matmul but, following that convention, is counted with the embeddings (excluded).

With frozen parameters (`train.trainable`) the same convention splits into its parts: every
token pays the forward pass (2·N + 4·L·d·T); the backward pass computes activation gradients
(2·N_block + 8·d·T per block, and the final norm's) only from the top of the model down to the
lowest block holding a trainable parameter (nothing below it needs a gradient), and weight
gradients (2·N) only for trainable parameters. With everything trainable this is
6·N + 12·L·d·T again.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection

import torch
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from raygrow.config import Shape
from raygrow.config.pretrained import shape_fields

ROPE_THETA = 10_000.0
NORM_EPS = 1e-5
# What a shape without `arch` (a model raygrow initialises itself) is built with.
DEFAULT_ARCH = {"rms_norm_eps": NORM_EPS,
                "rope_parameters": {"rope_type": "default", "rope_theta": ROPE_THETA}}
FAMILY_CLASSES = {
    "llama": (LlamaConfig, LlamaForCausalLM),
    "mistral": (MistralConfig, MistralForCausalLM),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
}

LM_HEAD = "lm_head.weight"
EMBED = "model.embed_tokens.weight"
FINAL_NORM = "model.norm.weight"
LAYER_PREFIX = "model.layers."


def hf_config(shape: Shape, vocab: int, bos_id: int | None = None, eos_id: int | None = None):
    """The Hugging Face config of `shape`'s family with a vocabulary of `vocab` tokens. Token ids
    given here win over the ones `shape.arch` holds."""
    config_class, _ = FAMILY_CLASSES[shape.family]
    settings = dict(DEFAULT_ARCH if shape.arch is None else shape.arch)
    if shape.arch is None:
        settings.update(bos_token_id=bos_id, eos_token_id=eos_id, pad_token_id=None)
    given = {"bos_token_id": bos_id, "eos_token_id": eos_id}
    settings.update({key: value for key, value in given.items() if value is not None})
    if shape.head_dim is not None or "head_dim" in config_class.__annotations__:
        settings["head_dim"] = shape.head_size  # Qwen2 has no such field unless it is set apart
    return config_class(
        **settings,
        vocab_size=vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.ffn,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.kv_heads,
        max_position_embeddings=shape.max_positions,
        tie_word_embeddings=shape.tie_embeddings,
        use_cache=False,
    )


def build_model(shape: Shape, vocab: int, seed: int = 0,
                **token_ids: int | None) -> PreTrainedModel:
    """A freshly initialised fp32 model of the shape's family; the same seed gives the same
    weights on every rank."""
    config = hf_config(shape, vocab, **token_ids)
    # sdpa is exact enough for the logit checks and much faster than eager on CPU.
    config._attn_implementation = "sdpa"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = FAMILY_CLASSES[shape.family][1](config)
    return model


def compile_blocks(model: PreTrainedModel, backend: str = "inductor") -> None:
    """torch.compile each decoder block in place (regional compilation): the blocks share one
    compiled graph, parameter names stay as they are (checkpoints, growth and export see no
    difference), and hooks on a block (MSG masks) are traced with it."""
    for block in model.model.layers:
        block.compile(backend=backend)


def shape_of(config) -> Shape:
    """The raygrow shape of a Hugging Face config (e.g. of an export or a pretrained model), with
    `arch` None where the config has raygrow's defaults. Raises ConfigError naming `model_type`
    for a family raygrow does not build."""
    shape = Shape(**shape_fields(config.to_diff_dict(), "config.json"))
    default = hf_config(dataclasses.replace(shape, arch=None), shape.vocab)
    default_arch = shape_fields(default.to_diff_dict(), "config.json")["arch"]
    if _without_token_ids(default_arch) == _without_token_ids(shape.arch):
        return dataclasses.replace(shape, arch=None)
    return shape


def _without_token_ids(arch: dict) -> dict:
    return {key: value for key, value in arch.items() if not key.endswith("token_id")}


def layer_key(layer: int, tensor: str) -> str:
    return f"{LAYER_PREFIX}{layer}.{tensor}"


def block_shapes(shape: Shape) -> dict[str, tuple[int, ...]]:
    """The tensors of one decoder block (names under `model.layers.{i}.`) and their sizes."""
    d, q_dim, kv_dim = shape.hidden, shape.heads * shape.head_size, shape.kv_heads * shape.head_size
    outputs = {"self_attn.q_proj": (q_dim, d), "self_attn.k_proj": (kv_dim, d),
               "self_attn.v_proj": (kv_dim, d), "self_attn.o_proj": (d, q_dim),
               "mlp.gate_proj": (shape.ffn, d), "mlp.up_proj": (shape.ffn, d),
               "mlp.down_proj": (d, shape.ffn)}
    block = {}
    for projection, size in outputs.items():
        block[f"{projection}.weight"] = size
        if projection in shape.biased:
            block[f"{projection}.bias"] = size[:1]
    block["input_layernorm.weight"] = (d,)
    block["post_attention_layernorm.weight"] = (d,)
    return block


def param_shapes(shape: Shape, vocab: int) -> dict[str, tuple[int, ...]]:
    """The parameter names and sizes of a model of `shape`, in Hugging Face order."""
    shapes = {EMBED: (vocab, shape.hidden)}
    block = block_shapes(shape)
    for layer in range(shape.layers):
        shapes.update({layer_key(layer, name): size for name, size in block.items()})
    shapes[FINAL_NORM] = (shape.hidden,)
    if not shape.tie_embeddings:
        shapes[LM_HEAD] = (vocab, shape.hidden)
    return shapes


def block_params(shape: Shape) -> int:
    """Parameters of one transformer block: attention, SwiGLU MLP (biases too), two RMSNorms."""
    return sum(math.prod(size) for size in block_shapes(shape).values())


def param_counts(shape: Shape, vocab: int) -> dict[str, int]:
    """Total and non-embedding parameter counts (the non-embedding count excludes the LM head
    too)."""
    embedding = vocab * shape.hidden
    head = 0 if shape.tie_embeddings else vocab * shape.hidden
    non_embedding = shape.layers * block_params(shape) + shape.hidden  # + final norm
    return {"params": non_embedding + embedding + head, "non_embedding_params": non_embedding}


def flops_per_token(shape: Shape, vocab: int, seq_len: int,
                    trainable: Collection[str] | None = None) -> int:
    """Training FLOPs per token: 6·N_non-embedding + 12·L·d·T with every parameter trained;
    with only the parameters named in `trainable` trained, the split of the module docstring."""
    if trainable is None:
        non_embedding = param_counts(shape, vocab)["non_embedding_params"]
        return 6 * non_embedding + 12 * shape.layers * shape.hidden * seq_len
    trainable = set(trainable)
    sizes = param_shapes(shape, vocab)
    attention = 4 * shape.hidden * seq_len  # one block's QK^T and AV, forward
    per_block = block_params(shape)
    forward = 2 * (shape.layers * per_block + shape.hidden) + shape.layers * attention
    weight_grads = 2 * sum(math.prod(size) for name, size in sizes.items()
                           if name in trainable and name not in (EMBED, LM_HEAD))
    lowest = _lowest_trained_block(shape, trainable)
    if lowest is None:  # nothing below the head trains: no backward into the model
        activation_grads = 0
    else:  # through the final norm, then each block down to the lowest trained one
        per_layer = 2 * per_block + 2 * attention
        activation_grads = 2 * shape.hidden + (shape.layers - lowest) * per_layer
    return forward + activation_grads + weight_grads


def _lowest_trained_block(shape: Shape, trainable: set[str]) -> int | None:
    """The lowest block the backward pass must reach (0 when the embedding trains), or None."""
    if EMBED in trainable:
        return 0
    layers = [int(name[len(LAYER_PREFIX):].split(".")[0]) for name in trainable
              if name.startswith(LAYER_PREFIX)]
    return min(layers) if layers else None


def tokens_for_flops(flops: float, per_token: float, batch_tokens: int,
                     round_down: bool = False) -> int:
    """The training tokens `flops` buys at `per_token` FLOPs each, in whole batches of
    `batch_tokens` (to the nearest batch, or down), at least one batch: how a FLOP budget
    becomes a stage's tokens (the trainer runs whole steps)."""
    batches = flops / per_token / batch_tokens
    return max(1, int(batches) if round_down else round(batches)) * batch_tokens
