"""Run a versions plan: every segment (raygrow.versions.plan) through the ordinary stage machinery.

Each segment is one `fit_stage` (Ray Train + DeepSpeed) in `<run>/<segment>/`, started from its
init: fresh weights, another segment's final checkpoint, or (at a version boundary) that
checkpoint rebased onto the new version's data (step and stream position 0; weights, AdamW
moments and the token/FLOP counters kept), grown first by the coordinator's growth step when the
version has a new shape. Releases are exported as Hugging Face directories (`<run>/release/vk/export`).

`<run>/versions.json` records finished segments: rerunning the same name skips them and resumes
an unfinished one from its own newest checkpoint, and a plan extended by new versions trains
only what the new versions need (for path_switching: the previous version's main-path tail first).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from raygrow.config import RunConfig, StageConfig
from raygrow.data import Manifest
from raygrow.errors import CheckpointError, ConfigError
from raygrow.model import flops_per_token
from raygrow.train import checkpoint
from raygrow.versions.data import VersionData, check_version_sources, prepare_versions
from raygrow.versions.plan import BRANCH, Segment, plan_cost, plan_segments

log = logging.getLogger("raygrow")

STATE_FILE = "versions.json"


@dataclass
class Context:
    config: RunConfig
    run_dir: Path
    data: VersionData
    segments: dict[str, Segment]
    state: dict  # versions.json: {"done": {segment: result}, "growths": {segment: growth}}

    def save(self) -> None:
        tmp = self.run_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(self.state, indent=1))
        os.replace(tmp, self.run_dir / STATE_FILE)


def check(config: RunConfig) -> None:
    """Everything that can be checked before Ray starts or anything is written."""
    from raygrow.driver import check as check_run

    if config.versions is None:
        raise ConfigError("versions", "this config has no versions section; train it with `raygrow train`")
    for name, path in (("storage", config.storage), ("data.cache_dir", config.data.cache_dir or "")):
        if "://" in path:
            raise ConfigError(name, f"{path}: versions plans need a filesystem path for now")
    check_run(config)
    check_version_sources(config)


def run_versions(config: RunConfig, show_progress: bool = True, branches: bool = True) -> dict:
    """Train every version's release (with `branches` False, path_switching trains only its main
    path); returns summary.json's contents."""
    from raygrow.driver import ensure_ray
    from raygrow.train.stage import check_schedulable

    started = time.monotonic()
    check(config)
    autoscaling = ensure_ray()
    data = prepare_versions(config, show_progress=show_progress)
    segments = plan_segments(config.versions.mode, data.steps, config.versions.decay_fraction, _rewarm(config))
    _check_ramps(config, segments)
    run_dir = Path(config.run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / STATE_FILE
    state = json.loads(path.read_text()) if path.exists() else {"done": {}, "growths": {}, "wall_s": 0.0}
    context = Context(config, run_dir, data, {s.name: s for s in segments}, state)
    check_schedulable(config, config.train.workers, autoscaling, config.train.resource_timeout_s)
    for segment in segments:
        if segment.role == BRANCH and not branches:
            continue
        fingerprint = _fingerprint(context, segment)
        done = state["done"].get(segment.name)
        if done is not None:
            if done["fingerprint"] != fingerprint:
                raise ConfigError("versions", f"run {config.name} trained {segment.name} with other data or "
                                  "settings; keep earlier versions unchanged, or use another --name")
            continue
        result = _train_segment(context, segment)
        if result is None:  # fit() ended before the last step: the run is incomplete; a rerun continues it
            break
        state["done"][segment.name] = {**result, "fingerprint": fingerprint}
        context.save()
    state["wall_s"] += time.monotonic() - started
    context.save()
    from raygrow.versions.summary import summarise

    return summarise(context, branches)


def _rewarm(config: RunConfig) -> frozenset[int]:
    """Versions whose growth asks for an LR restart: the main path warms up again there."""
    return frozenset(index for index, spec in enumerate(config.versions.data)
                     if spec.growth is not None and spec.growth.lr == "restart")


def _check_ramps(config: RunConfig, segments: list[Segment]) -> None:
    """A masked (MSG) ramp must end inside the segment that starts from the grown model: its final
    checkpoint is what other segments start from, and it must hold the folded, mask-free model."""
    for segment in segments:
        spec = config.versions.data[segment.shape]
        grows = segment.rebase and spec.growth is not None and segment.shape == segment.data
        masked = grows and "masked" in (spec.growth.depth_op, spec.growth.width_op)
        if masked and spec.growth.ramp_steps >= segment.steps:
            raise ConfigError(f"versions.data[{segment.shape}].growth.ramp_steps",
                              f"{spec.growth.ramp_steps} steps do not end inside {segment.name} "
                              f"({segment.steps} steps); lower it below that")


def _fingerprint(context: Context, segment: Segment) -> dict:
    return {"dataset": context.data.of(segment.data, segment.cumulative), "start": segment.start,
            "end": segment.end, "init": segment.init,
            "shape": dataclasses.asdict(context.config.versions.shape_of(segment.shape, context.config.model)), "lr": segment.lr}


# ---- one segment --------------------------------------------------------------------------------


def segment_config(config: RunConfig, segment: Segment, run_dir: Path) -> RunConfig:
    """The segment as a single-stage run `<run>/<segment>`: its shape, steps and LR policy."""
    kind = segment.lr["kind"]
    schedule = {"constant": "constant", "decay": "wsd"}.get(kind, config.train.schedule)
    # "decay": WSD with the whole segment as its decay: linear from peak to the minimum, no warm-up.
    train = dataclasses.replace(config.train, tokens=segment.end * config.train.batch_tokens, stop_after=None,
                                schedule=schedule,
                                decay_fraction=1.0 if kind == "decay" else config.train.decay_fraction)
    data = dataclasses.replace(config.data, cache_dir=config.dataset_root)
    path = run_dir / segment.name
    return dataclasses.replace(config, model=config.versions.shape_of(segment.shape, config.model), stages=[], versions=None,
                               name=path.name, storage=str(path.parent), train=train, data=data)


def _train_segment(context: Context, segment: Segment) -> dict | None:
    from raygrow.train.stage import StageLaunch, fit_stage

    config = segment_config(context.config, segment, context.run_dir)
    init_from, growth = _init(context, segment)
    dataset = context.data.of(segment.data, segment.cumulative)
    log.info("versions: %s (%s) steps %d → %d on %s", segment.name, segment.role, segment.start, segment.end,
             Path(dataset).name)
    launch = StageLaunch(dataset_dir=dataset, workers=context.config.train.workers, init_from=init_from,
                         schedule={k: v for k, v in segment.lr.items() if k != "kind"},
                         masks=(growth or {}).get("masks"), ramp_steps=(growth or {}).get("ramp_steps", 0))
    records = fit_stage(config, launch)
    steps = [r for r in records if "step" in r and "event" not in r]
    if not steps or steps[-1]["step"] < segment.end:
        return None
    if segment.release:
        from raygrow.export import export_checkpoint

        final = checkpoint.latest_valid(context.run_dir / segment.name)
        export_checkpoint(final, context.run_dir / segment.name / "export", Manifest.load(dataset))
    return _result(records, growth)


def _result(records: list[dict], growth: dict | None) -> dict:
    """What the summary needs of a finished segment: its measured cost and LR trace ends."""
    steps = [r for r in records if "step" in r and "event" not in r]
    start = next((r for r in records if r.get("event") == "growth"), {"tokens": 0, "flops": 0.0})
    validated = [r for r in steps if "val_loss" in r]
    return {"steps": len(steps), "tokens": steps[-1]["tokens"] - start["tokens"],
            "flops": steps[-1]["flops"] - start["flops"], "lr_first": steps[0]["lr"], "lr_last": steps[-1]["lr"],
            "final_val_loss": validated[-1]["val_loss"] if validated else None,
            "growth": {k: v for k, v in growth.items() if k != "masks"} if growth else None}


def _init(context: Context, segment: Segment) -> tuple[str | None, dict | None]:
    """The checkpoint the segment starts from (None: fresh), and the growth that made it, if any."""
    if segment.init is None:
        return None, None
    target = context.run_dir / segment.name / "init"
    if segment.rebase and checkpoint.candidates(context.run_dir / segment.name):  # resuming: init is made
        return str(target), context.state["growths"].get(segment.name)
    source = checkpoint.latest_valid(context.run_dir / segment.init)
    if source is None:
        raise CheckpointError(f"{segment.init} has no complete checkpoint to start {segment.name} from")
    source = Path(source)
    if not segment.rebase:
        return str(source), None
    growth = None
    before = context.config.versions.shape_of(context.segments[segment.init].shape, context.config.model)
    if before != context.config.versions.shape_of(segment.shape, context.config.model):  # this version boundary grows the model
        source, growth = _grow(context, source, segment)
        # What this segment's LR does after the growth (the operator's recommendation does not apply).
        restart = context.config.versions.data[segment.shape].growth.lr == "restart"
        growth["lr"] = {"constant": "restart" if restart else "peak", "decay": "decay"}.get(segment.lr["kind"],
                                                                                             "restart")
        context.state["growths"][segment.name] = growth
        context.save()
    rebase(source, target)
    return str(target), growth


def rebase(source: Path, target: Path) -> None:
    """Copy a checkpoint to `target` (atomically) as the start of a new version's data: step and
    stream position 0; weights, AdamW moments and step count, token and FLOP counters unchanged."""
    state, meta = checkpoint.load(source)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    checkpoint.save(tmp, state, {**meta, "step": 0, "rows_consumed": 0, "rebased_from": str(source)})
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)


def _grow(context: Context, source: Path, segment: Segment) -> tuple[Path, dict]:
    """The coordinator's growth step on `source`, into version `segment.shape`'s shape.

    `grow_into_stage` reads stage 0's newest checkpoint of a run directory and writes stage 1's
    init; a small run directory per growth, whose stage 0 links to `source`, gives it both.
    """
    from raygrow.coordinator.growth import grow_into_stage, init_dir, stage_dir

    config, index = context.config, segment.shape
    spec = config.versions.data[index]
    batch = config.train.batch_tokens
    stages = [StageConfig(tokens=batch, shape=config.versions.shape_of(index - 1, config.model)),
              StageConfig(tokens=batch, shape=spec.shape, growth=spec.growth)]
    # grow_into_stage seeds with train.seed + 1 for stage 1: every version boundary gets its own seed.
    train = dataclasses.replace(config.train, seed=config.train.seed + index - 1)
    plan = dataclasses.replace(config, model=None, stages=stages, versions=None, train=train)
    work = context.run_dir / "growth" / segment.name.replace("/", "-")
    shutil.rmtree(work, ignore_errors=True)
    # Hard links: the source checkpoint appears in stage 0 without copying its bytes.
    shutil.copytree(source, Path(stage_dir(str(work), 0)) / source.name, copy_function=os.link)
    growth = grow_into_stage(plan, str(work), 1)
    return Path(init_dir(str(work), 1)), growth


def planned_cost(config: RunConfig, segments: list[Segment], versions: int, vocab: int,
                 only: set[str] | None = None) -> list[dict]:
    per_token = [flops_per_token(config.versions.shape_of(k, config.model), vocab, config.data.seq_len) for k in range(versions)]
    return plan_cost(segments, versions, per_token, config.train.batch_tokens, only)
