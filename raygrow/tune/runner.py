"""`sweep`: Ray Tune over growth timing d and factor g at a fixed FLOP budget, ASHA on FLOPs.

Order matters (invariant 5): the sweep, the base plan and every trial's plan are validated
before Ray starts or anything is written. The sweep directory `<storage>/<name>/` holds Tune's
experiment state, each trial's plan, log and growth run (`runs/<run>.yaml`, `runs/<run>.log`,
`runs/<run>/`), and the results (trials.csv, trials.md, sweep.png, best_plan.yaml). Rerunning
the same name continues: Tune restores its experiment (finished trials are kept, not rerun), and
a trial that was cut off continues its growth run from that run's newest checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler

from raygrow import driver, storage
from raygrow.config import RunConfig
from raygrow.errors import ConfigError, RaygrowError
from raygrow.tune.budget import Trial, make_trials, trial_key
from raygrow.tune.config import SweepConfig, base_plan, sweep_config
from raygrow.tune.results import (TrialRow, best_row, format_table, plan_yaml, plot_sweep, row_for,
                                  write_best_plan, write_csv)
from raygrow.tune.trial import TRIAL_RESOURCES, TrialLaunch, run_trial

log = logging.getLogger("raygrow")

SWEEP_FILE = "sweep.json"  # what the sweep directory was started with: a rerun must match it


@dataclass
class SweepResult:
    sweep_dir: str  # a local path or an s3:// URI
    rows: list[TrialRow]
    best: TrialRow | None
    best_plan: str | None  # best_plan.yaml, once a trial is complete
    interrupted: bool  # some trials have not finished: rerun the same sweep to continue

    @property
    def table(self) -> str:
        return format_table(self.rows)


def sweep(plan: RunConfig | str | Path | dict, space: dict[str, list[float]], flop_budget: float, *,
          name: str = "sweep", storage: str = "./runs/sweeps", concurrency: int | None = None,
          asha: dict[str, float] | None = None, show_progress: bool = True) -> SweepResult:
    """Search growth timing `space["d"]` × growth factor `space["g"]` for `plan`'s final model at
    `flop_budget` training FLOPs per trial. `plan` is a RunConfig, a plan file or an inline plan.
    Raises ConfigError (one line naming the field) for bad input, before any cluster work."""
    raw_plan = (plan.to_dict() if isinstance(plan, RunConfig)
                else str(plan) if isinstance(plan, Path) else plan)
    config = sweep_config({"plan": raw_plan, "space": space, "flop_budget": flop_budget,
                           "name": name,
                           "storage": storage, "concurrency": concurrency, "asha": asha or {}})
    return run_sweep(config, Path.cwd(), show_progress)


def run_sweep(config: SweepConfig, relative_to: Path, show_progress: bool = True) -> SweepResult:
    """Run (or continue) a validated sweep; its plan path is relative to `relative_to`."""
    base = base_plan(config, relative_to)
    trials = make_trials(config, base)
    for run in (runs := {trial.key: _run_config(trial, base, config.sweep_dir)
                         for trial in trials}).values():
        driver.check(run)
    sweep_dir = config.sweep_dir
    _claim(sweep_dir, config, base)
    autoscaling = driver.ensure_ray()
    from raygrow.data import prepare

    prepare(next(iter(runs.values())), show_progress=show_progress)  # once, before trials share it
    payload = {key: _launch_spec(run, sweep_dir, autoscaling) for key, run in runs.items()}
    tuner = _tuner(config, sweep_dir, trials, payload, _concurrency(config, runs), show_progress)
    try:
        tuner.fit()
    except tune.TuneError as error:
        raise RaygrowError(f"sweep {config.name} failed: "
                           f"{str(error).strip().splitlines()[0]}") from None
    return _collect(config, sweep_dir, trials)


def _run_config(trial: Trial, base: RunConfig, sweep_dir: str) -> RunConfig:
    """The trial's growth run: `<sweep>/runs/<run>`, on the base plan's prepared dataset. Paths
    are canonical (absolute): trials run in Tune's actors, whose working directory is not the
    driver's."""
    data = dataclasses.replace(trial.plan.data, cache_dir=storage.canonical(base.dataset_root))
    return dataclasses.replace(trial.plan, name=trial.run_name,
                               storage=storage.join(sweep_dir, "runs"),
                               data=data)


def _launch_spec(run: RunConfig, sweep_dir: str, autoscaling: bool) -> TrialLaunch:
    """What a trial needs to launch its growth run (see raygrow.tune.trial.run_trial); its plan is
    kept in the sweep directory as `runs/<run>.yaml`, beside the run's log."""
    plan = storage.join(sweep_dir, "runs", f"{run.name}.yaml")
    text = plan_yaml(run,
                     header=f"# A trial of sweep {storage.base_name(sweep_dir)}, run by its trial "
                                 "as `raygrow train`.\n")
    storage.write_bytes(plan, text.encode())
    return TrialLaunch(plan=plan, plan_text=text, run_dir=run.run_dir,
                       log=storage.join(sweep_dir, "runs", f"{run.name}.log"),
                       stages=len(run.stages),
                       final_step=run.stage_steps[-1], autoscaling=autoscaling, s3=run.s3)


def _claim(sweep_dir: str, config: SweepConfig, base: RunConfig) -> None:
    """Record what this sweep searches; refuse to continue a sweep of the same name that searched
    something else (Tune would silently go on with the old grid)."""
    identity = json.loads(json.dumps({"plan": base.to_dict(), "flop_budget": config.flop_budget,
                                      "space": dataclasses.asdict(config.space),
                                      "asha": dataclasses.asdict(config.asha)}))
    path = storage.join(sweep_dir, SWEEP_FILE)
    if storage.exists(path):
        if json.loads(storage.read_bytes(path)) != identity:
            raise ConfigError("name", f"sweep {config.name} in {storage.parent(sweep_dir)} was "
                              "started with another plan, space, budget or ASHA setting; pick "
                              f"another name or remove {sweep_dir}")
        return
    storage.make_dirs(sweep_dir)
    storage.write_bytes(path, json.dumps(identity, indent=1).encode())


def _concurrency(config: SweepConfig, runs: dict[str, RunConfig]) -> int:
    """Trials at once: as given, else as many as the cluster holds the largest stage's workers."""
    if config.concurrency:
        return config.concurrency
    from raygrow.train.resources import ingest_cpus, worker_resources

    total = ray.cluster_resources()
    fits = []
    for run in runs.values():
        for index, stage in enumerate(run.plan_stages):
            workers = run.worker_range(stage)[1]
            stage = run.stage_config(index)
            resources, _, _ = worker_resources(stage, workers)
            resources["CPU"] = resources.get("CPU", 0) + ingest_cpus(stage)  # its read task too
            fits += [int(total.get(name, 0) // (amount * workers))
                     for name, amount in resources.items()]
    return max(1, min(len(runs), min(fits)))


class _TrialNames:
    """Tune's trial names and directories: the trial's growth run name (g<g>-d<tokens>)."""

    def __init__(self, names: dict[str, str]):
        self.names = names

    def __call__(self, trial) -> str:
        return self.names[trial_key(trial.config["d"], trial.config["g"])]


class SweepCallback(tune.Callback):
    """Logs each trial's end; test hook: RAYGROW_FAULT=sweep_interrupt:<n> interrupts the sweep as
    Ctrl-C would (Tune saves its state and stops the running trials) once n trials have ended."""

    def __init__(self) -> None:
        self.ended = 0

    def on_trial_complete(self, iteration: int, trials: list, trial, **info: Any) -> None:
        result = trial.last_result or {}
        log.info("trial %s ended: %s at %.4g FLOPs, val loss %s", trial,
                 "complete" if result.get("complete")
                 else "stopped", result.get("flops", 0.0), result.get("val_loss"))
        self._count_end()

    def on_trial_error(self, iteration: int, trials: list, trial, **info: Any) -> None:
        self._count_end()

    def _count_end(self) -> None:
        self.ended += 1
        if os.environ.get("RAYGROW_FAULT") == f"sweep_interrupt:{self.ended}":
            log.error("RAYGROW_FAULT=sweep_interrupt:%d: interrupting the sweep on purpose",
                      self.ended)
            os.kill(os.getpid(), signal.SIGINT)


def _tuner(config: SweepConfig, sweep_dir: str, trials: list[Trial],
           payload: dict[str, TrialLaunch],
           concurrency: int, show_progress: bool) -> tune.Tuner:
    trainable = tune.with_resources(tune.with_parameters(run_trial, runs=payload), TRIAL_RESOURCES)
    path, filesystem = storage.ray_storage(sweep_dir)
    parent, _ = storage.ray_storage(storage.parent(sweep_dir))
    if tune.Tuner.can_restore(path, storage_filesystem=filesystem):
        log.info("continuing sweep %s from %s", config.name, sweep_dir)
        return tune.Tuner.restore(path, trainable, resume_unfinished=True, restart_errored=True,
                                  storage_filesystem=filesystem)
    scheduler = ASHAScheduler(time_attr="flops", max_t=config.flop_budget,
                              grace_period=config.asha.grace_flops(config.flop_budget),
                              reduction_factor=config.asha.reduction_factor,
                              brackets=config.asha.brackets)
    names = _TrialNames({trial.key: trial.run_name for trial in trials})
    return tune.Tuner(
        trainable,
        param_space={"d": tune.grid_search(config.space.d), "g": tune.grid_search(config.space.g)},
        tune_config=tune.TuneConfig(metric="val_loss", mode="min", scheduler=scheduler,
                                    max_concurrent_trials=concurrency,
                                    trial_name_creator=names, trial_dirname_creator=names),
        run_config=tune.RunConfig(name=config.name, storage_path=parent,
                                  storage_filesystem=filesystem,
                                  callbacks=[SweepCallback()], verbose=1 if show_progress else 0,
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )


def _status(trial) -> str:
    if trial.status == "ERROR":
        return "error"
    if trial.status == "TERMINATED":
        return "complete" if (trial.last_result or {}).get("complete") else "stopped"
    return "unfinished"


def _error_line(trial) -> str | None:
    if trial.status != "ERROR" or not trial.error_file or not Path(trial.error_file).exists():
        return None
    lines = [line for line in Path(trial.error_file).read_text().splitlines() if line.strip()]
    return lines[-1].strip() if lines else None


def _collect(config: SweepConfig, sweep_dir: str, trials: list[Trial]) -> SweepResult:
    """Read the experiment's trials (this session's and earlier ones') into the table and files."""
    path, filesystem = storage.ray_storage(sweep_dir)
    analysis = tune.ExperimentAnalysis(path, storage_filesystem=filesystem)
    by_key = {trial_key(t.config["d"], t.config["g"]): t for t in analysis.trials}
    rows = []
    for trial in trials:
        tuned = by_key.get(trial.key)
        if tuned is None:
            rows.append(row_for(trial, "unfinished", None, None))
        else:
            rows.append(row_for(trial, _status(tuned), tuned.last_result, _error_line(tuned)))
    write_csv(rows, storage.join(sweep_dir, "trials.csv"))
    storage.write_bytes(storage.join(sweep_dir, "trials.md"),
                        f"# Sweep {config.name}\n\n{format_table(rows)}\n".encode())
    plot_sweep(rows, storage.join(sweep_dir, "sweep.png"),
               f"{config.name}: {config.flop_budget:.3g} FLOPs per trial")
    best = best_row(rows)
    best_plan = None
    if best is not None:
        best_plan = storage.join(sweep_dir, "best_plan.yaml")
        write_best_plan(next(t for t in trials if t.run_name == best.run), best, best_plan,
                        config.name)
    return SweepResult(sweep_dir=sweep_dir, rows=rows, best=best, best_plan=best_plan,
                       interrupted=any(row.status == "unfinished" for row in rows))
