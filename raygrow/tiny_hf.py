"""Tiny pretrained-looking Hugging Face models, written by stock `transformers` (no hub needed).

What `stages[0].init` plans (jobs/plans/solar_tiny.yaml, llama_pro_tiny.yaml) and their tests
start from. Each family's model uses the config fields that set it apart from raygrow's own
defaults, so a run that dropped one would change the function:
- llama: RoPE theta 500000 with `llama3` rope scaling, RMSNorm eps 1e-6, GQA (4 heads, 2 kv heads)
- mistral: head_dim 32 set apart from hidden / heads (16), tied embeddings, a sliding window
- qwen2: q/k/v biases, tied embeddings, a vocabulary larger than the tokenizer's (as Qwen2's is)
Weights are drawn by the class's own initialiser, then biases and norm weights are moved off
their 0 and 1 so that growing them wrongly shows in the logits. The tokenizer is raygrow's byte
tokenizer saved as a stock fast tokenizer (258 tokens).

    python jobs/make_tiny_hf.py ./models/tiny-llama [--family llama|mistral|qwen2]
"""

from __future__ import annotations

from pathlib import Path

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

from raygrow.data.tokenizer import ByteTokenizer

TOKENIZER_VOCAB = ByteTokenizer.vocab_size
COMMON = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
    "bos_token_id": ByteTokenizer.bos_id,
    "eos_token_id": ByteTokenizer.eos_id,
}
FAMILIES = {
    "llama": (
        LlamaConfig,
        LlamaForCausalLM,
        {
            "vocab_size": TOKENIZER_VOCAB,
            "rms_norm_eps": 1e-6,
            "tie_word_embeddings": False,
            "rope_parameters": {
                "rope_type": "llama3",
                "rope_theta": 500_000.0,
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
            },
        },
    ),
    "mistral": (
        MistralConfig,
        MistralForCausalLM,
        {
            "vocab_size": TOKENIZER_VOCAB,
            "head_dim": 32,
            "tie_word_embeddings": True,
            "sliding_window": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0},
        },
    ),
    "qwen2": (
        Qwen2Config,
        Qwen2ForCausalLM,
        {
            "vocab_size": TOKENIZER_VOCAB + 6,
            "tie_word_embeddings": True,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0},
        },
    ),
}


def tiny_model(family: str = "llama", seed: int = 0) -> PreTrainedModel:
    """A tiny model of `family` as its stock class initialises it, biases and norms perturbed."""
    config_class, model_class, fields = FAMILIES[family]
    config = config_class(**COMMON, **fields)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_class(config)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.endswith(".bias"):
                    param.copy_(0.1 * torch.randn_like(param))
                elif name.endswith("norm.weight"):
                    param.copy_(1 + 0.1 * torch.randn_like(param))
    return model


def write_tiny_model(out_dir: str | Path, family: str = "llama", seed: int = 0) -> Path:
    """Write a tiny `family` model and the byte tokenizer into `out_dir` (save_pretrained)."""
    out_dir = Path(out_dir)
    tiny_model(family, seed).save_pretrained(out_dir, safe_serialization=True)
    ByteTokenizer().save_pretrained(str(out_dir))
    return out_dir
