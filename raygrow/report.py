"""report.png: loss against tokens and against FLOPs, growth points marked, a baseline overlaid;
evaluation scores against FLOPs when the run evaluated its stages."""

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


def eval_panel(axis, points: list[dict], growth_points: list[float], x_label: str) -> None:
    """Score per task against `x` (cumulative FLOPs): `points` are {"x", "point": "export" |
    "grown", "scores": {task: scores}}; a grown init is drawn hollow at its growth point."""
    from raygrow.eval.results import headline

    tasks = sorted({task for point in points for task in point["scores"]})
    for task in tasks:
        exports = [(p["x"], headline(p["scores"][task])) for p in points
                   if p["point"] == "export" and task in p["scores"]]
        line, = axis.plot([x for x, _ in exports], [y for _, y in exports], "o-", label=task)
        grown = [(p["x"], headline(p["scores"][task])) for p in points
                 if p["point"] == "grown" and task in p["scores"]]
        if grown:
            axis.plot([x for x, _ in grown], [y for _, y in grown], "o", mfc="none",
                      color=line.get_color())
    for number, x in enumerate(growth_points):
        axis.axvline(x, color="grey", linestyle=":", label="growth" if number == 0 else None)
    axis.set_xlabel(x_label)
    axis.set_ylabel("score (exact match)")
    axis.set_ylim(-0.02, 1.02)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=6, ncol=2)


def plot_run(records: list[Record], path: str | Path, title: str = "",
             baseline: list[Record] | None = None, evaluations: list[dict] | None = None) -> None:
    """Loss against tokens and FLOPs; with `evaluations` (see eval_panel) a third panel of
    scores against FLOPs."""
    figure, axes = plt.subplots(1, 3 if evaluations else 2, figsize=(16 if evaluations else 11, 4))
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
    if evaluations:
        eval_panel(axes[2], evaluations, _growth_points(steps(records), "flops"), "training FLOPs")
    figure.suptitle(title)
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=100)
    plt.close(figure)
    storage.write_bytes(path, image.getvalue())
