"""A run's evaluations: each spec's export (and, with `eval.grown`, its grown init) scored as Ray
tasks beside training, recorded in `<run>/eval.jsonl`.

The coordinator launches an evaluation when a spec has exported (or grown) and collects them all
when its specs are done: training never waits for a score. A task declares `eval.cpus` CPUs and
memory by the size of the model; when the cluster has no CPU to spare beside the next spec's
workers (on a small machine training takes every CPU), launching waits until training is over,
so an evaluation never holds CPUs a training stage needs. A rerun skips every evaluation already
recorded with the same key (suite version, tasks, shots, limit, seed).
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass

import ray

from raygrow import storage
from raygrow.config import S3Config
from raygrow.coordinator.spec import StageSpec
from raygrow.data import Manifest
from raygrow.eval.config import EvalConfig
from raygrow.eval.results import EVAL_LOG, EvalRecord, read_records
from raygrow.train.resources import worker_resources

log = logging.getLogger("raygrow")

GROWN_EXPORT_DIR = "init-export"  # <spec>/init-export: the grown init as a Hugging Face model
_STAGE = re.compile(r"stage-(\d+)$")


@dataclass
class _Launch:
    spec: str
    point: str  # export | grown
    export: str
    config: EvalConfig
    memory: int  # bytes the task declares
    init: str | None = None  # grown: the init checkpoint to export first
    dataset: str | None = None  # grown: the dataset whose tokenizer the export ships


class Evaluations:
    """The evaluations of one coordinator's run: launched as specs finish, collected at the end."""

    def __init__(self, specs: list[StageSpec], run_dir: str, s3: S3Config):
        self.specs = specs
        self.run_dir = run_dir
        self.s3 = s3
        self.recorded = {(r.spec, r.point, _key_text(r.key)) for r in read_records(run_dir)}
        self.waiting: list[_Launch] = []  # no CPU to spare yet
        self.running: list[tuple[_Launch, float, ray.ObjectRef]] = []

    def after_export(self, spec: StageSpec) -> None:
        """Score `spec`'s export (the first of its export directories)."""
        config = self._config(spec)
        if config is None or not spec.exports:
            return
        export = storage.join(self.run_dir, *spec.exports[0].split("/"))
        self._launch(_Launch(spec.name, "export", export, config, _memory(export)),
                     self._next(spec))

    def after_growth(self, spec: StageSpec, init_dir: str, masked: bool) -> None:
        """With `eval.grown`: score `spec`'s grown init (exported first), just after growth. A
        masked growth starts with its masks at 0, i.e. as the model before growth: nothing new
        to score."""
        config = self._config(spec)
        if config is None or not config.grown or spec.init.kind != "grow" or masked:
            return
        export = storage.join(spec.directory(self.run_dir), GROWN_EXPORT_DIR)
        self._launch(_Launch(spec.name, "grown", export, config, _memory(init_dir),
                             init=init_dir, dataset=spec.dataset), spec)

    def collect(self) -> list[EvalRecord]:
        """Launch what waited, wait for every evaluation, append each to eval.jsonl. A failed
        evaluation is logged, not raised: the run's training stands without its score."""
        for launch in self.waiting:
            self._start(launch)
        self.waiting = []
        done = []
        for launch, started, future in self.running:
            try:
                scores = ray.get(future)
            except ray.exceptions.RayError as error:
                log.warning("evaluating %s (%s) failed: %s", launch.spec, launch.point,
                            str(error).strip().splitlines()[-1] if str(error).strip() else error)
                continue
            record = EvalRecord(spec=launch.spec, point=launch.point, export=launch.export,
                                key=launch.config.key(), scores=scores,
                                seconds=time.monotonic() - started)
            storage.append_bytes(storage.join(self.run_dir, EVAL_LOG), record.to_line())
            self.recorded.add((record.spec, record.point, _key_text(record.key)))
            done.append(record)
        self.running = []
        return done

    # ---- which, when -------------------------------------------------------------------------

    def _config(self, spec: StageSpec) -> EvalConfig | None:
        """The spec's EvalConfig when the plan evaluates it (`eval.stages` names plan stages;
        specs that are not plan stages are evaluated when stages is 'all')."""
        config = spec.config.eval
        if config is None:
            return None
        match = _STAGE.match(spec.name)
        if config.stages != "all" and (match is None or int(match.group(1)) not in config.stages):
            return None
        return config

    def _next(self, spec: StageSpec) -> StageSpec | None:
        names = [s.name for s in self.specs]
        index = names.index(spec.name)
        return self.specs[index + 1] if index + 1 < len(self.specs) else None

    def _launch(self, launch: _Launch, training: StageSpec | None) -> None:
        """Start now when the CPUs it declares are spare beside `training`'s workers (or nothing
        trains after it), else at `collect`. Skipped when already recorded."""
        if (launch.spec, launch.point, _key_text(launch.config.key())) in self.recorded:
            return
        if training is None or _spare_cpus(training) >= launch.config.cpus:
            self._start(launch)
        else:
            log.info("evaluation of %s (%s) waits for training to end (no CPU to spare)",
                     launch.spec, launch.point)
            self.waiting.append(launch)

    def _start(self, launch: _Launch) -> None:
        future = _evaluate.options(num_cpus=launch.config.cpus, memory=launch.memory,
                                   max_retries=0).remote(launch, self.s3)
        self.running.append((launch, time.monotonic(), future))


def _spare_cpus(training: StageSpec) -> float:
    """CPUs of the cluster left over when `training` runs on its (largest) worker count."""
    workers = training.workers if isinstance(training.workers, int) else training.workers.max
    resources, _, _ = worker_resources(training.config, workers)
    return ray.cluster_resources().get("CPU", 0) - resources["CPU"] * workers


def _memory(path: str) -> int:
    """What an evaluation declares: a few copies of the model's weights, at least 512 MiB."""
    files = storage.list_files(path) if storage.exists(path) else []
    size = sum(entry.size for entry in files if entry.path.endswith(".safetensors"))
    return max(512 << 20, 4 * size)


def _key_text(key: dict) -> str:
    return json.dumps(key, sort_keys=True)


@ray.remote
def _evaluate(launch: _Launch, s3: S3Config) -> dict:
    """The Ray task: export the grown init first when there is one, then score the export."""
    from raygrow.eval.evaluate import evaluate_export
    from raygrow.export import export_checkpoint

    storage.configure_s3(s3.endpoint_url, s3.region)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if launch.init is not None:
        export_checkpoint(launch.init, [launch.export], Manifest.load(launch.dataset))
    threads = max(1, int(launch.config.cpus))
    return evaluate_export(launch.export, launch.config, threads=threads)["scores"]
