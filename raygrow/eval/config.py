"""EvalConfig: which tasks, shots, items and stages an evaluation covers.

Used as the `eval:` section of a plan (RunConfig.eval) and built from `raygrow eval`'s options.
IQ task names and shot counts are checked here; `lm-eval:NAME` tasks need lm-eval installed and
their data present, which `raygrow.eval.harness.check_tasks` checks before any work.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from raygrow.config.binding import require
from raygrow.eval.tasks import SUITE_VERSION, TASKS

LM_EVAL_PREFIX = "lm-eval:"  # a task of lm-evaluation-harness, e.g. lm-eval:arc_easy


@dataclass
class EvalConfig:
    """The evaluation of a run's exports (or of one export)."""

    tasks: list[str] = field(default_factory=lambda: list(TASKS))  # IQ tasks and/or lm-eval:NAME
    shots: int | None = None  # few-shot pairs per item; None = each task's default
    limit: int = 50  # items per task (lm-eval: documents per task)
    seed: int = 1234  # IQ items are drawn from it (training a model on the generators: use another)
    stages: str | list[int] = "all"  # which plan stages' exports are evaluated: "all" or indices
    grown: bool = False  # also evaluate each grown init (just after growth; just before growth is
    #                     the previous stage's export)
    cpus: float = 1.0  # CPUs each evaluation task declares on the cluster
    max_new_tokens: int = 48  # longest greedy generation (IQ answers are shorter)
    lm_eval_include: str | None = None  # a directory of local lm-eval task YAMLs (lm-eval's
    #                                     --include_path), e.g. from --write-lm-eval-tasks

    def __post_init__(self) -> None:
        require(bool(self.tasks), "tasks", "must name at least one task")
        for index, name in enumerate(self.tasks):
            if name.startswith(LM_EVAL_PREFIX):
                require(len(name) > len(LM_EVAL_PREFIX), f"tasks[{index}]",
                        "lm-eval: needs a task name, e.g. lm-eval:arc_easy")
                continue
            require(name in TASKS, f"tasks[{index}]",
                    f"unknown task {name!r} (IQ tasks: {', '.join(TASKS)}; or lm-eval:NAME)")
            most = TASKS[name].max_shots
            require(self.shots is None or self.shots <= most, "shots",
                    f"{self.shots} is more than task {name} has room for ({most}); lower --shots")
        require(len(set(self.tasks)) == len(self.tasks), "tasks", "names a task twice")
        require(self.shots is None or self.shots >= 0, "shots", f"must be ≥ 0, got {self.shots}")
        require(self.limit >= 1, "limit", f"must be ≥ 1, got {self.limit}")
        require(self.stages == "all" or isinstance(self.stages, list), "stages",
                f"must be 'all' or a list of stage indices, got {self.stages!r}")
        require(self.stages == "all" or all(s >= 0 for s in self.stages), "stages",
                "stage indices must be ≥ 0")
        require(self.cpus > 0, "cpus", f"must be > 0, got {self.cpus}")
        require(self.max_new_tokens >= 1, "max_new_tokens",
                f"must be ≥ 1, got {self.max_new_tokens}")

    @property
    def iq_tasks(self) -> list[str]:
        return [name for name in self.tasks if not name.startswith(LM_EVAL_PREFIX)]

    @property
    def lm_eval_tasks(self) -> list[str]:
        return [name[len(LM_EVAL_PREFIX):] for name in self.tasks
                if name.startswith(LM_EVAL_PREFIX)]

    def shots_of(self, name: str) -> int:
        return TASKS[name].default_shots if self.shots is None else self.shots

    def evaluates_stage(self, index: int) -> bool:
        return self.stages == "all" or index in self.stages

    def key(self) -> dict:
        """What decides the scores of an export (a recorded evaluation with the same key is
        not redone on a rerun)."""
        return {"suite": SUITE_VERSION, "tasks": list(self.tasks), "shots": self.shots,
                "limit": self.limit, "seed": self.seed, "max_new_tokens": self.max_new_tokens,
                "lm_eval_include": self.lm_eval_include}
