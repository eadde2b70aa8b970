"""The coordinator actor: one per run, an explicit state machine (see state.py)."""

from __future__ import annotations

import logging
import os
import time

import ray

from raygrow.config import RunConfig, from_dict
from raygrow.coordinator.growth import grow_into_stage, init_dir, stage_dir
from raygrow.coordinator.state import CoordinatorState
from raygrow.coordinator.summary import (
    merged_records, stage_records, stage_summary, transition_summary, write_json,
)
from raygrow import storage
from raygrow.data import Manifest
from raygrow.export import export_checkpoint
from raygrow.report import plot_run
from raygrow.train import checkpoint
from raygrow.train.stage import StageLaunch, check_schedulable, fit_stage, write_jsonl

log = logging.getLogger("raygrow")


def _first_schedule(config: RunConfig) -> dict:
    plan_steps = sum(stage.tokens // config.train.batch_tokens for stage in config.plan_stages)
    return {"offset": 0, "segment_start": 0, "warmup": True, "plan_steps": plan_steps}


def _next_schedule(config: RunConfig, previous: dict, index: int, lr_policy: str) -> dict:
    """The LR segment of stage `index`: `continue` stays on the previous segment; `restart` starts
    a new one with warm-up at this stage; `rewind` starts one at peak LR."""
    offset = previous["offset"] + config.plan_stages[index - 1].tokens // config.train.batch_tokens
    if lr_policy == "continue":
        return {**previous, "offset": offset}
    return {**previous, "offset": offset, "segment_start": offset, "warmup": lr_policy == "restart"}


@ray.remote(num_cpus=0, max_concurrency=4)
class Coordinator:
    """Runs a plan: rescaling → training → growing per stage, persisted in coordinator.json."""

    def __init__(self, config: dict, dataset_dir: str, autoscaling: bool, fault: str | None = None):
        if fault:  # test hook (see raygrow.train.checkpoint.fault_point): reaches this actor's process
            os.environ["RAYGROW_FAULT"] = fault
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        self.config: RunConfig = from_dict(RunConfig, config)
        storage.configure_s3(self.config.s3.endpoint_url, self.config.s3.region)
        self.run_dir = storage.canonical(self.config.run_dir)
        self.dataset_dir = dataset_dir
        self.autoscaling = autoscaling
        self.manifest = Manifest.load(dataset_dir)
        self.state = CoordinatorState.load(self.run_dir)
        if not self.state.schedules:
            self.state.schedules = [_first_schedule(self.config)]
        self.current = {"stage": self.state.stage, "phase": self.state.phase, "step": 0}

    def status(self) -> dict:
        return dict(self.current)

    def run(self) -> dict:
        """Advance the state machine until the plan is done (or a stage stops early)."""
        started = time.monotonic()
        stages = self.config.plan_stages
        stopped_early = False
        while self.state.phase != "done" and not stopped_early:
            index = self.state.stage
            self.current.update(stage=index, phase=self.state.phase, step=0)
            if self.state.phase == "rescaling":
                stage_config = self.config.stage_config(index)
                check_schedulable(stage_config, stages[index].workers or stage_config.train.workers,
                                  self.autoscaling, stage_config.train.resource_timeout_s)
                self._advance("training")
            elif self.state.phase == "training":
                stopped_early = not self._train(index)
                if not stopped_early:
                    self._export(index)
                    self._advance("growing" if index + 1 < len(stages) else "done")
            elif self.state.phase == "growing":
                growth = grow_into_stage(self.config, self.run_dir, index + 1)
                self.state.growths = self.state.growths[:index] + [growth]
                self.state.schedules = self.state.schedules[:index + 1] + [
                    _next_schedule(self.config, self.state.schedules[index], index + 1, growth["lr"])]
                self._advance("rescaling", stage=index + 1)
        self.state.wall_s += time.monotonic() - started
        self.state.save(self.run_dir)
        return self._summarise()

    def _advance(self, phase: str, stage: int | None = None) -> None:
        self.state.advance(phase, stage)
        self.state.save(self.run_dir)

    def _train(self, index: int) -> bool:
        """Train stage `index`; True when it reached its last step."""
        stage_config = self.config.stage_config(index)
        growth = self.state.growths[index - 1] if index > 0 else {}
        launch = StageLaunch(
            dataset_dir=self.dataset_dir,
            workers=self.config.plan_stages[index].workers or stage_config.train.workers,
            init_from=init_dir(self.run_dir, index) if index > 0 else None,
            schedule=self.state.schedules[index], masks=growth.get("masks"),
            ramp_steps=growth.get("ramp_steps", 0))
        records = fit_stage(stage_config, launch,
                            on_record=lambda record: self.current.update(step=record.get("step", 0)))
        steps = [r["step"] for r in records if "step" in r and "event" not in r]
        return bool(steps) and max(steps) >= stage_config.total_steps

    def _export(self, index: int) -> None:
        final = checkpoint.latest_valid(stage_dir(self.run_dir, index))
        export_checkpoint(final, storage.join(stage_dir(self.run_dir, index), "export"), self.manifest)
        if index == len(self.config.plan_stages) - 1:
            export_checkpoint(final, storage.join(self.run_dir, "export"), self.manifest)

    def _summarise(self) -> dict:
        count = len(self.config.plan_stages)
        records = [stage_records(self.run_dir, index) for index in range(count)]
        vocab = self.config.plan_stages[0].shape.vocab or self.manifest.vocab_size
        summaries, start = [], {"tokens": 0, "flops": 0.0}
        for index in range(count):
            if not records[index]:
                break
            summaries.append(stage_summary(self.config, index, records[index], start, vocab))
            start = {"tokens": start["tokens"] + summaries[-1]["tokens"],
                     "flops": start["flops"] + summaries[-1]["flops"]}
        transitions = [transition_summary(growth, records[growth["from_stage"]], records[growth["to_stage"]])
                       for growth in self.state.growths if records[growth["to_stage"]]]
        summary = {"name": self.config.name, "complete": self.state.phase == "done", "stages": summaries,
                   "transitions": transitions, "total_tokens": start["tokens"], "total_flops": start["flops"],
                   "wall_s": self.state.wall_s, "dataset": self.dataset_dir, "config": self.config.to_dict()}
        write_json(storage.join(self.run_dir, "summary.json"), summary)
        merged = merged_records(self.run_dir, count)
        write_jsonl(storage.join(self.run_dir, "metrics.jsonl"), merged)
        plot_run(merged, storage.join(self.run_dir, "report.png"), title=self.config.name)
        return summary
