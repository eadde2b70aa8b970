"""report.png: loss against tokens and against FLOPs, growth points marked, a baseline overlaid."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from raygrow import storage  # noqa: E402
from raygrow.train.records import Record, StepRecord, steps  # noqa: E402


def _growth_points(records: list[StepRecord], key: str) -> list[float]:
    """x positions where a new stage starts (the first step of each stage after the first)."""
    points, seen = [], set()
    for record in records:
        stage = record.stage or 0
        if stage not in seen:
            seen.add(stage)
            if stage > 0:
                points.append(getattr(record, key))
    return points


def plot_run(records: list[Record], path: str | Path, title: str = "",
             baseline: list[Record] | None = None) -> None:
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    runs = [("", records)] + ([("baseline ", baseline)] if baseline else [])
    for axis, x_key, label in ((axes[0], "tokens", "tokens"), (axes[1], "flops", "training FLOPs")):
        for prefix, run in runs:
            train = [r for r in steps(run) if r.loss is not None]
            val = [r for r in steps(run) if r.val_loss is not None]
            style = "--" if prefix else "-"
            axis.plot([getattr(r, x_key) for r in train], [r.loss for r in train], style,
                      label=f"{prefix}train loss")
            axis.plot([getattr(r, x_key) for r in val], [r.val_loss for r in val], style + "o",
                      label=f"{prefix}val loss")
        for number, x in enumerate(_growth_points(steps(records), x_key)):
            axis.axvline(x, color="grey", linestyle=":", label="growth" if number == 0 else None)
        axis.set_xlabel(label)
        axis.set_ylabel("loss (nats/token)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=100)
    plt.close(figure)
    storage.write_bytes(path, image.getvalue())
