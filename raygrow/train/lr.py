"""The learning rate: linear warm-up, then constant, cosine or WSD, seen through a stage's window.

A schedule can span several stages (a plan's `continue`), restart at a growth (`restart`: new
warm-up and decay; `rewind`: straight back to peak), or be one stage's own (a version's branch
decays linearly over just its steps). An `LRSegment` says which part of which schedule one
stage trains on; `lr(step)` is the only LR arithmetic in raygrow. Plans, versions and the
training loop build and read segments, nothing else.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

from raygrow.config import TrainConfig

Schedule = Literal["constant", "cosine", "wsd"]


@dataclass(frozen=True)
class LRSegment:
    """One stage's view of a learning-rate schedule."""

    peak: float  # the schedule's peak LR
    floor: float  # where cosine and WSD end
    schedule: Schedule
    warmup_steps: int  # linear warm-up at the schedule's start (0: it starts at peak)
    length: int  # optimizer steps of the whole schedule (it may span several stages)
    offset: int = 0  # the schedule's step at the stage's step 0 (its own step counter)
    decay_fraction: float = 0.1  # WSD: the share of `length` spent decaying at the end

    @classmethod
    def of(cls, train: TrainConfig, length: int, *, schedule: Schedule | None = None,
           warmup: bool = True, offset: int = 0, decay_fraction: float | None = None) -> LRSegment:
        """A schedule of `length` steps with `train`'s peak, floor and warm-up; keyword arguments
        change its kind, leave out the warm-up, or start the stage part-way along it."""
        return cls(peak=train.lr, floor=train.lr * train.min_lr_ratio,
                   schedule=schedule or train.schedule,
                   warmup_steps=train.warmup_steps if warmup else 0, length=max(1, length),
                   offset=offset,
                   decay_fraction=train.decay_fraction if decay_fraction is None
                   else decay_fraction)

    def lr(self, step: int) -> float:
        """The learning rate of the stage's optimizer step `step` (0-based)."""
        position = self.offset + step
        if position < self.warmup_steps:
            return self.peak * (position + 1) / self.warmup_steps
        if self.schedule == "constant":
            return self.peak
        if self.schedule == "cosine":
            span = max(1, self.length - self.warmup_steps)
            progress = min(1.0, (position - self.warmup_steps) / span)
            return self.floor + (self.peak - self.floor) * 0.5 * (1 + math.cos(math.pi * progress))
        # WSD: stable at peak, then a linear decay over the last decay_fraction of the steps.
        decay_steps = max(1, round(self.length * self.decay_fraction))
        decay_start = self.length - decay_steps
        if position < decay_start:
            return self.peak
        progress = min(1.0, (position - decay_start + 1) / decay_steps)
        return self.peak + (self.floor - self.peak) * progress

    def after_growth(self, policy: str, steps_before: int, steps_left: int,
                     warmup_steps: int) -> LRSegment:
        """The next stage's segment at a growth with LR policy `policy`: `continue` moves along
        this schedule by the `steps_before` this stage trained; `restart` begins a new schedule
        over the `steps_left` of the plan, with `warmup_steps` of warm-up; `rewind` the same at
        peak at once."""
        if policy == "continue":
            return dataclasses.replace(self, offset=self.offset + steps_before)
        if policy not in ("restart", "rewind"):
            raise ValueError(f"unknown LR policy {policy!r}")
        return dataclasses.replace(self, offset=0, length=max(1, steps_left),
                                   warmup_steps=warmup_steps if policy == "restart" else 0)
