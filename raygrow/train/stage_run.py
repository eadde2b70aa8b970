"""What the workers of one stage are given: the stage's config, where it trains, from what."""

from __future__ import annotations

from dataclasses import dataclass, field

from raygrow.config import RunConfig, WorkerRange
from raygrow.grow import MaskSpec
from raygrow.train.lr import LRSegment


@dataclass
class StageRun:
    """Everything the workers of one stage are given (typed; Ray ships it as it is)."""

    config: RunConfig  # the stage as a single-stage run: its model, steps, data and batch
    run_dir: str  # the stage's directory: checkpoints, metrics.jsonl
    dataset_dir: str  # the packed dataset it trains on
    lr: LRSegment
    workers: int | WorkerRange = 1  # fixed count, or elastic (min, max)
    init_from: str | None = None  # checkpoint to start from when the stage has none of its own
    grown: bool = False  # init_from is a grown model: validate it before the first step
    fingerprint: dict = field(default_factory=dict)  # the stage's inputs, kept in its checkpoints:
    #                                                  a checkpoint of other inputs is not resumed
    masks: MaskSpec | None = None  # MSG masks to ramp in over `ramp_steps`
    ramp_steps: int = 0
    trainable: tuple[str, ...] | None = None  # the parameters trained (None: all); the rest frozen
    threads: int = 1  # torch threads per worker (set at launch from the worker's CPUs)
    read_cpus: float = 0.0  # CPUs of each Ray Data read task (set at launch, see resources)
    sink: object = field(default=None, repr=False)  # MetricsSink actor: records to the coordinator
    chained: bool = False  # trained by the worker group of an earlier stage (launch.WorkerGroup):
    #                        its checkpoints are published by rank 0, not reported to Ray Train
    #                        (whose run directory is the group's first stage's)
    fault: str | None = None  # test hook (see raygrow.train.checkpoint.fault_point)
