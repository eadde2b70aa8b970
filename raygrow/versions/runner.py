"""Run a versions plan: its segments (raygrow.versions.plan) as stage specs for the coordinator.

Each segment becomes one `StageSpec` in `<run>/<segment>/`, started from its init: fresh
weights, another segment's final checkpoint, or (at a version boundary) that checkpoint rebased
onto the new version's data (step and stream position 0; weights, AdamW moments and the
token/FLOP counters kept), grown on the way when the version has a new shape. Releases are
exported as Hugging Face directories (`<run>/release/vk/export`). The coordinator's state
(coordinator.json) records finished specs: rerunning the same name skips them, and a plan
extended by new versions trains only what the new versions need (for path_switching: the
previous version's main-path tail first).
"""

from __future__ import annotations

import dataclasses
import logging

from raygrow import storage
from raygrow.config import RunConfig
from raygrow.coordinator.spec import EXPORT_DIR, InitSource, StageSpec
from raygrow.errors import ConfigError
from raygrow.versions.data import VersionData, check_version_sources, prepare_versions
from raygrow.versions.plan import BRANCH, Segment, plan_segments

log = logging.getLogger("raygrow")


def check(config: RunConfig) -> None:
    """Everything that can be checked before Ray starts or anything is written."""
    from raygrow.driver import check as check_run

    if config.versions is None:
        raise ConfigError("versions", "this config has no versions section; train it with "
                          "`raygrow train`")
    check_run(config)
    check_version_sources(config)


def run_versions(config: RunConfig, show_progress: bool = True, branches: bool = True) -> dict:
    """Train every version's release (with `branches` False, path_switching trains only its main
    path); returns summary.json's contents."""
    from raygrow.driver import check_resume_inputs, ensure_ray, execute
    from raygrow.resume import run_inputs
    from raygrow.versions.summary import summarise

    check(config)
    inputs = run_inputs(config.to_dict(), None)
    check_resume_inputs(config, inputs)
    autoscaling = ensure_ray()
    data = prepare_versions(config, show_progress=show_progress)
    segments = plan_segments(config.versions.mode, data.steps, config.versions.decay_fraction,
                             _rewarm(config), config.train)
    _check_ramps(config, segments)
    by_name = {segment.name: segment for segment in segments}
    specs = [version_spec(config, data, segment, by_name) for segment in segments
             if branches or segment.role != BRANCH]
    outcome = execute(config, specs, inputs, autoscaling, show_progress)
    return summarise(config, data, segments, specs, outcome)


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
        if grows and spec.growth.masked and spec.growth.ramp_steps >= segment.steps:
            raise ConfigError(f"versions.data[{segment.shape}].growth.ramp_steps",
                              f"{spec.growth.ramp_steps} steps do not end inside {segment.name} "
                              f"({segment.steps} steps); lower it below that")


def version_spec(config: RunConfig, data: VersionData, segment: Segment,
                 segments: dict[str, Segment]) -> StageSpec:
    """The segment as a stage spec: its shape, steps, data, LR segment, init and release export."""
    return StageSpec(
        name=segment.name, config=segment_config(config, segment),
        dataset=data.of(segment.data, segment.cumulative), workers=config.train.workers,
        lr=segment.lr, init=_init(config, segment, segments), start_step=segment.start,
        exports=(f"{segment.name}/{EXPORT_DIR}",) if segment.release else ())


def _init(config: RunConfig, segment: Segment, segments: dict[str, Segment]) -> InitSource:
    if segment.init is None:
        return InitSource("fresh")
    shape_of = config.versions.shape_of
    grows = (shape_of(segments[segment.init].shape, config.model)
             != shape_of(segment.shape, config.model))
    if not (segment.rebase and grows):
        return InitSource("checkpoint", spec=segment.init, rebase=segment.rebase)
    # This version boundary grows the model; each boundary draws from its own seed.
    return InitSource("grow", spec=segment.init, rebase=True,
                      growth=config.versions.data[segment.shape].growth,
                      seed=config.train.seed + segment.shape)


def segment_config(config: RunConfig, segment: Segment) -> RunConfig:
    """The segment as a single-stage run `<run>/<segment>`: its shape and last step."""
    train = dataclasses.replace(config.train, tokens=segment.end * config.train.batch_tokens,
                                stop_after=None)
    data = dataclasses.replace(config.data, cache_dir=config.dataset_root)
    parent, _, leaf = segment.name.rpartition("/")
    return dataclasses.replace(config, model=config.versions.shape_of(segment.shape, config.model),
                               stages=[], versions=None, name=leaf,
                               storage=storage.join(config.run_dir, parent), train=train, data=data)
