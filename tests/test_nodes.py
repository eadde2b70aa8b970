"""Placement on a real multi-node Ray cluster (several raylets on this machine): a worker bundle
lives on one node, so what a stage needs is compared with what each node holds."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent("""
    import json, ray
    from ray.cluster_utils import Cluster
    from raygrow.config import RunConfig, WorkerRange, from_dict
    from raygrow.errors import ConfigError
    from raygrow.train.resources import check_schedulable, worker_resources

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address, logging_level="ERROR")
    cluster.wait_for_nodes()
    out = {}
    try:
        def config(**train):
            return from_dict(RunConfig, {"model": {"layers": 1, "hidden": 32, "heads": 4},
                                         "train": {"tokens": 8192 * 4, "batch_tokens": 8192, "micro_batch": 4, **train}})
        out["cluster_cpus"] = ray.cluster_resources()["CPU"]
        out["default_one_worker"] = worker_resources(config(), 1)[0]["CPU"]
        out["default_two_workers"] = worker_resources(config(), 2)[0]["CPU"]
        check_schedulable(config(cpus_per_worker=2), 2, False, 0, stage="stage-1")  # one per node
        for name, (cpus, workers) in {"too_big": (3, 1), "too_many": (2, 3)}.items():
            try:
                check_schedulable(config(cpus_per_worker=cpus), workers, False, 0, stage="stage-1")
                out[name] = None
            except ConfigError as error:
                out[name] = str(error)
        try:  # elastic: the minimum fits, so the stage may start
            check_schedulable(config(cpus_per_worker=2), WorkerRange(min=2, max=4), False, 0)
            out["elastic"] = "fits"
        except ConfigError as error:
            out["elastic"] = str(error)
    finally:
        ray.shutdown()
        cluster.shutdown()
    print("RESULT " + json.dumps(out))
""")


@pytest.mark.ray
@pytest.mark.nodes
def test_a_worker_bundle_is_compared_with_what_one_node_holds():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["cluster_cpus"] == 4
    # the default share is capped by the largest node: one worker gets 2 CPUs, not the cluster's 4
    assert out["default_one_worker"] == 2 and out["default_two_workers"] == 2
    assert out["too_big"] == ("train.workers: stage-1: one worker needs 3 CPU but the largest node has "
                              "2 CPU; lower train.cpus_per_worker or add bigger nodes")
    # 3 × 2 CPUs fit the cluster's 4 CPUs by totals? No, and not per node either: 2 nodes, 1 each
    assert out["too_many"].startswith("train.workers: stage-1: 3 worker(s) need 2 CPU each, on one node "
                                      "each, but the nodes hold 2")
    assert out["elastic"] == "fits"
