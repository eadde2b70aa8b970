"""The sweep file: a base plan, a FLOP budget and the grid of growth timings d and factors g.

    name: tiny-sweep            # <storage>/<name> is the sweep directory; rerunning a name resumes
    storage: ./runs/sweeps
    plan: ../plans/tiny.yaml    # base plan: a path (relative to this file) or an inline plan
    flop_budget: 2.0e12         # training FLOPs of every trial, small and large stage together
    space:
      d: [0.1, 0.3]             # small-model tokens (≥ 1) or the budget's share spent on it (< 1)
      g: [2, 4]                 # final layers / small layers
    concurrency: 2              # trials at once; null = as many as the cluster has CPUs for
    asha: {grace: 0.25, reduction_factor: 2}
    overrides: [train.val_every=4]  # changes to the base plan, as `raygrow train --set`

Validated like run configs (`raygrow.config.from_dict`): unknown keys and bad values stop with
one line naming the field, before anything runs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raygrow import storage
from raygrow.config import (
    RunConfig,
    apply_override,
    from_dict,
    load_config,
    read_yaml,
    require,
    run_config,
)
from raygrow.errors import ConfigError


def _check_grid(name: str, values: list[float], low: float, low_text: str) -> None:
    require(bool(values), name, "must list at least one value")
    for index, value in enumerate(values):
        require(value > low, f"{name}[{index}]", f"must be {low_text}, got {value:g}")
        require(value not in values[:index], f"{name}[{index}]", f"{value:g} is listed twice")


@dataclass
class SpaceConfig:
    """The grid searched: every d with every g."""

    d: list[float]  # growth timing: tokens for the small model (≥ 1), or the share of the FLOP
    #                 budget spent on it (< 1, e.g. 0.25); rounded down to whole batches
    # growth factor: final layers / small layers (G_stack: 4); must give whole layers
    g: list[float]

    def __post_init__(self) -> None:
        _check_grid("d", self.d, 0, "> 0 (tokens, or a share of the budget below 1)")
        _check_grid("g", self.g, 1, "> 1 (final layers / small layers)")


@dataclass
class AshaConfig:
    """Asynchronous successive halving on cumulative training FLOPs (the trials' common clock)."""

    grace: float = 0.25  # first rung: a share of the budget (< 1) or FLOPs (≥ 1); no stop before it
    reduction_factor: float = 2.0  # at each rung, trials outside the best 1/reduction_factor stop
    brackets: int = 1  # ASHA brackets (1: every trial may be stopped from the first rung on)

    def __post_init__(self) -> None:
        require(self.grace > 0, "grace", f"must be > 0, got {self.grace:g}")
        require(self.reduction_factor > 1, "reduction_factor",
                f"must be > 1, got {self.reduction_factor:g}")
        require(self.brackets >= 1, "brackets", f"must be ≥ 1, got {self.brackets}")

    def grace_flops(self, budget: float) -> float:
        return self.grace * budget if self.grace < 1 else self.grace


@dataclass
class SweepConfig:
    """A whole sweep: one YAML file, or the arguments of `raygrow.tune.sweep`."""

    plan: str | dict[str, Any]  # base plan: its final stage is the target model and its data,
    #                             train and checkpoint sections are every trial's
    flop_budget: float  # training FLOPs per trial (6·N_non-embedding + 12·L·d·T per token)
    space: SpaceConfig
    name: str = "sweep"  # sweep directory name under storage; rerunning the same name resumes
    storage: str = "./runs/sweeps"  # a local path or s3://bucket/prefix
    concurrency: int | None = None  # trials at once; None = as many as the cluster has CPUs for
    asha: AshaConfig = field(default_factory=AshaConfig)
    overrides: list[str] = field(default_factory=list)  # `key=value` changes to the base plan, as
    # `raygrow train --set` (e.g. train.val_every=4)

    def __post_init__(self) -> None:
        require(isinstance(self.plan, (str, dict)) and bool(self.plan), "plan",
                 "must be a plan file path or an inline plan mapping")
        require(self.flop_budget > 0, "flop_budget", f"must be > 0, got {self.flop_budget:g}")
        require(bool(self.name) and "/" not in self.name and not self.name.startswith("."), "name",
                 f"must be a plain directory name, got {self.name!r}")
        require(bool(self.storage), "storage",
                "must be a path every node mounts, or an s3://bucket/prefix")
        require(self.concurrency is None or self.concurrency >= 1, "concurrency",
                 f"must be ≥ 1 (or null), got {self.concurrency}")
        require(self.asha.grace_flops(self.flop_budget) < self.flop_budget, "asha.grace",
                 f"the first rung ({self.asha.grace_flops(self.flop_budget):g} FLOPs) must come "
                 f"before the end of the budget ({self.flop_budget:g})")

    @property
    def sweep_dir(self) -> str:
        """`<storage>/<name>`, canonical (absolute locally): trials read it from other processes."""
        return storage.canonical(storage.join(self.storage, self.name))


def sweep_config(raw: dict[str, Any]) -> SweepConfig:
    """Validate a raw sweep mapping; raises ConfigError naming the field."""
    require(isinstance(raw, dict), "", "a sweep must be a mapping of fields")
    return from_dict(SweepConfig, raw)


def load_sweep(path: str | Path) -> tuple[SweepConfig, Path]:
    """Read a sweep file; returns it and the directory its relative plan path starts from."""
    return sweep_config(read_yaml(path, "sweep")), Path(path).parent


def base_plan(config: SweepConfig, relative_to: Path) -> RunConfig:
    """The base plan as a RunConfig; errors name the field under `plan`."""
    try:
        if isinstance(config.plan, str):
            path = Path(config.plan)
            return load_config(path if path.is_absolute() else relative_to / path, config.overrides)
        raw = copy.deepcopy(config.plan)
        for assignment in config.overrides:
            apply_override(raw, assignment)
        return run_config(raw)
    except ConfigError as error:
        raise error.under("plan") from None
