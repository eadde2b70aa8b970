"""One stage = one Ray Train run (`TorchTrainer.fit`) with its own worker count and ZeRO stage.

Rerunning a stage with the same run directory resumes from its newest complete checkpoint; a
stage that has none starts from `init_from` (the grown state of the previous stage) or fresh.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import ray
import ray.train
from ray.train.torch import TorchTrainer

from raygrow.config import RunConfig, WorkerRange
from raygrow import storage
from raygrow.errors import ConfigError, RaygrowError
from raygrow.train.metrics import MetricsSink

log = logging.getLogger("raygrow")


@dataclass
class StageLaunch:
    """What the coordinator hands a stage beyond its config."""

    dataset_dir: str
    workers: int | WorkerRange  # fixed count, or elastic (min, max)
    init_from: str | None = None  # checkpoint directory to start from when the stage has none
    schedule: dict = field(default_factory=dict)  # LR segment: see raygrow.train.loop.lr_for
    masks: dict | None = None  # MSG masks to ramp in (raygrow.grow.MaskSpec.to_dict())
    ramp_steps: int = 0


def worker_resources(config: RunConfig, workers: int) -> tuple[dict, bool, int]:
    """(resources per worker, use_gpu, torch threads per worker) for `workers` workers.

    Training reads packed shards directly (no Ray Data tasks run during fit), so the workers may
    take every CPU; data preparation runs before training, never beside it.
    """
    total = ray.cluster_resources()
    use_gpu = config.train.use_gpu if config.train.use_gpu is not None else total.get("GPU", 0) >= 1
    cpus = config.train.cpus_per_worker or max(1.0, math.floor(total.get("CPU", 1) / workers))
    if config.train.cpus_per_worker is None and cpus * workers > total.get("CPU", 0) > 0:
        cpus = total["CPU"] / workers  # more workers than CPUs: share them
    return ({"CPU": cpus, **({"GPU": 1} if use_gpu else {})}, use_gpu, max(1, int(cpus)))


def write_jsonl(path: str | Path, records: list[dict]) -> None:
    """Replace `path` with `records` as JSON lines, atomically."""
    storage.make_dirs(storage.parent(path))
    storage.write_bytes(path, "".join(json.dumps(r) + "\n" for r in records).encode())


class MetricsLog:
    """Appends rank 0's records to <stage>/metrics.jsonl; a resume drops the records of its step
    and later ones (the worker sends the resumed step's record again, from the checkpoint).

    Locally every `write` reaches the file at once. An object store has no append (each write
    uploads the whole file again), so there records are batched: written at most every
    REMOTE_FLUSH_S seconds and by `flush()` at the end of a stage.
    """

    REMOTE_FLUSH_S = 10.0

    def __init__(self, run_dir: str | Path):
        self.path = storage.join(run_dir, "metrics.jsonl")
        self.flush_every_s = self.REMOTE_FLUSH_S if storage.is_remote(self.path) else 0.0
        self._pending: list[dict] = []
        self._flushed_at = time.monotonic()

    def records(self) -> list[dict]:
        self.flush()
        return self._read()

    def _read(self) -> list[dict]:
        if not storage.exists(self.path):
            return []
        return [json.loads(line) for line in storage.read_bytes(self.path).decode().splitlines() if line.strip()]

    def write(self, new: list[dict]) -> None:
        self._pending += [{**record, "time": time.time()} for record in new]
        if time.monotonic() - self._flushed_at >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        stamped, self._pending = self._pending, []
        self._flushed_at = time.monotonic()
        if not stamped:
            return
        resumes = [r for r in stamped if r.get("event") == "resume"]
        if not resumes:  # the common case: append, without reading the file back
            storage.append_bytes(self.path, "".join(json.dumps(r) + "\n" for r in stamped).encode())
            return
        kept = self._read()
        for record in stamped:
            if record.get("event") == "resume":
                # the resumed step's record is re-sent from its checkpoint (see loop.Worker._build)
                kept = [r for r in kept if r.get("step", 0) < record["step"] or "event" in r]
            kept.append(record)
        write_jsonl(self.path, kept)


def _fit_streaming_metrics(trainer: TorchTrainer, sink, metrics: MetricsLog, on_record) -> None:
    """Run `fit()` in a thread; meanwhile move rank 0's records into metrics.jsonl."""
    outcome: dict = {}

    def fit() -> None:
        try:
            outcome["result"] = trainer.fit()
        except Exception as error:  # noqa: BLE001 - reported to the user as one line below
            outcome["error"] = error

    thread = threading.Thread(target=fit, daemon=True)
    thread.start()
    while True:
        thread.join(timeout=0.5)
        records = ray.get(sink.drain.remote())
        if records:
            metrics.write(records)
            for record in records:
                on_record(record)
        if not thread.is_alive():
            break
    metrics.flush()
    error = outcome.get("error") or outcome["result"].error
    if error is not None:
        raise RaygrowError(f"training failed: {first_line(error)}")


def fit_stage(config: RunConfig, launch: StageLaunch, on_record=lambda record: None) -> list[dict]:
    """Train one stage to its end (or to `train.stop_after`); returns its metric records."""
    from raygrow.train.loop import train_fn  # imports DeepSpeed: only once a run really starts

    high = launch.workers.max if isinstance(launch.workers, WorkerRange) else launch.workers
    resources, use_gpu, threads = worker_resources(config, high)
    num_workers = (launch.workers.min, launch.workers.max) if isinstance(launch.workers, WorkerRange) else high
    run_dir = storage.canonical(config.run_dir)
    storage_path, storage_filesystem = storage.ray_storage(storage.parent(run_dir))
    sink = MetricsSink.remote()
    trainer = TorchTrainer(
        train_fn,
        train_loop_config={"config": config.to_dict(), "run_dir": run_dir, "sink": sink,
                           "dataset_dir": launch.dataset_dir, "threads": threads,
                           "init_from": launch.init_from, "schedule": launch.schedule,
                           "masks": launch.masks, "ramp_steps": launch.ramp_steps,
                           "fault": os.environ.get("RAYGROW_FAULT")},
        scaling_config=ray.train.ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=config.name, storage_path=storage_path, storage_filesystem=storage_filesystem,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=config.checkpoint.keep),
            failure_config=ray.train.FailureConfig(max_failures=config.train.max_failures)),
    )
    metrics = MetricsLog(run_dir)
    _fit_streaming_metrics(trainer, sink, metrics, on_record)
    return metrics.records()


def check_schedulable(config: RunConfig, workers: int | WorkerRange, autoscaling: bool,
                      timeout_s: float) -> None:
    """Ask the cluster for a stage's workers and wait until at least the minimum fits.

    On a cluster with an autoscaler, the request is what makes it add worker nodes (KubeRay
    `maxReplicas`, launcher `max_workers`); without one, a shortfall is refused at once instead
    of leaving Ray Train waiting silently for resources that will never come.
    """
    low, high = (workers.min, workers.max) if isinstance(workers, WorkerRange) else (workers, workers)
    resources, _, _ = worker_resources(config, high)
    if autoscaling:
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=[resources] * high)
    deadline, next_note = time.monotonic() + timeout_s, 0.0
    while True:
        total = ray.cluster_resources()
        fits = all(total.get(name, 0) + 1e-9 >= amount * low for name, amount in resources.items())
        if fits:
            return
        need = ", ".join(f"{amount * low:g} {name}" for name, amount in resources.items())
        have = ", ".join(f"{total.get(name, 0):g} {name}" for name in resources)
        if not autoscaling or time.monotonic() > deadline:
            raise ConfigError("train.workers", f"{low} worker(s) need {need} but the cluster has {have}"
                              + ("" if not autoscaling else f" after waiting {timeout_s:g} s")
                              + "; lower the worker count or add nodes")
        if time.monotonic() >= next_note:
            log.info("waiting for the cluster to grow: %d worker(s) need %s, it has %s", low, need, have)
            next_note = time.monotonic() + 30
        time.sleep(2)


def first_line(error: BaseException) -> str:
    """The last line of a worker's error: the exception itself, without its traceback."""
    text = str(error).strip() or type(error).__name__
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
