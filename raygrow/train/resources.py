"""Cluster resource maths: what a stage's workers need, and whether the cluster can hold them."""

from __future__ import annotations

import logging
import math
import time

import ray

from raygrow.config import RunConfig, WorkerRange
from raygrow.errors import ConfigError

log = logging.getLogger("raygrow")


def on_this_node():
    """A scheduling strategy that keeps an actor on this process's node (the driver's): the
    run's control plane should not go down with a worker node. Hard affinity: Ray 2.60 places a
    zero-CPU actor with *soft* affinity on a random node of a multi-node cluster (seen: 6 of 8
    such actors on worker nodes), and the coordinator then died with the node it landed on."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)


def node_resources() -> list[dict[str, float]]:
    """The resources of each alive node (what one worker bundle can be placed on)."""
    return [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]


def worker_resources(config: RunConfig, workers: int) -> tuple[dict, bool, int]:
    """(resources per worker, use_gpu, torch threads per worker) for `workers` workers.

    By default a worker takes an equal share of the cluster's CPUs, but never more than the
    largest node holds (a bundle lives on one node), less the CPUs its Ray Data read task asks
    for (`data.ingest_cpus`, see `ingest_cpus`): on any cluster size the data has CPUs of its
    own (REFERENCES: two 1-CPU workers on 2 CPUs starve a streaming dataset). The torch threads
    follow the share.
    """
    total = ray.cluster_resources()
    use_gpu = config.train.use_gpu if config.train.use_gpu is not None else total.get("GPU", 0) >= 1
    largest = max((node.get("CPU", 0) for node in node_resources()), default=total.get("CPU", 1))
    cpus = config.train.cpus_per_worker or max(1.0, min(math.floor(total.get("CPU", 1) / workers),
                                                        math.floor(largest) or 1))
    if config.train.cpus_per_worker is None and cpus * workers > total.get("CPU", 0) > 0:
        cpus = total["CPU"] / workers  # more workers than CPUs: share them
    threads = max(1, int(cpus))
    if config.train.cpus_per_worker is None:
        cpus = max(cpus - ingest_cpus(config), cpus / 2)
    return ({"CPU": cpus, **({"GPU": 1} if use_gpu else {})}, use_gpu, threads)


def ingest_cpus(config: RunConfig) -> float:
    """CPUs one worker's Ray Data read task asks for (0 when the worker reads its rows itself)."""
    return config.data.ingest_cpus if config.data.ingest == "ray_data" else 0.0


def read_task_cpus(config: RunConfig, workers: int, resources: dict[str, float]) -> float:
    """CPUs each Ray Data read task of `workers` workers of `resources` asks for: its
    `data.ingest_cpus` where the cluster has them beside the workers, else 0 (the workers were
    given every CPU with train.cpus_per_worker: the light read tasks then run beside them
    rather than wait, silently, for a CPU that never frees up)."""
    need = ingest_cpus(config)
    free = ray.cluster_resources().get("CPU", 0) - workers * resources.get("CPU", 0)
    if need == 0 or free + 1e-9 >= need:
        return need
    log.warning("the workers hold every CPU (train.cpus_per_worker %g × %d): the Ray Data read "
                "tasks run beside them on 0 CPUs; leave %g CPU per worker free to give them "
                "their own (data.ingest_cpus)", resources.get("CPU", 0), workers, need)
    return 0.0


def bundles_that_fit(bundle: dict[str, float], nodes: list[dict[str, float]]) -> int:
    """How many copies of `bundle` the nodes hold, each copy on one node."""
    return sum(min(int(node.get(name, 0) // amount + 1e-9) if amount > 0 else 1 << 30
                   for name, amount in bundle.items()) for node in nodes)


def check_schedulable(config: RunConfig, workers: int | WorkerRange, autoscaling: bool,
                      timeout_s: float, stage: str | None = None) -> float:
    """Ask the cluster for a stage's workers and wait until at least the minimum fits, counting
    what each node holds (a worker bundle never spans nodes), not the cluster's totals; returns
    the seconds it waited.

    On a cluster with an autoscaler, the request is what makes it add worker nodes (KubeRay
    `maxReplicas`, launcher `max_workers`); without one, a shortfall is refused at once instead
    of leaving Ray Train waiting silently for resources that will never come.
    """
    low, high = ((workers.min, workers.max) if isinstance(workers, WorkerRange)
                 else (workers, workers))
    resources, _, _ = worker_resources(config, high)
    if autoscaling:
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=[resources] * high)
    started = time.monotonic()
    deadline, next_note = started + timeout_s, 0.0
    while True:
        nodes = node_resources()
        why = shortfall(resources, low, nodes)
        if why is None:
            return time.monotonic() - started
        if not autoscaling or time.monotonic() > deadline:
            raise ConfigError("train.workers", (f"{stage}: " if stage else "") + why
                              + ("" if not autoscaling else f" (waited {timeout_s:g} s)"))
        if time.monotonic() >= next_note:
            log.info("waiting for the cluster to grow: %s", why)
            next_note = time.monotonic() + 30
        time.sleep(2)


def shortfall(resources: dict[str, float], low: int, nodes: list[dict[str, float]]) -> str | None:
    """Why `low` workers of `resources` each do not fit on `nodes` (None when they do): one line
    that says what one worker needs and what the nodes hold."""
    fits = bundles_that_fit(resources, nodes)
    if fits >= low:
        return None
    need = ", ".join(f"{amount:g} {name}" for name, amount in resources.items())
    if fits == 0:
        largest = ", ".join(f"{max((n.get(name, 0) for n in nodes), default=0):g} {name}"
                            for name in resources)
        return (f"one worker needs {need} but the largest node has {largest}; lower "
                "train.cpus_per_worker or add bigger nodes")
    return (f"{low} worker(s) need {need} each, on one node each, but the nodes hold {fits}; "
            "lower the worker count or add nodes")
