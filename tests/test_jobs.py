"""`ray job submit` of jobs/pretrain.py against a real `ray start --head` cluster.

The cluster here is a second one beside the session's `ray_local`: its own temp dir, ports and
auth token, driven only through the `ray` CLI in subprocesses (RAY_ADDRESS lives in their env,
never in this process), and torn down by its own process group. `ray stop` is not an option: it
kills every Ray process on the machine, the session's cluster (and anyone else's) included.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from cluster_procs import BIN, clean_env, free_ports, stop_head

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[1]
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}

PLAN = {
    "name": "job",
    "data": {"source": "stdlib", "seq_len": 32, "max_documents": 60, "val_fraction": 0.1},
    "train": {"batch_tokens": 512, "micro_batch": 4, "cpus_per_worker": 1, "lr": 1e-3,
              "warmup_steps": 2,
              "log_every": 1, "val_every": 3, "val_rows": 8},
    "checkpoint": {"every_steps": 3, "keep": 2},
    "stages": [
        {"shape": {"layers": 2, "hidden": 32, "heads": 4, "kv_heads": 2, "ffn": 64},
         "tokens": 3 * 512,
         "workers": 1, "zero_stage": 2},
        {"growth": {"depth_op": "stack"},
         "shape": {"layers": 4, "hidden": 32, "heads": 4, "kv_heads": 2, "ffn": 64},
         "tokens": 3 * 512, "workers": 2, "zero_stage": 3},
    ],
}


@dataclass
class HeadNode:
    address: str  # the dashboard's job API, http://127.0.0.1:<port>
    temp_dir: Path  # Ray's session files: logs, unpacked working dirs
    env: dict[str, str]  # for `ray` CLI calls: RAY_ADDRESS and the cluster's auth token

    def ray(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "ray"), *args], cwd=REPO, env=self.env,
                              capture_output=True, text=True,
                              timeout=timeout)

    def submit(self, submission_id: str, *entrypoint: str) -> None:
        # The job API answers before the node's dashboard agent has registered with it; until then
        # a submission is refused with "No available agent ... try again later" and nothing is
        # created.
        deadline = time.monotonic() + 90
        while True:
            result = self.ray("job", "submit", "--log-style", "record", "--submission-id",
                              submission_id,
                              "--working-dir", str(REPO), "--no-wait", "--", *entrypoint)
            output = result.stdout + result.stderr
            if (result.returncode == 0 or "No available agent" not in output
                    or time.monotonic() > deadline):
                break
            time.sleep(2)
        assert result.returncode == 0, output

    def status(self, submission_id: str) -> tuple[str, str]:
        """(status, the CLI's full output); the CLI prints prose, so read the status out of it.
        UNKNOWN when the CLI did not answer (a loaded 2-core machine): the caller polls again."""
        try:
            result = self.ray("job", "status", "--log-style", "record", submission_id, timeout=60)
        except subprocess.TimeoutExpired:
            return "UNKNOWN", "`ray job status` timed out"
        text = result.stdout + result.stderr
        words = {"succeeded": "SUCCEEDED", "failed": "FAILED", "was stopped": "STOPPED"}
        match = re.search(rf"Job '{re.escape(submission_id)}' (succeeded|failed|was stopped)", text)
        if match:
            return words[match.group(1)], text
        match = re.search(rf"Status for job '{re.escape(submission_id)}': (\w+)", text)
        return (match.group(1) if match else "UNKNOWN"), text

    def wait(self, submission_id: str, timeout: float) -> tuple[str, str]:
        deadline, text = time.monotonic() + timeout, ""
        while time.monotonic() < deadline:
            status, text = self.status(submission_id)
            if status in TERMINAL:
                return status, text
            time.sleep(5)  # each `ray job status` is a new Python process: ~1 CPU-s
        self.ray("job", "stop", submission_id)
        pytest.fail(f"job {submission_id} not done after {timeout:.0f}s ({text[-500:]}); logs "
                    f"end:\n{self.logs(submission_id)[-4000:]}")

    def logs(self, submission_id: str) -> str:
        result = self.ray("job", "logs", "--log-style", "record", submission_id, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout


def wait_until_answering(url: str, token: str, process: subprocess.Popen, log: Path,
                         timeout: float = 120) -> None:
    """Until the job API answers 200 (it comes up after the dashboard's /api/version)."""
    request = urllib.request.Request(f"{url}/api/jobs/",
                                     headers={"Authorization": f"Bearer {token}"})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"ray start exited with {process.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"the dashboard at {url} did not answer within "
                f"{timeout:.0f}s:\n{log.read_text()[-4000:]}")


@pytest.fixture(scope="module")
def head():
    # Short and outside pytest's tmp dir: Ray's unix sockets live under it (108-byte path limit).
    temp_dir = Path(tempfile.mkdtemp(prefix="raygrow-jobs-", dir="/tmp"))
    token = os.urandom(32).hex()
    (temp_dir / "auth_token").write_text(token)
    # Token auth is on by default in Ray 2.60; a token of our own keeps ~/.ray/auth_token out of it.
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(temp_dir / "auth_token")}
    (gcs, dashboard, client, agent_http, agent_grpc, metrics, node_manager, object_manager,
     runtime_env) = free_ports(9)
    # Every port explicit: the defaults (10001, 52365, ...) may be taken by another local cluster.
    command = [str(BIN / "ray"), "start", "--head", "--block", f"--port={gcs}",
               f"--dashboard-port={dashboard}",
               "--dashboard-host=127.0.0.1", "--num-cpus=4", "--include-dashboard=true",
               f"--temp-dir={temp_dir}", f"--ray-client-server-port={client}",
               f"--dashboard-agent-listen-port={agent_http}",
               f"--dashboard-agent-grpc-port={agent_grpc}",
               f"--metrics-export-port={metrics}", f"--node-manager-port={node_manager}",
               f"--object-manager-port={object_manager}", f"--runtime-env-agent-port={runtime_env}",
               "--disable-usage-stats"]
    log = temp_dir / "head.log"
    # Draining on SIGTERM waits up to 30 s for nothing in a test; its own session makes the
    # process group ours to kill.
    env = clean_env(**auth, RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=temp_dir, env=env, stdout=out,
                                   stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        url = f"http://127.0.0.1:{dashboard}"
        wait_until_answering(url, token, process, log)
        yield HeadNode(url, temp_dir, clean_env(**auth, RAY_ADDRESS=url))
    finally:
        stop_head(process)
        shutil.rmtree(temp_dir, ignore_errors=True)


def write_plan(path: Path, **changes) -> Path:
    path.write_text(yaml.safe_dump({**PLAN, **changes}))
    return path


@dataclass
class Job:
    submission_id: str
    storage: Path  # the job's --storage
    error: str = ""  # for a job that must fail: what its one-line error names


@pytest.fixture(scope="module")
def jobs(head, tmp_path_factory) -> dict[str, Job]:
    """Every job of the module, submitted at once: the failing ones finish while job1 starts up."""
    work = tmp_path_factory.mktemp("jobs")
    missing = str(work / "no-such-corpus")
    cases = {  # name: (plan changes, extra pretrain.py arguments, what the error names)
        "job1": ({}, [], ""),
        "bad-field": ({}, ["--set", "train.zero_stage=5"], "train.zero_stage"),
        "missing-corpus": ({"data": {**PLAN["data"], "source": missing}}, [], missing),
    }
    submitted = {}
    for name, (changes, extra, error) in cases.items():
        plan = write_plan(work / f"{name}.yaml", **changes)
        storage = work / name
        head.submit(name, "python", "jobs/pretrain.py", "--plan", str(plan), "--storage",
                    str(storage),
                    "--name", "job1" if name == "job1" else "bad", *extra)
        submitted[name] = Job(name, storage, error)
    return submitted


def test_submitted_job_trains_every_stage(head, jobs):
    job = jobs["job1"]
    status, text = head.wait(job.submission_id, timeout=600)
    logs = head.logs(job.submission_id)
    assert status == "SUCCEEDED", f"{text}\n{logs[-4000:]}"
    # What `raygrow train` prints at the end, through the job's log.
    stages = [json.loads(line.split(": ", 1)[1]) for line in logs.splitlines()
              if re.match(r"stage \d+: \{", line)]
    assert [stage["steps"] for stage in stages] == [3, 3], logs[-4000:]
    assert all(stage["final_val_loss"] > 0 for stage in stages)
    assert re.search(r'^growth: \{.*"depth_op": "stack"', logs, re.MULTILINE), logs[-4000:]
    run_dir = job.storage / "job1"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["complete"] is True
    assert [stage["workers"] for stage in summary["stages"]] == [1, 2]
    assert (run_dir / "export" / "model.safetensors").exists()
    # It joined this cluster (RAY_ADDRESS from the job), not a private local one: the head knows its
    # coordinator, named after the run directory.
    actors = json.loads(head.ray("list", "actors", "--format", "json", "--filter",
                                 "class_name=Coordinator").stdout)
    assert [actor["name"] for actor in actors] == [f"raygrow:{run_dir.resolve()}"], actors


def test_working_dir_upload_leaves_out_venv_and_ignored_files(head, jobs):
    """Ray 2.60 skips .git/.venv and honours .gitignore when packing --working-dir, so no
    `excludes` are needed: the jobs got the sources (under 1 MB), not the 2 GB venv or old runs."""
    root = head.temp_dir / "session_latest" / "runtime_resources" / "working_dir_files"
    # one package, shared by all jobs
    (unpacked,) = [path for path in root.iterdir() if path.is_dir()]
    names = {path.name for path in unpacked.iterdir()}
    assert {"raygrow", "jobs", "pyproject.toml"} <= names
    assert not names & {".venv", ".git", "runs", "raygrow.egg-info", ".pytest_cache"}, names
    assert sum(path.stat().st_size for path in unpacked.rglob("*") if path.is_file()) < 20 * 2**20


@pytest.mark.parametrize("name", ["bad-field", "missing-corpus"])
def test_bad_job_fails_with_one_line(head, jobs, name):
    """Invariant 5 through `ray job submit`: the job ends FAILED with pretrain.py's exit code 2,
    its log holds the one-line error and no traceback, and no run directory was written."""
    job = jobs[name]
    status, text = head.wait(job.submission_id, timeout=180)
    logs = head.logs(job.submission_id)
    assert status == "FAILED", f"{text}\n{logs}"
    assert "exit code 2" in text, text
    errors = [line for line in logs.splitlines() if line.startswith("raygrow: error: ")]
    assert len(errors) == 1 and job.error in errors[0], logs
    assert "Traceback" not in logs, logs
    assert not (job.storage / "bad").exists()
