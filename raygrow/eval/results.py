"""Evaluation results as a run records them: `<run>/eval.jsonl`, one EvalRecord a line, and the
one number a table or a plot shows per task. Pure Python: the summary and the report read these
without loading torch."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from raygrow import storage

EVAL_LOG = "eval.jsonl"


@dataclass
class EvalRecord:
    """One evaluation of one model of a run."""

    spec: str  # the spec (stage) whose model it is, e.g. "stage-1"
    point: str  # "export": the spec's final export; "grown": its grown init, just after growth
    export: str  # the Hugging Face directory evaluated
    key: dict  # EvalConfig.key(): suite version, tasks, shots, limit, seed
    scores: dict  # task → its scores (see raygrow.eval.evaluate.evaluate_loaded)
    seconds: float  # wall time of the evaluation task

    def to_line(self) -> bytes:
        return (json.dumps(dataclasses.asdict(self)) + "\n").encode()


def read_records(run_dir: str) -> list[EvalRecord]:
    """The run's eval.jsonl (none when it has no such file); a torn last line is dropped."""
    path = storage.join(run_dir, EVAL_LOG)
    if not storage.exists(path):
        return []
    known = {f.name for f in dataclasses.fields(EvalRecord)}
    records = []
    for line in storage.read_bytes(path).decode().splitlines():
        try:
            raw = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a crash while appending
        records.append(EvalRecord(**{k: v for k, v in raw.items() if k in known}))
    return records


def latest(records: list[EvalRecord]) -> dict[tuple[str, str], EvalRecord]:
    """The newest record of each (spec, point)."""
    return {(record.spec, record.point): record for record in records}


def headline(scores: dict) -> float | None:
    """The one number of a task's scores: exact match for IQ tasks, else lm-eval's first
    accuracy-like metric."""
    for key in ("exact_match", "acc_norm,none", "acc,none", "exact_match,strip",
                "exact_match,none"):
        if key in scores:
            return scores[key]
    numbers = [value for key, value in scores.items()
               if key != "samples" and isinstance(value, float)]
    return numbers[0] if numbers else None
