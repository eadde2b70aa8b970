"""Which training segments each mode runs for versions v1..vn, and what they cost. Pure: no Ray.

A segment is one stage of the run (raygrow.versions.runner makes each a `StageSpec` for the
coordinator), trained on one dataset from its init checkpoint's step to `end`. Steps count within
the segment's dataset, and every path through a version takes that version's rows in stream order,
each row once per epoch: a segment that starts from a checkpoint mid-version continues at its stream
position.

path_switching (arXiv 2410.04103), version k with S_k steps and d_k = decay_steps(S_k):
    main/vk-head   main path, steps [0, S_k - d_k) of version k at peak LR (after the first warm-up)
    release/vk     branch from the head's checkpoint, steps [S_k - d_k, S_k) of the same rows,
                   LR decaying linearly from peak to the minimum: version k's release
    main/vk-tail   main path again, the same rows at peak LR, ending at the version boundary; it
                   is trained when version k+1 arrives, so the latest version's tail is not paid for
from_scratch: release/vk trains a fresh model on versions 1..k (S_1 + … + S_k steps), full schedule.
continual:    release/vk continues from release/v(k-1) on version k (S_k steps), full schedule
              (warm-up and decay again).
"""

from __future__ import annotations

from dataclasses import dataclass

from raygrow.config import TrainConfig
from raygrow.train.lr import LRSegment

MAIN, BRANCH, SCRATCH, CONTINUAL = "main", "branch", "from_scratch", "continual"


@dataclass(frozen=True)
class Segment:
    name: str  # directory under the run directory, e.g. "main/v1-head", "release/v1"
    role: str  # MAIN, BRANCH, SCRATCH or CONTINUAL
    version: int  # the version it is paid for (0-based): tails count towards the next version
    data: int  # trains on version `data`'s rows (0-based) ...
    cumulative: bool  # ... or, when True, on versions 0..data together
    shape: int  # the version whose model shape it trains
    start: int  # its init checkpoint's step: 0 unless it continues a segment mid-version
    end: int  # the step it trains to
    init: str | None  # the segment whose final checkpoint it starts from; None = fresh weights
    rebase: bool  # the init is from another dataset: step and stream position restart at 0
    lr: LRSegment  # main path: constant at peak after the first warm-up; branch: a linear decay
    #                to the minimum over its steps; from_scratch and continual: train.schedule
    release: bool  # its final checkpoint is exported as version `version`'s release

    @property
    def steps(self) -> int:
        return self.end - self.start


def decay_steps(steps: int, decay_fraction: float) -> int:
    """Branch length: the decay share of a version's steps, at least one step, at most all."""
    return min(steps, max(1, round(decay_fraction * steps)))


def plan_segments(mode: str, steps: list[int], decay_fraction: float,
                  rewarm: frozenset[int] = frozenset(),
                  train: TrainConfig | None = None) -> list[Segment]:
    """The segments of a run, in training order. `steps[k]`: steps of version k on its own data;
    `rewarm`: versions at which the main path re-warms its LR (a growth with LR policy restart);
    `train`: peak and minimum LR, warm-up and schedule (default: TrainConfig's)."""
    train = train or TrainConfig()
    if mode == "from_scratch":
        return [Segment(f"release/v{k + 1}", SCRATCH, k, k, True, k, 0, sum(steps[:k + 1]),
                        None, False,
                        LRSegment.of(train, sum(steps[:k + 1])), True) for k in range(len(steps))]
    if mode == "continual":
        return [Segment(f"release/v{k + 1}", CONTINUAL, k, k, False, k, 0, steps[k],
                        f"release/v{k}" if k else None, k > 0, LRSegment.of(train, steps[k]), True)
                for k in range(len(steps))]
    return _path_switching(steps, decay_fraction, rewarm, train)


def _path_switching(steps: list[int], decay_fraction: float, rewarm: frozenset[int],
                    train: TrainConfig) -> list[Segment]:
    segments: list[Segment] = []
    boundary: str | None = None  # the main path's segment that ends at the last version boundary
    # per version: (init, rebase) of its branch and tail
    branch_points: list[tuple[str | None, bool]] = []
    warm_from = 0  # the global step where the main path's current LR segment (warm-up) starts
    main_lrs = []
    for k, total in enumerate(steps):
        offset = sum(steps[:k])  # main-path steps before this version: the LR schedule's clock
        warm_from = offset if k in rewarm else warm_from
        # The main path's clock runs on across versions; its one warm-up is at warm_from.
        main_lrs.append(LRSegment.of(train, offset + total - warm_from, schedule="constant",
                                     offset=offset - warm_from))
        branch_at = total - decay_steps(total, decay_fraction)
        if k > 0:  # the previous version's tail: paid for now, when the new version arrives
            init, rebase = branch_points[k - 1]
            boundary = f"main/v{k}-tail"
            segments.append(Segment(boundary, MAIN, k, k - 1, False, k - 1,
                                    _branch_start(segments, k - 1),
                                    steps[k - 1], init, rebase, main_lrs[k - 1], False))
        branch_points.append((boundary, k > 0))
        if branch_at > 0:
            segments.append(Segment(f"main/v{k + 1}-head", MAIN, k, k, False, k, 0, branch_at,
                                    boundary, k > 0,
                                    main_lrs[k], False))
            branch_points[k] = (segments[-1].name, False)
        init, rebase = branch_points[k]
        # The branch starts at its version's step branch_at and decays linearly to the minimum.
        branch_lr = LRSegment.of(train, total - branch_at, schedule="wsd", warmup=False,
                                 offset=-branch_at, decay_fraction=1.0)
        segments.append(Segment(f"release/v{k + 1}", BRANCH, k, k, False, k, branch_at, total,
                                init, rebase,
                                branch_lr, True))
    return segments


def _branch_start(segments: list[Segment], data: int) -> int:
    """Where version `data`'s branch starts (its tail starts there too)."""
    return next(s.start for s in segments if s.role == BRANCH and s.data == data)


def plan_cost(segments: list[Segment], versions: int, flops_per_token: list[float],
              batch_tokens: int,
              only: set[str] | None = None) -> list[dict]:
    """Per version: the steps, tokens and training FLOPs of the segments it pays for, and the
    running totals. `flops_per_token[k]`: version k's shape; `only`: count just these roles."""
    rows, total = [], {"steps": 0, "tokens": 0, "flops": 0.0}
    for k in range(versions):
        cost = {"steps": 0, "tokens": 0, "flops": 0.0}
        for segment in segments:
            if segment.version == k and (only is None or segment.role in only):
                cost["steps"] += segment.steps
                cost["tokens"] += segment.steps * batch_tokens
                cost["flops"] += segment.steps * batch_tokens * flops_per_token[segment.shape]
        total = {key: total[key] + cost[key] for key in total}
        rows.append({**cost, "cumulative": dict(total)})
    return rows
