"""Shared pieces of the growth tests: tiny shapes, models and fake optimizer state."""

from __future__ import annotations

import pytest
import torch

from raygrow.config import Shape
from raygrow.grow import GrowthResult, TrainState, apply_masks, load_into_model, state_from_model
from raygrow.model import build_model

VOCAB = 64


class Kit:
    """Helpers handed to tests as the `kit` fixture (tests/ is not a package, so no imports)."""

    vocab = VOCAB

    @staticmethod
    def shape(**fields) -> Shape:
        defaults = dict(layers=2, hidden=16, heads=4, kv_heads=2, ffn=24)
        return Shape(**{**defaults, **fields})

    @staticmethod
    def state(shape: Shape, seed: int = 1, moments: bool = False, step: int = 7) -> TrainState:
        """A random state with trained-looking scales: weights of std 0.3 (logits of order 1, so a
        tolerance of 1e-4 means something) and norm weights around 1 but not equal to 1.
        With moments, random Adam moments too."""
        state = state_from_model(build_model(shape, VOCAB, seed=seed))
        generator = torch.Generator().manual_seed(seed)
        for name, value in state.params.items():
            noise = torch.randn(value.shape, generator=generator)
            state.params[name] = 1 + 0.3 * noise if name.endswith("norm.weight") else 0.3 * noise
        if moments:
            generator = torch.Generator().manual_seed(seed + 100)
            state.exp_avg = {k: torch.randn(v.shape, generator=generator)
                             for k, v in state.params.items()}
            state.exp_avg_sq = {k: torch.rand(v.shape, generator=generator)
                                for k, v in state.params.items()}
            state.step = step
        return state

    @staticmethod
    def model(result: GrowthResult):
        """The grown Hugging Face model, masks installed at m = 0 when the growth has them."""
        model = load_into_model(result.state, result.shape, VOCAB)
        if result.masks is not None:
            apply_masks(model, result.masks)
        return model

    @staticmethod
    def batch(seed: int = 0, rows: int = 4, seq_len: int = 16) -> torch.Tensor:
        return torch.randint(0, VOCAB, (rows, seq_len),
                             generator=torch.Generator().manual_seed(seed))

    @staticmethod
    def train(model, tokens: torch.Tensor, steps: int, lr: float = 1e-2,
              before_step=None) -> list[float]:
        """Losses of `steps` AdamW steps on one fixed batch; before_step(step) runs ahead of
        each."""
        torch.manual_seed(0)
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        losses = []
        for step in range(steps):
            if before_step is not None:
                before_step(step)
            loss = model(tokens, labels=tokens).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        return losses


@pytest.fixture
def kit() -> Kit:
    return Kit()
