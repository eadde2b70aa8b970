"""Faults with real processes and real signals: a driver stopped by SIGTERM and by Ctrl-C
(SIGINT) checkpoints at the next step boundary and resumes; a driver killed with SIGKILL is
rerun; a corrupt newest checkpoint is skipped by `raygrow train`; a full disk during a save
leaves the previous checkpoint intact. Every row is trained exactly once throughout.

The `raygrow train` processes join the session's Ray cluster (RAY_ADDRESS), as `ray job
submit` entrypoints join theirs, so a killed driver leaves the cluster to the test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from raygrow import driver
from raygrow.train import checkpoint

pytestmark = pytest.mark.ray

STEPS = 40  # long enough that a signal sent at step 3 lands mid-stage


def write_plan(config, path: Path) -> Path:
    path.write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    return path


def launch(plan: Path, ray_local, *args: str) -> subprocess.Popen:
    env = {**os.environ, "RAY_ADDRESS": ray_local.get_runtime_context().gcs_address,
           "RAYGROW_AUTOSCALING": "0"}
    return subprocess.Popen([sys.executable, "-m", "raygrow.cli", "train", str(plan),
                             "--quiet", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def steps_logged(run_dir: Path) -> list[int]:
    path = run_dir / "stage-0" / "metrics.jsonl"
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.endswith("}")]
    return [record["step"] for record in map(json.loads, lines) if "event" not in record]


def wait_for_step(run_dir: Path, process: subprocess.Popen, step: int,
                  timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while max(steps_logged(run_dir), default=0) < step:
        assert process.poll() is None, process.communicate()[0][-3000:]
        assert time.monotonic() < deadline, f"step {step} not reached"
        time.sleep(0.2)


def rows(run_dir: Path) -> list[int]:
    found = []
    for path in sorted((run_dir / "stage-0" / "rows").glob("rank-*.jsonl")):
        found += [row for line in path.read_text().splitlines() for row in json.loads(line)["rows"]]
    return found


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line)
            for line in (run_dir / "stage-0" / "metrics.jsonl").read_text().splitlines()]


def long_run(tiny_config, name: str, **checkpointing):
    return tiny_config(name, train={"tokens": STEPS * 512, "log_rows": True, "deterministic": False,
                                    "val_every": 1000, "log_every": 10, "stop_grace_s": 120},
                       checkpoint={"every_steps": 1000, "keep": 3, **checkpointing})


@pytest.mark.parametrize("stop_signal, exit_status", [
    (signal.SIGTERM, 143), pytest.param(signal.SIGINT, 130, marks=pytest.mark.slow)],
                         ids=["SIGTERM", "ctrl-c"])
def test_a_signal_checkpoints_at_the_next_step_and_the_rerun_resumes_exactly_once(
        ray_local, tiny_config, tmp_path, stop_signal, exit_status):
    config = long_run(tiny_config, f"stopped-{stop_signal.name}")
    run_dir = Path(config.run_dir)
    process = launch(write_plan(config, tmp_path / "plan.yaml"), ray_local)
    wait_for_step(run_dir, process, 3)
    os.kill(process.pid, stop_signal)
    output, _ = process.communicate(timeout=240)
    assert process.returncode == exit_status, output[-3000:]
    assert f"stopped by {stop_signal.name} at a checkpoint" in output
    (saved,) = checkpoint.candidates(run_dir / "stage-0")  # no periodic one: the stop's own
    stopped_at = checkpoint.step_of(saved)
    assert 3 <= stopped_at < STEPS
    assert [r["step"] for r in records(run_dir) if r.get("event") == "stop"] == [stopped_at]
    assert max(steps_logged(run_dir)) == stopped_at  # nothing trained after the checkpoint

    summary = driver.train(config, show_progress=False)
    assert summary["complete"]
    assert [r["step"] for r in records(run_dir) if r.get("event") == "resume"] == [stopped_at]
    trained = rows(run_dir)
    assert len(trained) == len(set(trained)) == STEPS * config.batch_rows


@pytest.mark.slow
def test_a_killed_driver_is_rerun_from_its_last_checkpoint(ray_local, tiny_config, tmp_path):
    config = long_run(tiny_config, "sigkilled", every_steps=2)
    run_dir = Path(config.run_dir)
    process = launch(write_plan(config, tmp_path / "plan.yaml"), ray_local)
    wait_for_step(run_dir, process, 5)
    process.kill()  # SIGKILL: no handler runs, the lease is not released
    process.communicate(timeout=60)
    _wait_until_gone(f"raygrow:{run_dir.resolve()}")
    summary = driver.train(config, show_progress=False)  # the dead driver's lease is taken over
    assert summary["complete"]
    resumed = [r["step"] for r in records(run_dir) if r.get("event") == "resume"]
    assert len(resumed) == 1 and resumed[0] >= 4 and resumed[0] % 2 == 0
    trained = rows(run_dir)
    assert len(trained) == len(set(trained)) == STEPS * config.batch_rows


def _wait_until_gone(actor_name: str, timeout_s: float = 120) -> None:
    """The killed driver's coordinator (and with it its trainer) ends with its owner."""
    import ray

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get_actor(actor_name, namespace=driver.COORDINATOR_NAMESPACE)
        except ValueError:
            return
        time.sleep(0.5)
    raise AssertionError(f"{actor_name} outlived its driver")


@pytest.mark.slow
def test_raygrow_train_skips_a_corrupt_newest_checkpoint(ray_local, tiny_config, tmp_path):
    config = tiny_config("corrupted",
                         train={"tokens": 6 * 512, "log_rows": True, "deterministic": False,
                                             "stop_after": 4})
    run_dir = Path(config.run_dir)
    driver.train(config, show_progress=False)
    newest = run_dir / "stage-0" / checkpoint.dir_name(4)
    weights = newest / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit of the last weight: same size, other bytes
    weights.write_bytes(bytes(data))
    plan = write_plan(tiny_config("corrupted", train={"tokens": 6 * 512, "log_rows": True,
                                                      "deterministic": False}),
                      tmp_path / "plan.yaml")
    process = launch(plan, ray_local)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output[-3000:]
    assert [r["step"] for r in records(run_dir) if r.get("event") == "resume"] == [2]
    trained = rows(run_dir)
    assert len(trained) == len(set(trained)) == 6 * config.batch_rows


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs of this test's own, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_during_a_save_is_one_clear_error_and_keeps_the_previous_checkpoint(
        ray_local, tiny_config, small_disk):
    from raygrow.errors import RaygrowError

    config = tiny_config("full-disk", storage=str(small_disk),
                         train={"tokens": 40 * 512, "deterministic": False, "val_every": 1000},
                         checkpoint={"every_steps": 1, "keep": 100})
    with pytest.raises(RaygrowError) as failed:
        driver.train(config, show_progress=False)
    assert "No space left on device" in str(failed.value) and "\n" not in str(failed.value)
    stage = small_disk / "full-disk" / "stage-0"
    newest_good = checkpoint.latest_valid(stage)  # partial leftovers are skipped, never loaded
    assert newest_good is not None
    state, meta = checkpoint.load(newest_good)
    assert meta["step"] >= 1 and state.params
