"""Learning-rate schedules (raygrow.train.lr.LRSegment)."""

import pytest

from raygrow.config import TrainConfig
from raygrow.train.lr import LRSegment


def trace(schedule: str, total: int = 100, **kw) -> list[float]:
    train = TrainConfig(lr=1.0, min_lr_ratio=0.1, warmup_steps=10, schedule=schedule, **kw)
    segment = LRSegment.of(train, total)
    return [segment.lr(step) for step in range(total)]


def test_warmup_is_linear_to_peak():
    lrs = trace("cosine")
    assert lrs[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])


def test_constant_stays_at_peak():
    assert set(trace("constant")[10:]) == {1.0}


def test_cosine_decays_monotonically_to_the_floor():
    lrs = trace("cosine")[10:]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert lrs[0] == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.1, abs=1e-3)


def test_wsd_is_stable_then_decays_over_the_last_fraction():
    lrs = trace("wsd", decay_fraction=0.2)
    assert set(lrs[10:80]) == {1.0}
    assert all(a > b for a, b in zip(lrs[79:], lrs[80:]))
    assert lrs[-1] == pytest.approx(0.1)
