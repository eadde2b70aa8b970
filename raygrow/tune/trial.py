"""One trial of a sweep: a Tune function (the Ray Train v2 pattern: a driver function per trial)
that launches the trial's growth run and reports validation loss against cumulative training
FLOPs to Tune as the run writes them, so that ASHA can stop it.

The growth run is `raygrow train <plan>` in a child process that joins the same cluster: its own
driver and Ray job, running the coordinator as any run does. That is what makes a stopped trial
clean up. When ASHA stops a trial (or the sweep is interrupted), Tune ends the trial's actor, the
child is killed with it (parent-death signal), and Ray ends the child's job: its coordinator,
stage trainer and workers, and the workers' placement group. (Within one long-lived job, a killed
trainer's placement group would outlive it and hold its CPUs until the sweep ends.)

The trial's own actor reserves no CPU: the stage trainers (TorchTrainer) reserve the workers'
CPUs, so trials run side by side exactly when the cluster has room for their workers.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import ray
from ray import tune

from raygrow.errors import RaygrowError
from raygrow.tune.budget import trial_key

# The trial function's own actor: memory only, no CPU (a Tune trial must reserve something).
TRIAL_RESOURCES = {"CPU": 0, "memory": 64 * 1024**2}
POLL_S = 1.0  # how often the trial looks for new validation results
PR_SET_PDEATHSIG = 1  # prctl(2): signal this process when the thread that started it ends

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True) if sys.platform == "linux" else None


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: only a foreign call resolved before the fork."""
    if _libc is not None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def validations(run_dir: Path, stages: int) -> list[dict]:
    """Every validation record of the run so far, in training order, with its stage, from the
    run directory's `stage-<k>/metrics.jsonl` (README: the run directory). Reads only complete
    lines: the run appends to these files while this reads them."""
    records = []
    for index in range(stages):
        path = run_dir / f"stage-{index}" / "metrics.jsonl"
        text = path.read_text() if path.exists() else ""
        for line in text.splitlines(keepends=True):
            if not line.endswith("\n") or not line.strip():
                continue
            record = json.loads(line)
            if "val_loss" in record and "event" not in record:
                records.append({**record, "stage": index})
    return records


def _result(record: dict, complete: bool) -> dict:
    return {"flops": float(record["flops"]), "val_loss": float(record["val_loss"]), "tokens": record["tokens"],
            "stage": record["stage"], "step": record["step"], "complete": complete}


def _launch(run: dict) -> subprocess.Popen:
    """`raygrow train <plan>` joined to this cluster; output to <sweep>/runs/<run>.log."""
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
           "RAYGROW_AUTOSCALING": "1" if run["autoscaling"] else "0"}
    env.pop("RAYGROW_FAULT", None)  # a sweep's test hook is not the run's
    with open(run["log"], "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "raygrow.cli", "train", run["plan"], "--quiet"],
                                stdout=log, stderr=subprocess.STDOUT, env=env, preexec_fn=_die_with_parent)


def _failure(run: dict, returncode: int) -> RaygrowError:
    lines = [line for line in Path(run["log"]).read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("raygrow: error:")]
    reason = (errors or lines or [f"exit status {returncode}"])[-1]
    return RaygrowError(f"growth run {Path(run['run_dir']).name} failed: {reason} (log: {run['log']})")


def run_trial(params: dict, runs: dict[str, dict]) -> None:
    """Tune's trainable. `params` holds the trial's d and g; `runs` maps each trial's key to its
    growth run: `plan` (YAML path), `run_dir`, `log`, `stages`, `final_step` (the final stage's
    last step) and `autoscaling`."""
    run = runs[trial_key(params["d"], params["g"])]
    run_dir, stages = Path(run["run_dir"]), run["stages"]
    process = _launch(run)
    reported = -1.0  # cumulative FLOPs of the last result reported
    while True:
        finished = process.poll() is not None  # read the metrics once more after the run ends
        for record in validations(run_dir, stages):
            # The final step is reported once the run has finished (exports written), below.
            final = record["stage"] == stages - 1 and record["step"] >= run["final_step"]
            if record["flops"] > reported and not final:
                tune.report(_result(record, complete=False))
                reported = record["flops"]
        if finished:
            break
        try:
            process.wait(timeout=POLL_S)
        except subprocess.TimeoutExpired:
            pass
    if process.returncode != 0:
        raise _failure(run, process.returncode)
    summary = json.loads((run_dir / "summary.json").read_text())
    last = validations(run_dir, stages)[-1]
    tune.report({**_result(last, complete=summary["complete"]), "flops": float(summary["total_flops"])})
