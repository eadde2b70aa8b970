"""One stage = one Ray Train run (`TorchTrainer.fit`) with its own worker count and ZeRO stage.

Rerunning a stage with the same directory resumes from its newest complete checkpoint; a stage
that has none starts from `StageRun.init_from` (a grown, rebased or pretrained state written by
the coordinator, or another stage's final checkpoint) or fresh.
"""

from __future__ import annotations

import dataclasses
import os
import threading

import ray
import ray.train
from ray.train.torch import TorchTrainer
from ray.train.v2._internal.constants import (
    WORKER_GROUP_START_TIMEOUT_S_ENV_VAR as START_TIMEOUT_ENV,
)
from ray.train.v2._internal.exceptions import WorkerGroupStartupTimeoutError

from raygrow import storage
from raygrow.config import WorkerRange
from raygrow.errors import RaygrowError, first_line
from raygrow.train.metrics import MetricsLog, local_sink
from raygrow.train.records import Record
from raygrow.train.resources import (node_resources, read_task_cpus, shortfall,
                                     worker_resources)
from raygrow.train.stage_run import StageRun

PLACEMENT_RETRIES = 2  # worker-group placements retried before a stage stops (see fit_stage)


def fit_stage(run: StageRun, on_record=lambda record: None, sink=None,
              on_poll=lambda: None) -> list[Record]:
    """Train one stage to its end (or to `train.stop_after`, or a stop request through `sink`, a
    MetricsSink the caller made); returns its metric records. While it trains, `on_record` sees
    each record and `on_poll` is called once per poll of the records (every 0.5 s)."""
    from raygrow.train.loop import train_fn  # imports DeepSpeed: only once a run really starts

    config = run.config
    workers = run.workers
    high = workers.max if isinstance(workers, WorkerRange) else workers
    resources, use_gpu, threads = worker_resources(config, high)
    num_workers = (workers.min, workers.max) if isinstance(workers, WorkerRange) else high
    run_dir = storage.canonical(run.run_dir)
    storage_path, storage_filesystem = storage.ray_storage(storage.parent(run_dir))
    sink = sink or local_sink()
    launched = dataclasses.replace(run, run_dir=run_dir, threads=threads, sink=sink,
                                   read_cpus=read_task_cpus(config, high, resources),
                                   fault=os.environ.get("RAYGROW_FAULT"))
    trainer = TorchTrainer(
        train_fn,
        train_loop_config={"run": launched},
        scaling_config=ray.train.ScalingConfig(num_workers=num_workers, use_gpu=use_gpu,
                                               resources_per_worker=resources,
                                               placement_strategy=config.train.placement.upper()),
        run_config=ray.train.RunConfig(
            name=storage.base_name(run_dir), storage_path=storage_path,
            storage_filesystem=storage_filesystem,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=config.checkpoint.keep),
            # A worker group that cannot be placed (a node lost under a fixed worker count) is
            # a controller failure, which Ray Train retries forever by default. A few tries that
            # together take train.resource_timeout_s, then stop, resumable. (Not one: an elastic
            # group may first be sized by a node that is just gone, and needs the retry.)
            failure_config=ray.train.FailureConfig(max_failures=config.train.max_failures,
                                                   controller_failure_limit=PLACEMENT_RETRIES)),
    )
    # Read by Ray Train when fit() starts its controller (passed on to it as an env var).
    os.environ[START_TIMEOUT_ENV] = str(config.train.resource_timeout_s / (1 + PLACEMENT_RETRIES))
    metrics = MetricsLog(run_dir)
    try:
        _fit_streaming_metrics(trainer, sink, metrics, on_record, on_poll)
    except _PlacementTimeout:
        low = workers.min if isinstance(workers, WorkerRange) else workers
        why = shortfall(resources, low, node_resources()) or "the cluster did not start them"
        raise RaygrowError(f"train.resource_timeout_s: the workers could not be placed within "
                           f"{config.train.resource_timeout_s:g} s ({why}); the run stopped "
                           "resumable: rerun once the cluster has room") from None
    ray.kill(sink)
    return metrics.records()


def _fit_streaming_metrics(trainer: TorchTrainer, sink, metrics: MetricsLog, on_record,
                           on_poll) -> None:
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
        on_poll()
        if not thread.is_alive():
            break
    metrics.flush()
    error = outcome.get("error") or outcome["result"].error
    if isinstance(getattr(error, "controller_failure", None), WorkerGroupStartupTimeoutError):
        raise _PlacementTimeout()
    if error is not None:
        raise RaygrowError(f"training failed: {first_line(error)}")


class _PlacementTimeout(Exception):
    """Ray Train gave up placing the worker group after train.resource_timeout_s."""
