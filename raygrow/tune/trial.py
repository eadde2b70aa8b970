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
import dataclasses
import json
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import ray
from ray import tune

from raygrow import storage
from raygrow.config import S3Config
from raygrow.config.run import stage_name
from raygrow.errors import RaygrowError
from raygrow.train.metrics import METRICS_FILE, read_jsonl
from raygrow.train.records import StepRecord, steps
from raygrow.tune.budget import trial_key

# The trial function's own actor: memory only, no CPU (a Tune trial must reserve something).
TRIAL_RESOURCES = {"CPU": 0, "memory": 64 * 1024**2}
POLL_S = 1.0  # how often the trial looks for new validation results
PR_SET_PDEATHSIG = 1  # prctl(2): signal this process when the thread that started it ends

_libc = (ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
         if sys.platform == "linux" else None)


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: only a foreign call resolved before the fork."""
    if _libc is not None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class TrialLaunch:
    """What a trial needs to launch and follow its growth run (paths local or s3://)."""

    plan: str  # the trial's plan, kept in the sweep directory (runs/<run>.yaml)
    plan_text: str  # its YAML, handed to `raygrow train` through a local file
    run_dir: str
    log: str  # runs/<run>.log: the growth run's output
    stages: int
    final_step: int  # the final stage's last step
    autoscaling: bool
    s3: S3Config


def validations(run_dir: str, stages: int) -> list[StepRecord]:
    """Every validation record of the run so far, in training order, tagged with its stage, from
    the run directory's `stage-<k>/metrics.jsonl` (README: the run directory). The run appends to
    these files while this reads them: a torn last line is skipped, not read."""
    found = []
    for index in range(stages):
        for record in steps(read_jsonl(storage.join(run_dir, stage_name(index), METRICS_FILE))):
            if record.val_loss is not None:
                found.append(dataclasses.replace(record, stage=index))
    return found


def _result(record: StepRecord, complete: bool) -> dict:
    return {"flops": float(record.flops), "val_loss": float(record.val_loss),
            "tokens": record.tokens,
            "stage": record.stage, "step": record.step, "complete": complete}


def _launch(run: TrialLaunch, work: Path) -> tuple[subprocess.Popen, Path]:
    """`raygrow train <plan>` joined to this cluster, from a local copy of the plan; its output
    goes to a local log (copied to the sweep directory's runs/<run>.log when it is remote)."""
    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address,
           "RAYGROW_AUTOSCALING": "1" if run.autoscaling else "0"}
    env.pop("RAYGROW_FAULT", None)  # a sweep's test hook is not the run's
    plan = work / "plan.yaml"
    plan.write_text(run.plan_text)
    log = Path(run.log) if not storage.is_remote(run.log) else work / "run.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as handle:
        process = subprocess.Popen([sys.executable, "-m", "raygrow.cli", "train",
                                    str(plan), "--quiet"],
                                   stdout=handle, stderr=subprocess.STDOUT, env=env,
                                   preexec_fn=_die_with_parent)
    return process, log


def _failure(run: TrialLaunch, log: Path, returncode: int) -> RaygrowError:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("raygrow: error:")]
    reason = (errors or lines or [f"exit status {returncode}"])[-1]
    return RaygrowError(f"growth run {storage.base_name(run.run_dir)} failed: {reason} (log: "
                        f"{run.log})")


def run_trial(params: dict, runs: dict[str, TrialLaunch]) -> None:
    """Tune's trainable. `params` holds the trial's d and g; `runs` maps each trial's key to its
    growth run."""
    run = runs[trial_key(params["d"], params["g"])]
    storage.configure_s3(run.s3.endpoint_url, run.s3.region)
    with tempfile.TemporaryDirectory(prefix="raygrow-trial-") as work:
        process, log = _launch(run, Path(work))
        try:
            _follow(run, process)
        finally:
            if storage.is_remote(run.log):
                storage.write_bytes(run.log, log.read_bytes())
        if process.returncode != 0:
            raise _failure(run, log, process.returncode)
    summary = json.loads(storage.read_bytes(storage.join(run.run_dir, "summary.json")))
    last = validations(run.run_dir, run.stages)[-1]
    tune.report({**_result(last, complete=summary["complete"]),
                 "flops": float(summary["total_flops"])})


def _follow(run: TrialLaunch, process: subprocess.Popen) -> None:
    """Report the run's validation losses to Tune as it writes them, until it ends."""
    reported = -1.0  # cumulative FLOPs of the last result reported
    while True:
        finished = process.poll() is not None  # read the metrics once more after the run ends
        for record in validations(run.run_dir, run.stages):
            # The final step is reported once the run has finished (exports written), below.
            final = record.stage == run.stages - 1 and record.step >= run.final_step
            if record.flops > reported and not final:
                tune.report(_result(record, complete=False))
                reported = record.flops
        if finished:
            return
        try:
            process.wait(timeout=POLL_S)
        except subprocess.TimeoutExpired:
            pass
