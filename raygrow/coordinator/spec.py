"""Typed stage specs: the one thing the coordinator runs.

A growth plan, a versions plan and a sweep trial all compile to a list of `StageSpec`s in training
order. A spec is one ordinary training stage (one Ray Train `fit()`) in its own directory under
the run directory, with its model, steps, data, workers, LR segment, where its weights come from
(`InitSource`) and where its final checkpoint is exported. The coordinator knows nothing else
about plans or versions.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass, field
from typing import Any, Literal

from raygrow import storage
from raygrow.config import GrowthConfig, RunConfig, Shape, WorkerRange
from raygrow.config.binding import require
from raygrow.config.growth import lr_policy
from raygrow.config.run import stage_name
from raygrow.grow.depth import layer_sources
from raygrow.model import LAYER_PREFIX, param_shapes
from raygrow.train.lr import LRSegment

INIT_DIR = "init"  # <spec>/init: the grown, rebased or converted checkpoint a spec starts from
EXPORT_DIR = "export"


@dataclass(frozen=True)
class InitSource:
    """Where a spec's weights (and optimizer state) come from."""

    kind: Literal["fresh", "checkpoint", "grow", "pretrained"]
    spec: str | None = None  # checkpoint / grow: the spec whose final checkpoint it starts from
    path: str | None = None  # pretrained: the Hugging Face model directory (local or s3://)
    rebase: bool = False  # that spec trained other data: step and stream position restart at 0
    #                       (weights, AdamW moments, step count and token/FLOP counters are kept)
    growth: GrowthConfig | None = None  # grow: how (the source's model is that spec's)
    seed: int = 0  # grow: new weights, symmetry noise and unit choices are drawn from it
    lr_policy: str | None = None  # grow in a plan: restart | rewind | continue (for the summary;
    #                               the spec's LR segment already follows it)

    @property
    def writes_init(self) -> bool:
        """Whether the coordinator writes `<spec>/init` before the spec trains."""
        return self.kind in ("grow", "pretrained") or self.rebase


@dataclass
class StageSpec:
    """One stage of any run: trained by the coordinator as one Ray Train `fit()`."""

    name: str  # its directory under the run directory, e.g. "stage-1", "main/v2-head"
    config: RunConfig  # the stage as a single-stage run: model, steps (`total_steps`), data, batch
    dataset: str  # the packed dataset directory it trains on
    workers: int | WorkerRange  # a fixed count, or elastic (min, max)
    lr: LRSegment  # its part of its learning-rate schedule
    init: InitSource = field(default_factory=lambda: InitSource("fresh"))
    exports: tuple[str, ...] = ()  # directories (under the run directory) its final checkpoint
    #                                is exported to as Hugging Face models
    start_step: int = 0  # the step of the checkpoint it starts from (a versions tail continues
    #                      its version part-way)
    trainable: tuple[str, ...] | None = None  # the parameters it trains (None: all); the rest
    #                                           are frozen (`train.trainable`)

    @property
    def model(self) -> Shape:
        return self.config.model

    @property
    def end_step(self) -> int:
        return self.config.total_steps

    def directory(self, run_dir: str) -> str:
        return storage.join(run_dir, *self.name.split("/"))

    def fingerprint(self) -> dict[str, Any]:
        """What a resume of this spec must find unchanged: its data (the dataset directory's key
        covers source files, tokenizer, seq_len, split and shard size), row order, batch, model,
        steps, optimizer, schedule and init. Worker count, ZeRO stage, logging, checkpoint
        intervals and failure handling may change between invocations."""
        train = self.config.train
        return json_safe({
            "dataset": storage.base_name(self.dataset),
            "shuffle_seed": self.config.data.shuffle_seed,
            "shuffle_window": self.config.data.shuffle_window,
            "batch_tokens": train.batch_tokens,
            "model": dataclasses.asdict(self.model),
            "steps": [self.start_step, self.end_step],
            "seed": train.seed,
            "optimizer": {"weight_decay": train.weight_decay, "beta1": train.beta1,
                          "beta2": train.beta2, "grad_clip": train.grad_clip,
                          "precision": train.precision},
            "lr": dataclasses.asdict(self.lr),
            "init": dataclasses.asdict(self.init),
            **({"trainable": list(self.trainable)} if self.trainable is not None else {}),
        })


def json_safe(value: Any) -> Any:
    """`value` as JSON would give it back (tuples as lists), so fingerprints compare as stored."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def plan_specs(config: RunConfig, dataset: str) -> list[StageSpec]:
    """A growth plan's stages as specs: `stage-<k>` in order, each grown from the one before.

    The LR segments follow the plan: one schedule over every stage, and at a growth whose LR
    policy (`growth.lr`, else what its operators recommend) is `restart` or `rewind` a new
    schedule over the rest of the plan."""
    steps = config.stage_steps
    specs: list[StageSpec] = []
    segment = LRSegment.of(config.train, sum(steps))
    for index, stage in enumerate(config.plan_stages):
        if index > 0:
            policy = lr_policy(stage.growth, config.plan_stages[index - 1].shape, stage.shape)
            segment = segment.after_growth(policy, steps[index - 1], sum(steps[index:]),
                                           config.train.warmup_steps)
        if index:
            init = InitSource("grow", spec=stage_name(index - 1), growth=stage.growth,
                              seed=config.train.seed + index, lr_policy=policy)
        else:
            init = InitSource("pretrained", path=stage.init) if stage.init else InitSource("fresh")
        last = index == len(steps) - 1
        specs.append(StageSpec(
            name=stage_name(index), config=config.stage_config(index), dataset=dataset,
            workers=config.plan_stages[index].workers or config.train.workers,
            lr=segment, init=init,
            exports=(f"{stage_name(index)}/{EXPORT_DIR}",) + ((EXPORT_DIR,) if last else ()),
            trainable=trainable_params(config, index)))
    return specs


def trainable_params(config: RunConfig, index: int) -> tuple[str, ...] | None:
    """The parameters stage `index` trains (None: all), from `stages[i].trainable`, else
    `train.trainable`. ConfigError naming that field when it selects nothing."""
    stage = config.plan_stages[index]
    choice = stage.trainable or config.train.trainable
    where = f"stages[{index}].trainable" if stage.trainable else "train.trainable"
    if choice == "all" or stage.tokens == 0:
        return None
    names = list(param_shapes(stage.shape, 2))  # the names do not depend on the vocabulary
    if choice == "new_blocks":
        new = _new_blocks(config, index)
        require(bool(new), where, f"new_blocks: stage {index} has no new blocks (its growth must "
                "add some: depth_op zero or masked)")
        return tuple(name for name in names if _layer_of(name) in new)
    chosen = []
    for pattern in choice:
        matched = [name for name in names if fnmatch.fnmatchcase(name, pattern)]
        require(bool(matched), where, f"{pattern!r} matches no parameter of stage {index} "
                "(names as Hugging Face has them, e.g. model.layers.0.mlp.up_proj.weight)")
        chosen += matched
    return tuple(name for name in names if name in set(chosen))


def _new_blocks(config: RunConfig, index: int) -> set[int]:
    growth = config.plan_stages[index].growth
    if index == 0 or growth is None or growth.depth_op is None:
        return set()
    before, after = config.plan_stages[index - 1].shape, config.plan_stages[index].shape
    sources = layer_sources(growth.depth_op, before.layers, after.layers, growth.layer_order,
                            growth.every)
    return {layer for layer, source in enumerate(sources) if source is None}


def _layer_of(name: str) -> int | None:
    return int(name[len(LAYER_PREFIX):].split(".")[0]) if name.startswith(LAYER_PREFIX) else None
