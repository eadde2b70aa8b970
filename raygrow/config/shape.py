"""A Llama-architecture model shape: what every stage, growth and export is sized by."""

from __future__ import annotations

from dataclasses import dataclass

from raygrow.config.binding import require

GROWN_DIMENSIONS = ("layers", "hidden", "heads", "kv_heads", "ffn")  # what growth may enlarge


@dataclass
class Shape:
    """A Llama-architecture model shape."""

    layers: int  # transformer blocks
    hidden: int  # model width d
    heads: int  # attention heads; head_dim = hidden / heads
    kv_heads: int | None = None  # grouped-query heads; None = heads (plain multi-head attention)
    ffn: int | None = None  # SwiGLU intermediate size; None = 8/3·hidden rounded up to 8
    vocab: int | None = None  # None = the tokenizer's vocabulary size
    max_positions: int = 2048  # RoPE positions the model is built for; data.seq_len must fit
    tie_embeddings: bool = False  # share input embedding and LM head

    def __post_init__(self) -> None:
        for name in ("layers", "hidden", "heads"):
            require(getattr(self, name) >= 1, name, f"must be ≥ 1, got {getattr(self, name)}")
        if self.kv_heads is None:
            self.kv_heads = self.heads
        if self.ffn is None:
            self.ffn = -(-8 * self.hidden // 3 // 8) * 8
        require(self.hidden % self.heads == 0, "hidden",
                 f"must be divisible by heads ({self.heads}), got {self.hidden}")
        require(self.kv_heads >= 1 and self.heads % self.kv_heads == 0, "kv_heads",
                 f"must divide heads ({self.heads}), got {self.kv_heads}")
        require(self.ffn >= 1, "ffn", f"must be ≥ 1, got {self.ffn}")
        require(self.vocab is None or self.vocab >= 2, "vocab", f"must be ≥ 2, got {self.vocab}")
        require(self.max_positions >= 1, "max_positions", f"must be ≥ 1, got {self.max_positions}")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    def vocab_size(self, tokenizer_vocab: int) -> int:
        """The model's vocabulary: its own `vocab` when set, else the tokenizer's."""
        return self.vocab or tokenizer_vocab
