"""A model shape: what every stage, growth and export is sized by, and the model family it is of.

The family (`llama`, `mistral`, `qwen2`: the Hugging Face model type) and `arch` (its other
config fields, e.g. rope_parameters, rms_norm_eps, attention_bias, as a pretrained checkpoint's
config.json has them) are carried unchanged through growth, training, checkpoints and export.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from raygrow.config.binding import require

GROWN_DIMENSIONS = ("layers", "hidden", "heads", "kv_heads", "ffn")  # what growth may enlarge
FAMILIES = ("llama", "mistral", "qwen2")  # Hugging Face model types raygrow builds and grows
ATTENTION = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj")
MLP = ("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")


@dataclass
class Shape:
    """A Llama-architecture model shape (Llama, Mistral and Qwen2 share the architecture)."""

    layers: int  # transformer blocks
    hidden: int  # model width d
    heads: int  # attention heads; head_dim = hidden / heads unless `head_dim` says otherwise
    kv_heads: int | None = None  # grouped-query heads; None = heads (plain multi-head attention)
    ffn: int | None = None  # SwiGLU intermediate size; None = 8/3·hidden rounded up to 8
    vocab: int | None = None  # None = the tokenizer's vocabulary size
    max_positions: int = 2048  # RoPE positions the model is built for; data.seq_len must fit
    tie_embeddings: bool = False  # share input embedding and LM head
    head_dim: int | None = None  # per-head width where a model sets it apart from hidden / heads
    family: str = "llama"  # the Hugging Face model type: llama | mistral | qwen2
    arch: dict[str, Any] | None = None  # the family's other config fields (rope, norm eps,
    #   biases, activation, token ids, ...), as a pretrained config.json has them; None = raygrow's
    #   defaults (RMSNorm eps 1e-5, RoPE theta 10000, no biases)

    def __post_init__(self) -> None:
        for name in ("layers", "hidden", "heads"):
            require(getattr(self, name) >= 1, name, f"must be ≥ 1, got {getattr(self, name)}")
        if self.kv_heads is None:
            self.kv_heads = self.heads
        if self.ffn is None:
            self.ffn = -(-8 * self.hidden // 3 // 8) * 8
        require(self.family in FAMILIES, "family",
                f"must be one of {', '.join(FAMILIES)}, got {self.family!r}")
        require(self.hidden % self.heads == 0, "hidden",
                 f"must be divisible by heads ({self.heads}), got {self.hidden}")
        require(self.head_dim is None or self.head_dim >= 1, "head_dim",
                f"must be ≥ 1, got {self.head_dim}")
        require(self.kv_heads >= 1 and self.heads % self.kv_heads == 0, "kv_heads",
                 f"must divide heads ({self.heads}), got {self.kv_heads}")
        require(self.ffn >= 1, "ffn", f"must be ≥ 1, got {self.ffn}")
        require(self.vocab is None or self.vocab >= 2, "vocab", f"must be ≥ 2, got {self.vocab}")
        require(self.max_positions >= 1, "max_positions", f"must be ≥ 1, got {self.max_positions}")
        require(self.arch is None or isinstance(self.arch, dict), "arch",
                f"must be a mapping of config fields, got {self.arch!r}")

    @property
    def head_size(self) -> int:
        """The width of one attention head (RoPE rotates pairs of its coordinates)."""
        return self.head_dim or self.hidden // self.heads

    @property
    def biased(self) -> tuple[str, ...]:
        """The projections of a block that have a bias, as the family builds them: Qwen2 has
        q/k/v biases; Llama has them where `attention_bias` (q/k/v/o) or `mlp_bias` says."""
        arch = self.arch or {}
        if self.family == "qwen2":
            return ATTENTION[:3]
        if self.family == "llama":
            return (ATTENTION if arch.get("attention_bias") else ()) + \
                (MLP if arch.get("mlp_bias") else ())
        return ()

    def vocab_size(self, tokenizer_vocab: int) -> int:
        """The model's vocabulary: its own `vocab` when set, else the tokenizer's."""
        return self.vocab or tokenizer_vocab
