"""summary.json and report.png of a versions run; each release scored on one common validation set."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from raygrow.data import Manifest, PackedRows
from raygrow.versions.plan import BRANCH

MAX_VALIDATION_ROWS = 4096  # enough for a stable loss on small models; the whole set when smaller


@torch.no_grad()
def release_loss(export_dir: Path, dataset: str, rows: int, micro_batch: int) -> float:
    """Mean next-token loss of an export, loaded with stock transformers, on a dataset's first
    `rows` validation rows."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(export_dir, dtype=torch.float32).eval()
    _, tokens = PackedRows(dataset, "val", None).take(0, rows)
    total, count = 0.0, 0
    for batch in torch.from_numpy(tokens).long().split(micro_batch):
        logits = model(input_ids=batch[:, :-1]).logits
        total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1)).item() * len(batch)
        count += len(batch)
    return total / count


def summarise(context, branches: bool) -> dict:
    """Per version: its release, the release's loss on the common validation set (validation rows
    of all versions together) and the cost it added, planned and measured; written to summary.json."""
    from raygrow.coordinator.summary import write_json
    from raygrow.versions.runner import planned_cost

    config, run_dir, data = context.config, context.run_dir, context.data
    names = config.versions.names
    segments = list(context.segments.values())
    trained = [s for s in segments if branches or s.role != BRANCH]
    done = context.state["done"]
    val_dataset = data.together[-1]
    val_rows = min(Manifest.load(val_dataset).val_rows, config.train.val_rows, MAX_VALIDATION_ROWS)
    vocab = Manifest.load(val_dataset).vocab_size
    planned = planned_cost(config, trained, len(names), vocab)
    versions, cumulative = [], {"steps": 0, "tokens": 0, "flops": 0.0}
    for index, name in enumerate(names):
        mine = [s for s in trained if s.version == index]
        measured = {key: sum(done[s.name][key] for s in mine if s.name in done) for key in cumulative}
        cumulative = {key: cumulative[key] + measured[key] for key in cumulative}
        release = next((s for s in mine if s.release), None)
        export = run_dir / release.name / "export" if release and release.name in done else None
        versions.append({
            "name": name, "steps": data.steps[index], "dataset": data.own[index],
            "release": str(export) if export else None,
            "release_val_loss": release_loss(export, val_dataset, val_rows, config.train.micro_batch) if export else None,
            "growth": next((done[s.name]["growth"] for s in mine if s.name in done and done[s.name]["growth"]), None),
            "cost": measured, "cumulative": cumulative, "planned": planned[index],
        })
    summary = {
        "name": config.name, "mode": config.versions.mode, "decay_fraction": config.versions.decay_fraction,
        "complete": all(s.name in done for s in trained), "versions": versions,
        "segments": [{"name": s.name, "role": s.role, "version": names[s.version], "data": names[s.data],
                      "cumulative_data": s.cumulative, "start": s.start, "end": s.end, "init": s.init,
                      **{k: v for k, v in done.get(s.name, {}).items() if k != "fingerprint"}} for s in trained],
        "total": cumulative, "validation": {"dataset": val_dataset, "rows": val_rows},
        "wall_s": context.state["wall_s"], "config": config.to_dict(),
    }
    write_json(run_dir / "summary.json", summary)
    plot_versions(run_dir, summary)
    return summary


def plot_versions(run_dir: Path, summary: dict) -> None:
    """LR of every segment against the tokens its path has seen; release loss against cost."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from raygrow.train.stage import MetricsLog

    figure, (lr_axis, loss_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for segment in summary["segments"]:
        steps = [r for r in MetricsLog(run_dir / segment["name"]).records() if "lr" in r and "event" not in r]
        style = "--" if segment["role"] == BRANCH else "-"
        lr_axis.plot([r["tokens"] for r in steps], [r["lr"] for r in steps], style, label=segment["name"])
    lr_axis.set(xlabel="tokens seen by the path", ylabel="learning rate", title=summary["mode"])
    lr_axis.legend(fontsize=7)
    scored = [v for v in summary["versions"] if v["release_val_loss"] is not None]
    loss_axis.plot([v["cumulative"]["flops"] for v in scored], [v["release_val_loss"] for v in scored], "o-")
    for version in scored:
        loss_axis.annotate(version["name"], (version["cumulative"]["flops"], version["release_val_loss"]))
    loss_axis.set(xlabel="cumulative training FLOPs", ylabel="release loss, common validation set")
    for axis in (lr_axis, loss_axis):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(run_dir / "report.png", dpi=100)
    plt.close(figure)
