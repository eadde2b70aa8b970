"""A cluster that grows with the model, for real: Ray's own autoscaler (v1, its fake multi-node
provider, which starts and stops raylets on this machine) behind a `ray start --head` of this
test's own (ports, temp dir, auth token), storage on an S3-compatible server (moto_server), as a
real cluster would have. The head holds 1 CPU, so no 2-CPU training worker fits on it: every
worker runs on a node the autoscaler launched because the coordinator asked for it.

What the fake provider needs that the 2.60 wheel's missing example.yaml would have given:
`gcs_address` (else its nodes look for a GCS on port 6379, someone else's), and
`disable_node_updaters` (else each new node's updater tries to tag it, the read-only provider
refuses, and the autoscaler terminates the node as "launch failed", over and over).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import yaml

from cluster_procs import BIN, S3_ENV, clean_env, free_ports, moto_server, stop_head

pytestmark = [pytest.mark.ray, pytest.mark.nodes, pytest.mark.slow]

IDLE_TIMEOUT_MIN = 0.1  # an idle launched node goes after 6 s
NODE_TYPE = "cpu2"


def autoscaling_config(gcs_address: str) -> dict:
    return {
        "cluster_name": "raygrow-autoscaling-test",
        "max_workers": 2, "upscaling_speed": 1.0, "idle_timeout_minutes": IDLE_TIMEOUT_MIN,
        "provider": {"type": "fake_multinode", "gcs_address": gcs_address,
                     "use_node_id_as_ip": True, "disable_node_updaters": True,
                     "disable_launch_config_check": True},
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 1}, "node_config": {}, "max_workers": 0},
            NODE_TYPE: {"resources": {"CPU": 2, "object_store_memory": 200 * 1024 ** 2},
                        "node_config": {}, "min_workers": 0, "max_workers": 2},
        },
        "head_node_type": "ray.head.default",
        "auth": {}, "docker": {}, "file_mounts": {}, "cluster_synced_files": [],
        "file_mounts_sync_continuously": False, "rsync_exclude": [], "rsync_filter": [],
        "initialization_commands": [], "setup_commands": [], "head_setup_commands": [],
        "worker_setup_commands": [], "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


NODES = textwrap.dedent("""
    import json, ray
    ray.init(logging_level="ERROR")
    head = ray.get_runtime_context().get_node_id()
    print("RESULT " + json.dumps({"head": head, "alive": sorted(
        n["NodeID"] for n in ray.nodes() if n["Alive"])}))
""")


class AutoscalingHead:
    """`ray start --head --block` with the autoscaler on; its nodes run as processes of this
    machine whose command lines name this head's temp dir."""

    def __init__(self, env: dict[str, str]):
        from ray._private.services import get_node_ip_address

        # Short and outside pytest's tmp dir: Ray's unix sockets live under it (108-byte limit).
        self.temp_dir = Path(tempfile.mkdtemp(prefix="raygrow-as-", dir="/tmp"))
        token = self.temp_dir / "auth_token"
        token.write_text(os.urandom(32).hex())
        (gcs, client, agent_http, agent_grpc, metrics, node_manager, object_manager,
         runtime_env) = free_ports(8)
        self.address = f"{get_node_ip_address()}:{gcs}"
        config = self.temp_dir / "autoscaling.yaml"
        config.write_text(yaml.safe_dump(autoscaling_config(self.address)))
        auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)}
        self.env = clean_env(**env, **auth, RAY_ADDRESS=self.address)
        head_env = clean_env(**env, **auth, RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1",
                             RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")
        command = [str(BIN / "ray"), "start", "--head", "--block", f"--port={gcs}",
                   "--num-cpus=1", f"--autoscaling-config={config}", "--include-dashboard=false",
                   f"--temp-dir={self.temp_dir}", f"--ray-client-server-port={client}",
                   f"--dashboard-agent-listen-port={agent_http}",
                   f"--dashboard-agent-grpc-port={agent_grpc}",
                   f"--metrics-export-port={metrics}", f"--node-manager-port={node_manager}",
                   f"--object-manager-port={object_manager}",
                   f"--runtime-env-agent-port={runtime_env}", "--disable-usage-stats"]
        self.client_port = client
        with (self.temp_dir / "head.log").open("w") as out:
            self.process = subprocess.Popen(command, cwd=self.temp_dir, env=head_env, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def nodes(self) -> dict:
        """The head's node id and every alive node's, asked by a driver of its own."""
        done = subprocess.run([str(BIN / "python"), "-c", NODES], env=self.env,
                              capture_output=True, text=True, timeout=120)
        lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        assert lines, (done.stdout + done.stderr)[-3000:]
        return json.loads(lines[-1][len("RESULT "):])

    def stop(self) -> None:
        stop_head(self.process)
        # The autoscaler's nodes and Ray's client server are started by the head's processes,
        # not always in their process group: what is left is found by this head's temp dir
        # (or client port) in its command line, so nothing of another cluster is touched.
        marks = (str(self.temp_dir), f"--port={self.client_port}")
        left = [p for p in psutil.process_iter(["cmdline"])
                if any(mark in " ".join(p.info["cmdline"] or []) for mark in marks)]
        for process in left:
            process.kill()
        psutil.wait_procs(left, timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def plan(endpoint: str) -> dict:
    shape = {"layers": 1, "hidden": 32, "heads": 4, "kv_heads": 2, "ffn": 64}
    return {
        "name": "autoscaled", "storage": "s3://runs/runs", "s3": {"endpoint_url": endpoint},
        "data": {"source": "stdlib", "seq_len": 32, "max_documents": 20, "val_fraction": 0.2,
                 "rows_per_shard": 256, "cache_dir": "s3://runs/datasets"},
        "train": {"batch_tokens": 512, "micro_batch": 4, "cpus_per_worker": 2, "zero_stage": 2,
                  "lr": 1e-3, "warmup_steps": 0, "log_every": 1, "val_every": 3, "val_rows": 8,
                  "resource_timeout_s": 240},
        "checkpoint": {"every_steps": 3, "keep": 1},
        "stages": [{"shape": shape, "tokens": 3 * 512, "workers": 1},
                   {"shape": {**shape, "layers": 2}, "growth": {"depth_op": "stack"},
                    "tokens": 3 * 512, "workers": 2}],
    }


def test_the_autoscaler_adds_a_node_per_worker_for_the_grown_stage_and_releases_them(tmp_path):
    """Stage 0 (1 worker of 2 CPUs) waits for the autoscaler's first node, stage 1 (2 workers)
    for a second; each stage's nodes and wait are in summary.json and the log; after the run
    the request is withdrawn and the idle nodes are terminated, leaving the head alone."""
    import boto3

    with moto_server() as endpoint:
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="test", aws_secret_access_key="test")
        client.create_bucket(Bucket="runs")
        head = AutoscalingHead(S3_ENV)
        try:
            before = head.nodes()
            assert before["alive"] == [before["head"]]  # min_workers 0: nothing launched yet
            plan_file = tmp_path / "plan.yaml"
            plan_file.write_text(yaml.safe_dump(plan(endpoint)))
            done = subprocess.run([str(BIN / "raygrow"), "train", str(plan_file), "--quiet"],
                                  env=head.env, cwd=tmp_path, capture_output=True, text=True,
                                  timeout=1200)
            assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
            summary = json.loads(client.get_object(
                Bucket="runs", Key="runs/autoscaled/summary.json")["Body"].read())
            first, second = summary["stages"]
            assert summary["complete"] and [first["steps"], second["steps"]] == [3, 3]
            assert len(first["nodes"]) == 1 and len(second["nodes"]) == 2
            assert before["head"] not in first["nodes"] + second["nodes"]  # launched nodes only
            assert first["resource_wait_s"] > 0 and second["resource_wait_s"] > 0
            assert "stage-1: 2 worker(s) on 2 node(s)" in done.stderr
            print("AUTOSCALED " + json.dumps({  # for `pytest -s`: what the run recorded
                "head": before["head"], "log": [line for line in done.stderr.splitlines()
                                                if "node(s)" in line or "waiting" in line],
                **{f"stage {i}": {k: stage[k] for k in ("nodes", "resource_wait_s")}
                   for i, stage in enumerate(summary["stages"])}}))
            deadline = time.monotonic() + 120  # idle nodes go once the request is withdrawn
            while (alive := head.nodes()["alive"]) != [before["head"]]:
                assert time.monotonic() < deadline, f"nodes still up after the run: {alive}"
                time.sleep(3)
        finally:
            head.stop()
