"""Placement on a real multi-node Ray cluster (several raylets on this machine): a worker bundle
lives on one node, so what a stage needs is compared with what each node holds."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from cluster_procs import S3_ENV, clean_env, moto_server

PROBE = textwrap.dedent("""
    import json, ray
    from ray.cluster_utils import Cluster
    from raygrow.config import RunConfig, WorkerRange, from_dict
    from raygrow.errors import ConfigError
    from raygrow.train.resources import check_schedulable, on_this_node, worker_resources

    @ray.remote(num_cpus=0)
    class ControlPlane:  # zero CPUs, as the coordinator and the metrics sink
        def node(self):
            return ray.get_runtime_context().get_node_id()

    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 2, "include_dashboard": False})
    cluster.add_node(num_cpus=2)
    ray.init(address=cluster.address, logging_level="ERROR")
    cluster.wait_for_nodes()
    out = {}
    try:
        def config(**train):
            return from_dict(RunConfig, {"model": {"layers": 1, "hidden": 32, "heads": 4},
                                         "train": {"tokens": 8192 * 4, "batch_tokens": 8192,
                                                   "micro_batch": 4, **train}})
        out["cluster_cpus"] = ray.cluster_resources()["CPU"]
        here = ray.get_runtime_context().get_node_id()
        actors = [ControlPlane.options(scheduling_strategy=on_this_node()).remote()
                  for _ in range(8)]
        out["control_plane_here"] = [ray.get(actor.node.remote()) == here for actor in actors]
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
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          timeout=300)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["cluster_cpus"] == 4
    # the coordinator and the metrics sink stay on the driver's node (soft affinity: 2 of 8)
    assert all(out["control_plane_here"]), out["control_plane_here"]
    # the default share is capped by the largest node: one worker gets 2 CPUs, not the cluster's
    # 4, less what its Ray Data read task asks for (data.ingest_cpus, 0.25)
    assert out["default_one_worker"] == 1.75 and out["default_two_workers"] == 1.75
    assert out["too_big"] == ("train.workers: stage-1: one worker needs 3 CPU but the largest node "
                              "has 2 CPU; lower train.cpus_per_worker or add bigger nodes")
    # 3 × 2 CPUs fit the cluster's 4 CPUs by totals? No, and not per node either: 2 nodes, 1 each
    assert out["too_many"].startswith("train.workers: stage-1: 3 worker(s) need 2 CPU each, on one "
                                      "node each, but the nodes hold 2")
    assert out["elastic"] == "fits"


NODE_LOSS = textwrap.dedent("""
    import json, sys, threading, time
    import ray
    from ray.cluster_utils import Cluster
    from raygrow import driver, storage
    from raygrow.config import RunConfig, from_dict
    from raygrow.train import checkpoint

    endpoint, mode = sys.argv[1], sys.argv[2]  # mode: elastic (workers 1..2) or fixed (2)
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    nodes = [cluster.add_node(num_cpus=2) for _ in range(2)]
    ray.init(address=cluster.address, logging_level="ERROR")
    cluster.wait_for_nodes()
    config = from_dict(RunConfig, {
        "name": "node-loss", "storage": "s3://runs/runs", "s3": {"endpoint_url": endpoint},
        "data": {"source": "stdlib", "seq_len": 32, "max_documents": 60, "val_fraction": 0.1,
                 "rows_per_shard": 512, "cache_dir": "s3://runs/datasets"},
        "stages": [{"shape": {"layers": 2, "hidden": 32, "heads": 4, "kv_heads": 2, "ffn": 64},
                    "tokens": 8 * 512,
                    "workers": {"min": 1, "max": 2} if mode == "elastic" else 2}],
        "train": {"batch_tokens": 512, "micro_batch": 4, "cpus_per_worker": 2, "zero_stage": 2,
                  "lr": 1e-3, "warmup_steps": 2, "log_every": 1, "val_every": 4, "val_rows": 8,
                  "max_failures": 3, "log_rows": True, "resource_timeout_s": 60},
        "checkpoint": {"every_steps": 2, "keep": 5}})
    storage.configure_s3(endpoint)
    stage_dir = storage.join(config.run_dir, "stage-0")
    out = {"errors": []}
    def train():
        try:
            out["summary"] = driver.train(config, show_progress=False)
        except Exception as error:  # reported in the result
            out["errors"].append(f"{type(error).__name__}: {error}")

    def worker_nodes():
        # the nodes of the worker group's placement group, as the GCS has it (the Train
        # controller and the coordinator live on the head, the driver's node)
        groups = [g for g in ray.util.placement_group_table().values()
                  if g["state"] == "CREATED"]
        return {node for g in groups for node in g["bundles_to_node_id"].values()}

    thread = threading.Thread(target=train)
    thread.start()
    removed = None
    deadline = time.monotonic() + 600
    while removed is None and time.monotonic() < deadline and thread.is_alive():
        # the metrics log reaches S3 in batches; a checkpoint is uploaded when it is taken
        saved = [checkpoint.step_of(c) for c in checkpoint.candidates(stage_dir)]
        held = worker_nodes() if saved else set()
        if len(held) == 2:
            node = next(n for n in nodes if n.node_id in held)
            cluster.remove_node(node, allow_graceful=False)  # a node of the stage is gone
            removed, removed_at = node.node_id, time.monotonic()
        time.sleep(0.2)
    thread.join(timeout=900)
    out["stopped_after_s"] = time.monotonic() - removed_at if removed else None
    if mode == "fixed":  # no replacement came: the run stopped; a new node, and the rerun resumes
        cluster.add_node(num_cpus=2)
        cluster.wait_for_nodes()
        train()
    def jsonl(path):
        return [json.loads(line) for line in storage.read_bytes(path).decode().splitlines()]
    records = jsonl(storage.join(stage_dir, "metrics.jsonl"))
    rows = []
    for path in sorted(storage.glob(storage.join(stage_dir, "rows", "rank-*.jsonl"))):
        rows += [row for record in jsonl(path) for row in record["rows"]]
    print("RESULT " + json.dumps({
        "removed": removed, "complete": out.get("summary", {}).get("complete"), **out,
        "placements": [r["detail"]["ranks"] for r in records if r.get("event") == "placement"],
        "resumes": [r["step"] for r in records if r.get("event") == "resume"],
        "rows": rows, "batch_rows": config.batch_rows, "steps": 8}, default=str))
    ray.shutdown()
    cluster.shutdown()
""")


def lose_a_node(mode: str) -> dict:
    """NODE_LOSS in its own interpreter (its own cluster), storage on a moto_server of its own."""
    import boto3

    env = clean_env(**S3_ENV)
    with moto_server() as endpoint:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                     aws_access_key_id="test", aws_secret_access_key="test"
                     ).create_bucket(Bucket="runs")
        done = subprocess.run([sys.executable, "-c", NODE_LOSS, endpoint, mode], env=env,
                              capture_output=True, text=True, timeout=1500)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, (done.stdout + done.stderr)[-4000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["removed"] and out["complete"], out["errors"]
    rows = out["rows"]
    assert len(rows) == len(set(rows)) == out["steps"] * out["batch_rows"]  # each row exactly once
    return out


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.nodes
def test_a_lost_node_shrinks_an_elastic_stage_and_every_row_is_trained_once():
    """Workers {min 1, max 2} of 2 CPUs on two 2-CPU nodes: the node of rank 1 is removed after
    step 3; the stage goes on with 1 worker from its last checkpoint and ends with each row once."""
    out = lose_a_node("elastic")
    assert not out["errors"]
    first, *_, last = out["placements"]
    assert len(first) == 2 and len({rank["node"] for rank in first}) == 2  # one worker per node
    assert len(last) == 1 and last[0]["node"] != out["removed"]  # shrunk onto the node that is left
    # from the last checkpoint before the loss
    assert out["resumes"] and out["resumes"][-1] in (2, 4)


@pytest.mark.ray
@pytest.mark.nodes
@pytest.mark.slow
def test_a_lost_node_under_a_fixed_worker_count_stops_resumable_after_the_timeout():
    """2 fixed workers, one node removed and no replacement: the run waits
    train.resource_timeout_s (60 s, 3 tries), stops with one line naming what is missing, and
    once a node is added the rerun finishes the stage from its last checkpoint, each row once."""
    out = lose_a_node("fixed")
    [error] = out["errors"]
    assert error.startswith("RaygrowError: train.resource_timeout_s: the workers could not be "
                            "placed within 60 s (2 worker(s) need 2 CPU each, on one node each, "
                            "but the nodes hold 1"), error
    assert "\n" not in error and 60 <= out["stopped_after_s"] < 300, out["stopped_after_s"]
    assert out["resumes"] and len(out["placements"][-1]) == 2
