"""Measuring function preservation (DESIGN.md invariant 2) on real Hugging Face forward passes."""

from __future__ import annotations

import torch
from torch import nn

PRESERVATION_TOLERANCE = 1e-4  # max |logit difference| a function-preserving growth may show (fp32)


def max_logit_difference(before: nn.Module, after: nn.Module, vocab: int, seed: int = 0,
                         batch: int = 2, seq_len: int = 32) -> float:
    """Max |logit difference| between two causal LMs on a seeded random batch of token ids."""
    tokens = torch.randint(0, vocab, (batch, seq_len),
                           generator=torch.Generator().manual_seed(seed))
    device = next(before.parameters()).device
    with torch.no_grad():
        first = before(tokens.to(device)).logits.float()
        second = after(tokens.to(device)).logits.float()
    return (first - second).abs().max().item()
