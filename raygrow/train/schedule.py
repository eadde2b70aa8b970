"""Learning-rate schedules: linear warmup, then constant, cosine or WSD (warmup-stable-decay)."""

from __future__ import annotations

import math

from raygrow.config import TrainConfig


def lr_at(step: int, total_steps: int, train: TrainConfig) -> float:
    """The learning rate for optimizer step `step` (0-based) of a run of `total_steps` steps."""
    peak, floor = train.lr, train.lr * train.min_lr_ratio
    if step < train.warmup_steps:
        return peak * (step + 1) / train.warmup_steps
    if train.schedule == "constant":
        return peak
    if train.schedule == "cosine":
        span = max(1, total_steps - train.warmup_steps)
        progress = min(1.0, (step - train.warmup_steps) / span)
        return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    # WSD: stable at peak, then a linear decay over the last decay_fraction of the steps.
    decay_steps = max(1, round(total_steps * train.decay_fraction))
    decay_start = total_steps - decay_steps
    if step < decay_start:
        return peak
    progress = min(1.0, (step - decay_start + 1) / decay_steps)
    return peak + (floor - peak) * progress
