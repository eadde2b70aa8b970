"""A growth plan's summary.json, merged metrics.jsonl and report.png, from its specs' records."""

from __future__ import annotations

import dataclasses
import json

from raygrow import storage
from raygrow.config import RunConfig
from raygrow.coordinator.actor import RunOutcome
from raygrow.coordinator.spec import StageSpec
from raygrow.eval.results import latest, read_records
from raygrow.model import param_counts
from raygrow.report import plot_run
from raygrow.train.metrics import MetricsLog, write_jsonl
from raygrow.train.records import Record, StepRecord, events, steps


def spec_records(run_dir: str, spec: StageSpec) -> list[Record]:
    return MetricsLog(spec.directory(run_dir)).records()


def stage_summary(config: RunConfig, index: int, records: list[Record], start: StepRecord | None,
                  vocab: int) -> dict:
    """One `stages` entry; `start` is the last step before this stage (cumulative counters)."""
    stage = config.plan_stages[index]
    trained = steps(records)
    before_tokens, before_flops = (start.tokens, start.flops) if start else (0, 0.0)
    last = trained[-1] if trained else None
    logged = [r for r in trained if r.loss is not None]
    validated = [r for r in trained if r.val_loss is not None]
    speeds = [r.tokens_per_s for r in logged]
    low, high = config.worker_range(stage)
    return {
        "shape": dataclasses.asdict(stage.shape), **param_counts(stage.shape, vocab),
        "workers": high if low == high else {"min": low, "max": high},
        "zero_stage": config.stage_zero(stage),
        "steps": last.step if last else 0,
        "tokens": (last.tokens - before_tokens) if last else 0,
        "flops": (last.flops - before_flops) if last else 0.0,
        "final_train_loss": logged[-1].loss if logged else None,
        "final_val_loss": validated[-1].val_loss if validated else None,
        "tokens_per_s": sum(speeds) / len(speeds) if speeds else None,
        "nodes": sorted({node for event in events(records, "placement")
                         for node in (event.detail or {}).get("nodes", [])}),
    }


# A transition's stamps in the order they happen, each with the part of the transition that
# ends at it: stage k's last worker (`finish` event), the coordinator's phases of stage k and
# k+1 (RunOutcome.times), stage k+1's rank-0 worker (`startup` event). Stage k's export is not
# a part: it runs beside the growth and stage k+1's start (the transition's `export_s`).
BREAKDOWN = (
    ("stepped", None),  # stage k's last step done (validation and record included)
    ("saved", "final_checkpoint"),  # its final checkpoint saved and reported
    ("train_end", "worker_group_end"),  # fit() returned (the workers are gone), or the
    #                                     coordinator saw the stage end (its workers wait)
    ("prepare_start", "coordinator"),  # stage k's export started (a Ray task, not waited for)
    ("prepare_end", "growth"),  # the growth, a Ray task: read, grow, write the init checkpoint
    ("train_start", "rescaling"),  # the cluster checked for stage k+1's workers
    ("handed", "hand_over"),  # stage k's waiting workers took stage k+1 (the same worker group)
    ("process", "ray_train_start"),  # Ray Train's controller, placement group, worker actors
    ("imported", "process_and_imports"),  # the worker process: torch, DeepSpeed, transformers
    ("train_fn", "worker_setup"),  # Ray Train's worker context and torch.distributed (gloo/NCCL)
    ("data", "data"),  # manifest and row readers (the Ray Data pipeline built)
    ("state", "checkpoint_load"),  # the grown init read and verified
    ("engine", "engine"),  # model built, DeepSpeed engine, state loaded into it
    ("validated", "growth_validation"),  # the grown model's first validation
    ("first_step", "first_step"),
)


def transition_breakdown(stamps: dict[str, float]) -> dict[str, float] | None:
    """Seconds of each part of a transition from its stamps (parts without stamps left out);
    None when the stamps do not run forward (stages run by different invocations)."""
    if "process" in stamps and "train_start" in stamps:  # a process Ray started before fit()
        stamps = {**stamps, "process": max(stamps["process"], stamps["train_start"])}
    present = [(stamps[name], part) for name, part in BREAKDOWN if name in stamps]
    if len(present) < 2 or any(b < a for (a, _), (b, _) in zip(present, present[1:])):
        return None
    parts: dict[str, float] = {}
    for (before, _), (at, part) in zip(present, present[1:]):
        parts[part] = parts.get(part, 0.0) + at - before
    return parts


def _span(times: dict[str, float], phase: str) -> float | None:
    """Seconds from `phase`_start to `phase`_end, when both were stamped by one invocation."""
    start, end = times.get(f"{phase}_start"), times.get(f"{phase}_end")
    return end - start if start is not None and end is not None and end >= start else None


def _picked(times: dict[str, float], names: tuple[str, ...]) -> dict[str, float]:
    return {name: times[name] for name in names if name in times}


def _worker_times(records: list[Record], kind: str, which: int) -> dict[str, float]:
    found = events(records, kind)
    return dict((found[which].detail or {}).get("times", {})) if found else {}


def transition_summary(spec: StageSpec, outcome: RunOutcome, before: list[Record],
                       after: list[Record], index: int, before_spec: StageSpec) -> dict:
    """Validation loss just before and just after a growth, and the time between the last step
    of the old stage and the first step of the new one."""
    growth = outcome.growths[spec.name]
    validated = [r for r in steps(before) if r.val_loss is not None]
    after_growth = events(after, "growth")
    first_step = next(iter(steps(after)), None)
    last_step = steps(before)[-1] if steps(before) else None
    return {
        "from_stage": index - 1, "to_stage": index,
        "depth_op": growth.depth_op, "width_op": growth.width_op,
        "optimizer": growth.optimizer, "lr": spec.init.lr_policy,
        "function_preserving": growth.function_preserving,
        "val_loss_before": validated[-1].val_loss if validated else None,
        "val_loss_after": after_growth[0].val_loss if after_growth else None,
        "seconds": (first_step.time - last_step.time) if first_step and last_step else None,
        "export_s": _span(outcome.times.get(before_spec.name, {}), "export"),
        # from the workers' and the coordinator's own clocks (the seconds above are stamped as
        # the coordinator's 0.5 s poll writes the records)
        "breakdown": transition_breakdown({
            **_worker_times(before, "finish", -1),
            **_picked(outcome.times.get(before_spec.name, {}), ("train_end",)),
            **_picked(outcome.times.get(spec.name, {}),
                      ("prepare_start", "prepare_end", "train_start")),
            **_worker_times(after, "startup", 0)}),
    }


def summarise_plan(config: RunConfig, specs: list[StageSpec], outcome: RunOutcome, run_dir: str,
                   dataset: str, vocab: int, ray_logs: str | None = None) -> dict:
    """Write summary.json, the run's metrics.jsonl (every stage's records, tagged) and
    report.png."""
    records = [spec_records(run_dir, spec) for spec in specs]
    summaries, start = [], None
    for index in range(len(specs)):
        trained_nothing = specs[index].end_step == 0 and specs[index].name in outcome.done
        if not records[index] and not trained_nothing:
            break
        summaries.append({**stage_summary(config, index, records[index], start, vocab),
                          "resource_wait_s": outcome.waits.get(specs[index].name, 0.0)})
        start = steps(records[index])[-1] if steps(records[index]) else start
    evaluations = stage_evaluations(specs, records, summaries, run_dir)
    transitions = [transition_summary(spec, outcome, records[index - 1], records[index], index,
                                      specs[index - 1])
                   for index, spec in enumerate(specs)
                   if spec.name in outcome.growths and records[index]]
    summary = {"name": config.name, "complete": outcome.complete, "stages": summaries,
               "transitions": transitions,
               "total_tokens": start.tokens if start else 0,
               "total_flops": start.flops if start else 0.0,
               "wall_s": outcome.wall_s, "dataset": dataset, "ray_logs": ray_logs,
               "config": config.to_dict()}
    write_json(storage.join(run_dir, "summary.json"), summary)
    merged = [dataclasses.replace(record, stage=index)
              for index, stage_records in enumerate(records) for record in stage_records]
    write_jsonl(storage.join(run_dir, "metrics.jsonl"), merged)
    plot_run(merged, storage.join(run_dir, "report.png"), title=config.name,
             evaluations=evaluations)
    return summary


def stage_evaluations(specs: list[StageSpec], records: list[list[Record]], summaries: list[dict],
                      run_dir: str) -> list[dict]:
    """Put each stage's recorded scores into its summary (`eval`: its export; `eval_grown`: its
    grown init, just after growth) and return them as report points at cumulative FLOPs (a grown
    init at the FLOPs of the growth)."""
    found = latest(read_records(run_dir))
    ends = [steps(stage)[-1].flops if steps(stage) else 0.0 for stage in records]
    points = []
    for index, summary in enumerate(summaries):
        for point, key, at in (("grown", "eval_grown", ends[index - 1] if index else 0.0),
                               ("export", "eval", ends[index])):
            record = found.get((specs[index].name, point))
            if record is not None:
                summary[key] = record.scores
                points.append({"x": at, "point": point, "scores": record.scores})
    return points


def write_json(path: str, data: dict) -> None:
    storage.write_bytes(path, json.dumps(data, indent=1).encode())
