"""report.png: loss against tokens and against FLOPs, from metrics.jsonl records."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_run(records: list[dict], path: Path, title: str = "") -> None:
    train = [r for r in records if "loss" in r and "event" not in r]
    val = [r for r in records if "val_loss" in r]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, x_key, label in ((axes[0], "tokens", "tokens"), (axes[1], "flops", "training FLOPs")):
        axis.plot([r[x_key] for r in train], [r["loss"] for r in train], label="train loss")
        axis.plot([r[x_key] for r in val], [r["val_loss"] for r in val], "o-", label="validation loss")
        axis.set_xlabel(label)
        axis.set_ylabel("loss (nats/token)")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
