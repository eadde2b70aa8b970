"""summary.json and report.png of a versions run; each release scored on one common validation
set."""

from __future__ import annotations

import dataclasses
import io

import torch
import torch.nn.functional as F

from raygrow import storage
from raygrow.config import RunConfig
from raygrow.coordinator.actor import RunOutcome
from raygrow.coordinator.spec import EXPORT_DIR, StageSpec
from raygrow.coordinator.summary import spec_records, write_json
from raygrow.data import Manifest, PackedRows
from raygrow.model import flops_per_token
from raygrow.train.records import Record, events, steps
from raygrow.versions.data import VersionData
from raygrow.versions.plan import BRANCH, Segment, plan_cost

MAX_VALIDATION_ROWS = 4096  # enough for a stable loss on small models; the whole set when smaller


@torch.no_grad()
def release_loss(export_dir: str, dataset: str, rows: int, micro_batch: int) -> float:
    """Mean next-token loss of an export, loaded with stock transformers, on a dataset's first
    `rows` validation rows."""
    from transformers import AutoModelForCausalLM

    with storage.local_copy(export_dir) as local:
        model = AutoModelForCausalLM.from_pretrained(local, dtype=torch.float32).eval()
    _, tokens = PackedRows(dataset, "val", None).take(0, rows)
    total, count = 0.0, 0
    for batch in torch.from_numpy(tokens).long().split(micro_batch):
        logits = model(input_ids=batch[:, :-1]).logits
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch[:, 1:].reshape(-1))
        total += loss.item() * len(batch)
        count += len(batch)
    return total / count


def segment_result(records: list[Record]) -> dict:
    """What the summary needs of a trained segment: its measured cost and LR trace ends."""
    trained = steps(records)
    start = (events(records, "start") or [None])[0]
    before_tokens, before_flops = (start.tokens, start.flops) if start else (0, 0.0)
    validated = [r for r in trained if r.val_loss is not None]
    return {"steps": len(trained), "tokens": trained[-1].tokens - before_tokens,
            "flops": trained[-1].flops - before_flops, "lr_first": trained[0].lr,
            "lr_last": trained[-1].lr,
            "final_val_loss": validated[-1].val_loss if validated else None}


def planned_cost(config: RunConfig, segments: list[Segment], vocab: int) -> list[dict]:
    versions = len(config.versions.data)
    per_token = [flops_per_token(config.versions.shape_of(k, config.model), vocab,
                                 config.data.seq_len)
                 for k in range(versions)]
    return plan_cost(segments, versions, per_token, config.train.batch_tokens)


def summarise(config: RunConfig, data: VersionData, segments: list[Segment],
              specs: list[StageSpec], outcome: RunOutcome) -> dict:
    """Per version: its release, the release's loss on the common validation set (validation rows
    of all versions together) and the cost it added, planned and measured; summary.json."""
    run_dir = storage.canonical(config.run_dir)
    names = config.versions.names
    trained = [s for s in segments if s.name in {spec.name for spec in specs}]
    done = {s.name: segment_result(spec_records(run_dir, spec)) for s, spec in zip(trained, specs)
            if s.name in outcome.done}
    val_dataset = data.together[-1]
    manifest = Manifest.load(val_dataset)
    val_rows = min(manifest.val_rows, config.train.val_rows, MAX_VALIDATION_ROWS)
    planned = planned_cost(config, trained, manifest.vocab_size)
    versions, cumulative = [], {"steps": 0, "tokens": 0, "flops": 0.0}
    for index, name in enumerate(names):
        mine = [s for s in trained if s.version == index]
        measured = {key: sum(done[s.name][key] for s in mine if s.name in done)
                    for key in cumulative}
        cumulative = {key: cumulative[key] + measured[key] for key in cumulative}
        release = next((s for s in mine if s.release and s.name in done), None)
        export = storage.join(run_dir, *release.name.split("/"), EXPORT_DIR) if release else None
        growth = next((outcome.growths[s.name] for s in mine if s.name in outcome.growths), None)
        versions.append({
            "name": name, "steps": data.steps[index], "dataset": data.own[index], "release": export,
            "release_val_loss": (release_loss(export, val_dataset, val_rows,
                                              config.train.micro_batch)
                                 if export else None),
            "growth": ({k: v for k, v in dataclasses.asdict(growth).items() if k != "masks"}
                       if growth else None),
            "cost": measured, "cumulative": cumulative, "planned": planned[index],
        })
    summary = {
        "name": config.name, "mode": config.versions.mode,
        "decay_fraction": config.versions.decay_fraction, "complete": outcome.complete,
        "versions": versions,
        "segments": [{"name": s.name, "role": s.role, "version": names[s.version],
                      "data": names[s.data],
                      "cumulative_data": s.cumulative, "start": s.start, "end": s.end,
                      "init": s.init,
                      **done.get(s.name, {})} for s in trained],
        "total": cumulative, "validation": {"dataset": val_dataset, "rows": val_rows},
        "wall_s": outcome.wall_s, "config": config.to_dict(),
    }
    write_json(storage.join(run_dir, "summary.json"), summary)
    plot_versions(run_dir, summary, specs)
    return summary


def plot_versions(run_dir: str, summary: dict, specs: list[StageSpec]) -> None:
    """LR of every segment against the tokens its path has seen; release loss against cost."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (lr_axis, loss_axis) = plt.subplots(1, 2, figsize=(11, 4))
    for spec, segment in zip(specs, summary["segments"]):
        trained = steps(spec_records(run_dir, spec))
        style = "--" if segment["role"] == BRANCH else "-"
        lr_axis.plot([r.tokens for r in trained], [r.lr for r in trained], style, label=spec.name)
    lr_axis.set(xlabel="tokens seen by the path", ylabel="learning rate", title=summary["mode"])
    lr_axis.legend(fontsize=7)
    scored = [v for v in summary["versions"] if v["release_val_loss"] is not None]
    loss_axis.plot([v["cumulative"]["flops"] for v in scored],
                   [v["release_val_loss"] for v in scored], "o-")
    for version in scored:
        loss_axis.annotate(version["name"],
                           (version["cumulative"]["flops"], version["release_val_loss"]))
    loss_axis.set(xlabel="cumulative training FLOPs", ylabel="release loss, common validation set")
    for axis in (lr_axis, loss_axis):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=100)
    plt.close(figure)
    storage.write_bytes(storage.join(run_dir, "report.png"), image.getvalue())
