"""The full training state growth works on, and its round trip through a Hugging Face model.

Growth runs on whole fp32 tensors under Hugging Face key names (Llama, Mistral and Qwen2 share
them), never on ZeRO partitions (DESIGN.md invariant 6): the caller gathers first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import PreTrainedModel

from raygrow.config import Shape
from raygrow.errors import ConfigError
from raygrow.model import (  # noqa: F401 - the key names are part of this module's interface
    EMBED,
    FINAL_NORM,
    LAYER_PREFIX,
    LM_HEAD,
    block_shapes,
    build_model,
    layer_key,
    param_shapes,
)

# The tensors of one decoder block without biases, under `model.layers.{i}.`
# (`raygrow.model.block_shapes` gives a shape's own, biases included).
BLOCK_TENSORS = tuple(block_shapes(Shape(layers=1, hidden=2, heads=1)))


@dataclass
class TrainState:
    """Everything growth transforms: parameters and AdamW moments, by Hugging Face key name."""

    # full fp32 tensors; lm_head.weight absent when embeddings are tied
    params: dict[str, torch.Tensor]
    # AdamW first moments; empty = none
    exp_avg: dict[str, torch.Tensor] = field(default_factory=dict)
    exp_avg_sq: dict[str, torch.Tensor] = field(default_factory=dict)  # AdamW second moments
    step: int = 0  # optimizer steps taken


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
                raise ConfigError("source",
                                  f"state.{table_name}[{name}] is {tuple(table[name].shape)}, "
                                  f"the source shape needs {size} (vocab {vocab})")


def state_from_model(model: PreTrainedModel) -> TrainState:
    """The parameters of `model` as a TrainState (no optimizer moments, step 0)."""
    # named_parameters lists a tied head once, under the embedding's name, as TrainState wants.
    params = {name: p.detach().float().clone() for name, p in model.named_parameters()}
    return TrainState(params=params)


def load_into_model(state: TrainState, shape: Shape, vocab: int,
                    **token_ids: int | None) -> PreTrainedModel:
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
