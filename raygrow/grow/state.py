"""The full training state growth works on, and its round trip through a Hugging Face model.

Growth runs on whole fp32 tensors under Hugging Face Llama key names, never on ZeRO partitions
(DESIGN.md invariant 6): the caller gathers first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import LlamaForCausalLM

from raygrow.config import Shape
from raygrow.errors import ConfigError
from raygrow.model import build_model

LM_HEAD = "lm_head.weight"
EMBED = "model.embed_tokens.weight"
FINAL_NORM = "model.norm.weight"
LAYER_PREFIX = "model.layers."

# The tensors of one decoder block, under `model.layers.{i}.`
BLOCK_TENSORS = (
    "self_attn.q_proj.weight",
    "self_attn.k_proj.weight",
    "self_attn.v_proj.weight",
    "self_attn.o_proj.weight",
    "mlp.gate_proj.weight",
    "mlp.up_proj.weight",
    "mlp.down_proj.weight",
    "input_layernorm.weight",
    "post_attention_layernorm.weight",
)


@dataclass
class TrainState:
    """Everything growth transforms: parameters and AdamW moments, by Hugging Face key name."""

    params: dict[str, torch.Tensor]  # full fp32 tensors; lm_head.weight absent when embeddings are tied
    exp_avg: dict[str, torch.Tensor] = field(default_factory=dict)  # AdamW first moments; empty = none
    exp_avg_sq: dict[str, torch.Tensor] = field(default_factory=dict)  # AdamW second moments
    step: int = 0  # optimizer steps taken


def layer_key(layer: int, tensor: str) -> str:
    return f"{LAYER_PREFIX}{layer}.{tensor}"


def param_shapes(shape: Shape, vocab: int) -> dict[str, tuple[int, ...]]:
    """The parameter names and sizes of a model of `shape`, in Hugging Face order."""
    d, q_dim, kv_dim = shape.hidden, shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    block = {
        "self_attn.q_proj.weight": (q_dim, d),
        "self_attn.k_proj.weight": (kv_dim, d),
        "self_attn.v_proj.weight": (kv_dim, d),
        "self_attn.o_proj.weight": (d, q_dim),
        "mlp.gate_proj.weight": (shape.ffn, d),
        "mlp.up_proj.weight": (shape.ffn, d),
        "mlp.down_proj.weight": (d, shape.ffn),
        "input_layernorm.weight": (d,),
        "post_attention_layernorm.weight": (d,),
    }
    shapes = {EMBED: (vocab, d)}
    for layer in range(shape.layers):
        shapes.update({layer_key(layer, name): size for name, size in block.items()})
    shapes[FINAL_NORM] = (d,)
    if not shape.tie_embeddings:
        shapes[LM_HEAD] = (vocab, d)
    return shapes


def check_state(state: TrainState, shape: Shape, vocab: int) -> None:
    """Refuse a state whose tensors do not match `shape` (a wrong source shape or vocab)."""
    expected = param_shapes(shape, vocab)
    tables = {"params": state.params, "exp_avg": state.exp_avg, "exp_avg_sq": state.exp_avg_sq}
    for table_name, table in tables.items():
        if table_name != "params" and not table:
            continue  # no optimizer state is allowed
        missing = sorted(set(expected) - set(table))
        extra = sorted(set(table) - set(expected))
        if missing or extra:
            what = f"lacks {missing[0]}" if missing else f"has unexpected {extra[0]}"
            raise ConfigError("source", f"state.{table_name} {what} for the source shape {shape}")
        for name, size in expected.items():
            if tuple(table[name].shape) != size:
                raise ConfigError("source", f"state.{table_name}[{name}] is {tuple(table[name].shape)}, "
                                            f"the source shape needs {size} (vocab {vocab})")


def state_from_model(model: LlamaForCausalLM) -> TrainState:
    """The parameters of `model` as a TrainState (no optimizer moments, step 0)."""
    # named_parameters lists a tied head once, under the embedding's name, as TrainState wants.
    params = {name: p.detach().float().clone() for name, p in model.named_parameters()}
    return TrainState(params=params)


def load_into_model(state: TrainState, shape: Shape, vocab: int, **token_ids: int | None) -> LlamaForCausalLM:
    """A fresh Hugging Face model of `shape` holding `state.params` (token ids go to its config)."""
    check_state(TrainState(params=state.params), shape, vocab)
    model = build_model(shape, vocab, **token_ids)
    result = model.load_state_dict(state.params, strict=False)
    # A tied head shares the embedding tensor, so only its own key may be missing.
    allowed_missing = {LM_HEAD} if shape.tie_embeddings else set()
    if set(result.missing_keys) - allowed_missing or result.unexpected_keys:
        raise ConfigError("source", f"state does not fit the model: missing {result.missing_keys}, "
                                    f"unexpected {result.unexpected_keys}")
    return model
