"""A worker group = one Ray Train run (`TorchTrainer.fit`): a stage with its own worker count and
ZeRO stage, and the stages after it that keep its worker layout (see WorkerGroup).

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
from raygrow.config import RunConfig, WorkerRange
from raygrow.errors import RaygrowError, first_line
from raygrow.train.metrics import MetricsLog, local_sink
from raygrow.train.records import Record
from raygrow.train.resources import (node_resources, read_task_cpus, shortfall,
                                     worker_resources)
from raygrow.train.stage_run import StageRun

PLACEMENT_RETRIES = 2  # worker-group placements retried before a stage stops (see WorkerGroup)


def layout(config: RunConfig, workers: int | WorkerRange) -> tuple | None:
    """What a worker group is made of: a stage whose layout equals the group's trains in it,
    with no new worker processes (None: an elastic group, which is sized when it starts)."""
    if isinstance(workers, WorkerRange):
        return None
    resources, use_gpu, threads = worker_resources(config, workers)
    return (workers, tuple(sorted(resources.items())), use_gpu, threads,
            config.train.placement, config.train.max_failures)


class WorkerGroup:
    """One Ray Train run (`TorchTrainer.fit`, in a thread) that trains a stage and then, while its
    workers wait, each next stage of the same `layout` handed to `train`: between them no Ray
    Train controller, placement group or worker process starts, and nothing is imported again
    (most of a stage transition). `close` ends it. A stage that stops before its end (a stop
    request, train.stop_after, a non-finite stop) ends the group with it."""

    def __init__(self, run: StageRun):
        from raygrow.train.loop import train_fn  # imports DeepSpeed: only once a run really starts

        config, workers = run.config, run.workers
        high = workers.max if isinstance(workers, WorkerRange) else workers
        resources, use_gpu, _ = worker_resources(config, high)
        count = (workers.min, workers.max) if isinstance(workers, WorkerRange) else high
        self.layout = layout(config, workers)
        self.sink = local_sink()
        self.first = self._launched(run)
        self.ended: str | None = None  # the stage the workers ended and wait after
        self.placement_timeout = config.train.resource_timeout_s
        self.low = workers.min if isinstance(workers, WorkerRange) else workers
        self.resources = resources
        storage_path, storage_filesystem = storage.ray_storage(storage.parent(self.first.run_dir))
        self.trainer = TorchTrainer(
            train_fn,
            train_loop_config={"run": self.first},
            scaling_config=ray.train.ScalingConfig(
                num_workers=count, use_gpu=use_gpu, resources_per_worker=resources,
                placement_strategy=config.train.placement.upper()),
            run_config=ray.train.RunConfig(
                name=storage.base_name(self.first.run_dir), storage_path=storage_path,
                storage_filesystem=storage_filesystem,
                checkpoint_config=ray.train.CheckpointConfig(num_to_keep=config.checkpoint.keep),
                # A worker group that cannot be placed (a node lost under a fixed worker count) is
                # a controller failure, which Ray Train retries forever by default. A few tries
                # that together take train.resource_timeout_s, then stop, resumable. (Not one: an
                # elastic group may first be sized by a node that is just gone, and needs the
                # retry.)
                failure_config=ray.train.FailureConfig(
                    max_failures=config.train.max_failures,
                    controller_failure_limit=PLACEMENT_RETRIES)),
        )
        self.outcome: dict = {}
        self.thread: threading.Thread | None = None

    def _launched(self, run: StageRun, chained: bool = False) -> StageRun:
        config, workers = run.config, run.workers
        high = workers.max if isinstance(workers, WorkerRange) else workers
        resources, _, threads = worker_resources(config, high)
        return dataclasses.replace(run, run_dir=storage.canonical(run.run_dir), threads=threads,
                                   sink=self.sink, chained=chained,
                                   read_cpus=read_task_cpus(config, high, resources),
                                   fault=os.environ.get("RAYGROW_FAULT"))

    @property
    def waiting(self) -> bool:
        """Whether the workers ended a stage and wait for the next."""
        return self.ended is not None and self.thread is not None and self.thread.is_alive()

    def train(self, run: StageRun, on_record=lambda record: None,
              on_poll=lambda: None) -> list[Record]:
        """Train `run` to its end (or to `train.stop_after`, or a stop request through `sink`):
        the group's first stage, or one handed to its waiting workers; returns its metric
        records. While it trains, `on_record` sees each record and `on_poll` is called once per
        poll of the records (every 0.5 s)."""
        if self.thread is None:
            # Read by Ray Train when fit() starts its controller (passed on to it as an env var).
            os.environ[START_TIMEOUT_ENV] = str(self.placement_timeout / (1 + PLACEMENT_RETRIES))
            self.thread = threading.Thread(target=self._fit, daemon=True)
            self.thread.start()
            launched = self.first
        else:
            if not self.waiting:
                raise RuntimeError("the worker group has ended; start a new one")
            launched = self._launched(run, chained=True)
            # boxed in a list: the sink keeps the reference without unpickling the run (which
            # would import raygrow's config and more into its light process: seconds, once)
            ray.get(self.sink.hand_over.remote(self.ended, [ray.put(launched)]))
            self.ended = None
        metrics = MetricsLog(launched.run_dir)
        while True:
            self.thread.join(timeout=0.5)
            records, ended = ray.get(self.sink.poll.remote())
            if records:
                metrics.write(records)
                for record in records:
                    on_record(record)
            on_poll()
            if ended == launched.run_dir:
                self.ended = ended
                break
            if not self.thread.is_alive():
                break
        metrics.flush()
        if not self.thread.is_alive():
            self._raise_error()
        return metrics.records()

    def close(self) -> None:
        """End the group: its waiting workers return (a group still training is asked to stop at
        its next step, with a checkpoint), and its fit() with them."""
        if self.thread is not None and self.thread.is_alive():
            if self.ended is not None:
                ray.get(self.sink.hand_over.remote(self.ended, None))
            else:
                ray.get(self.sink.request_stop.remote())
            self.thread.join()
        ray.kill(self.sink)

    def _fit(self) -> None:
        try:
            self.outcome["result"] = self.trainer.fit()
        except Exception as error:  # noqa: BLE001 - reported to the user as one line
            self.outcome["error"] = error

    def _raise_error(self) -> None:
        error = self.outcome.get("error") or self.outcome["result"].error
        if isinstance(getattr(error, "controller_failure", None), WorkerGroupStartupTimeoutError):
            why = shortfall(self.resources, self.low, node_resources()) or \
                "the cluster did not start them"
            raise RaygrowError(f"train.resource_timeout_s: the workers could not be placed within "
                               f"{self.placement_timeout:g} s ({why}); the run stopped "
                               "resumable: rerun once the cluster has room") from None
        if error is not None:
            raise RaygrowError(f"training failed: {first_line(error)}")
