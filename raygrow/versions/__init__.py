"""Version updates: data versions v1..vn released one after another, on top of growth.

Three modes (`versions.mode`): `path_switching` (arXiv 2410.04103: a main path at peak LR through
every version, and per version a short branch that decays the LR to the minimum and becomes the
release), `from_scratch` (each version retrained from scratch on all data so far) and `continual`
(each version continues from the previous release with a full schedule of its own).

    config = load_config("jobs/plans/versions_tiny.yaml")   # a run config with a `versions:`
                                                            # section
    summary = run_versions(config)                          # raygrow.versions.runner; starts Ray

This package's top level is pure (config, segment planning, cost accounting); the runner imports
Ray and DeepSpeed only when called.
"""

from raygrow.config.versions import PAPER_DECAY_FRACTION, DocumentSlice, VersionsConfig, VersionSpec
from raygrow.versions.plan import Segment, decay_steps, plan_cost, plan_segments

__all__ = ["PAPER_DECAY_FRACTION", "DocumentSlice", "Segment", "VersionSpec", "VersionsConfig",
           "decay_steps",
           "plan_cost", "plan_segments"]
