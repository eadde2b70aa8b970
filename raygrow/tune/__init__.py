"""Sweeps: Ray Tune over growth timing d and growth factor g at a fixed FLOP budget.

    result = sweep("jobs/plans/tiny.yaml", space={"d": [0.1, 0.3], "g": [2, 4]}, flop_budget=2e12,
                   name="tiny-sweep")
    print(result.table)            # every trial; also <storage>/<name>/trials.csv and trials.md
    result.best_plan               # best_plan.yaml, which `raygrow train` runs

Each trial is a growth run of the coordinator (`raygrow.driver.train`); ASHA compares trials on
validation loss at equal cumulative training FLOPs. `raygrow tune SWEEP.yaml` is the same from
a file.
"""

from raygrow.tune.budget import Trial, make_trial, make_trials
from raygrow.tune.config import AshaConfig, SpaceConfig, SweepConfig, load_sweep, sweep_config

_RUNNER = ("SweepResult", "run_sweep", "sweep")


def __getattr__(name: str):
    # Ray Tune is imported on first use only: every `raygrow` command imports this package.
    if name in _RUNNER:
        from raygrow.tune import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'raygrow.tune' has no attribute {name!r}")

__all__ = ["AshaConfig", "SpaceConfig", "SweepConfig", "SweepResult", "Trial", "load_sweep",
           "make_trial",
           "make_trials", "run_sweep", "sweep", "sweep_config"]
