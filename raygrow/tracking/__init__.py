"""Experiment tracking: the run's config, per-step metrics, validation, growth events and stage
boundaries in TensorBoard, Weights & Biases and MLflow (the `tracking:` section).

    tracker     RunTracker: the driver forwards each spec's metrics.jsonl records once, in
                order, across resumes (cursors and tracked-run ids in <run>/tracking.json)
    backends    the three libraries behind one small interface, each imported only when on
"""

from raygrow.tracking.tracker import RunTracker, check_tracking, open_tracker

__all__ = ["RunTracker", "check_tracking", "open_tracker"]
