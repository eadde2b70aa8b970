"""Cluster resource maths: what a stage's workers need, and whether the cluster can hold them."""

from __future__ import annotations

import logging
import math
import time

import ray

from raygrow.config import RunConfig, WorkerRange
from raygrow.errors import ConfigError

log = logging.getLogger("raygrow")


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
