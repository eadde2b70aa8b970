"""Metric records: what a stage's `metrics.jsonl` holds, one JSON object per line.

Two kinds, told apart by the `event` key: a `StepRecord` per optimizer step (its counters, and
the loss, speed and validation loss on the steps that log or validate them), and an
`EventRecord` for what happens between steps (a resume, the first look at a grown model, a
skipped or rolled-back step, a stop). `parse_record` is the one reader; `to_json` writes only
the fields a record has, so a line holds what was measured and nothing else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass
class StepRecord:
    """One optimizer step of a stage."""

    step: int  # optimizer steps done in this stage, this one included
    lr: float
    grad_norm: float
    tokens: int  # training tokens seen by the run so far (cumulative across stages)
    flops: float  # training FLOPs so far (cumulative across stages)
    time: float | None = None  # wall-clock time the driver wrote it down (seconds since epoch)
    loss: float | None = None  # mean training loss over the steps since the last logged one
    tokens_per_s: float | None = None
    mfu: float | None = None
    data_wait_frac: float | None = None  # share of step time spent waiting for input
    device: str | None = None
    val_loss: float | None = None  # on the steps that validate
    stage: int | None = None  # in a run's merged metrics.jsonl: the stage it belongs to


@dataclass
class EventRecord:
    """Something that happened between steps."""

    event: str  # resume | growth | nonfinite | spike | stop | placement | startup | finish
    step: int  # the step it happened at (for a resume: the checkpoint's step)
    time: float | None = None
    checkpoint: str | None = None  # resume: the checkpoint directory resumed from
    val_loss: float | None = None  # growth: validation loss of the grown model before training
    tokens: int | None = None
    flops: float | None = None
    detail: dict[str, Any] | None = None  # anything else the event has to say (a reason, nodes)
    stage: int | None = None


Record = StepRecord | EventRecord


def parse_record(raw: dict[str, Any]) -> Record:
    """A record from its JSON object; keys a reader of this version does not know are dropped."""
    kind = EventRecord if "event" in raw else StepRecord
    known = {f.name for f in dataclasses.fields(kind)}
    return kind(**{key: value for key, value in raw.items() if key in known})


def to_json(record: Record) -> dict[str, Any]:
    """The record's fields that hold a value, in field order."""
    return {key: value for key, value in dataclasses.asdict(record).items() if value is not None}


def steps(records: list[Record]) -> list[StepRecord]:
    return [record for record in records if isinstance(record, StepRecord)]


def events(records: list[Record], kind: str) -> list[EventRecord]:
    return [r for r in records if isinstance(r, EventRecord) and r.event == kind]
