"""Processes of Ray clusters a test starts beside the session's own: free ports, a clean
environment, and tearing down exactly the process group a test started (never `ray stop`,
which kills every Ray process on the machine)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

# The venv's bin: `ray` for the CLI, and first on the cluster's PATH so a job's `python` is the
# venv's.
BIN = Path(sys.executable).parent


# Credentials and settings for a moto_server: fixed test keys, nothing read from the machine.
S3_ENV = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
          "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
          "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_CONFIG_FILE": "/dev/null"}


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything pointing at the session's cluster (ray.init
    exports RAY_AUTH_MODE, a test may have set RAY_ADDRESS or RAYGROW_*), plus `extra`."""
    env = {key: value for key, value in os.environ.items()
           if not (key.startswith(("RAY_", "RAYGROW_")) and key != "RAY_DEDUP_LOGS")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


def stop_head(process: subprocess.Popen) -> None:
    """SIGTERM `ray start --block` (it stops what it started), then SIGKILL whatever is left in its
    process group: dashboard modules, workers. Only this cluster's processes are in that group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=10)


def wait_listening(port: int, process: subprocess.Popen, timeout_s: float = 30) -> None:
    """Wait until `process` (alive all along) accepts connections on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{process.args[0]} exited at start-up"
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{process.args[0]} did not listen on {port}")


@contextlib.contextmanager
def moto_server(env: dict[str, str] | None = None) -> Iterator[str]:
    """A real S3-compatible server (`moto_server`) on a free port of 127.0.0.1: its endpoint."""
    port = free_ports(1)[0]
    process = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)
