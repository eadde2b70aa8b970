"""The three trackers behind one small interface: TensorBoard, Weights & Biases, MLflow.

Each backend is the library's own client, imported only when its tracker is switched on (a run
without tracking never imports them). A backend logs a config once, scalars and text at a
global step, a summary at the end, and says what must be kept in the run directory to continue
the same tracked run on a resume (`resume_state`).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import secrets
import time
from typing import Any

from raygrow.config import MlflowConfig, WandbConfig
from raygrow.errors import ConfigError

log = logging.getLogger("raygrow")

# field → (module the tracker needs, the pip requirement that brings it)
REQUIREMENTS = {
    "tracking.tensorboard": ("tensorboard", "tensorboard"),
    "tracking.wandb": ("wandb", "wandb"),
    "tracking.mlflow": ("mlflow", "mlflow-skinny"),
}


def require_module(setting: str) -> None:
    """Refuse a tracker whose library is not installed, naming the setting (before cluster work)."""
    module, package = REQUIREMENTS[setting]
    if importlib.util.find_spec(module) is None:
        raise ConfigError(setting, f"needs the {package} package, which is not installed; "
                          "pip install 'raygrow[tracking]' or switch it off")


class Backend:
    """What the tracker calls; every method may be called from the driver only."""

    def log_config(self, config: dict[str, Any]) -> None: ...

    def log_scalars(self, step: int, values: dict[str, float]) -> None: ...

    def log_text(self, step: int, tag: str, text: str) -> None: ...

    def log_summary(self, summary: dict[str, Any], complete: bool) -> None: ...

    def flush(self) -> None: ...

    def close(self, complete: bool) -> None: ...

    def resume_state(self) -> dict[str, Any]:
        """Ids to store in the run directory, given back to the constructor on a resume."""
        return {}


class TensorBoardBackend(Backend):
    """Event files in one log directory; a resumed run adds a new event file to the same
    directory and its global steps continue where the last invocation's ended."""

    def __init__(self, logdir: str):
        from torch.utils.tensorboard import SummaryWriter

        self.logdir = logdir
        self.writer = SummaryWriter(log_dir=logdir)

    def log_config(self, config: dict[str, Any]) -> None:
        # Markdown: an indented block keeps the JSON readable in TensorBoard's text tab.
        text = "\n".join("    " + line for line in json.dumps(config, indent=1).splitlines())
        self.writer.add_text("config", text, 0)

    def log_scalars(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def log_text(self, step: int, tag: str, text: str) -> None:
        self.writer.add_text(tag, text, step)

    def log_summary(self, summary: dict[str, Any], complete: bool) -> None:
        text = "\n".join("    " + line for line in json.dumps(summary, indent=1).splitlines())
        self.writer.add_text("summary", text, 0)

    def flush(self) -> None:
        self.writer.flush()

    def close(self, complete: bool) -> None:
        self.writer.close()


class WandbBackend(Backend):
    """One W&B run, created with an id of our own and resumed by that id (`resume="allow"`)."""

    def __init__(self, config: WandbConfig, name: str, directory: str, state: dict[str, Any]):
        import wandb

        self.wandb = wandb
        os.makedirs(directory, exist_ok=True)
        self.run_id = state.get("id") or secrets.token_hex(6)  # W&B ids: [a-z0-9]
        self.resumed = "id" in state
        self.last_step = int(state.get("step", 0))
        self.run = wandb.init(project=config.project, entity=config.entity, mode=config.mode,
                              dir=directory, id=self.run_id, name=name, resume="allow",
                              settings=wandb.Settings(console="off", silent=True))

    def log_config(self, config: dict[str, Any]) -> None:
        # A resume may change the fields that are safe to change (workers, intervals).
        self.run.config.update(config, allow_val_change=True)

    def log_scalars(self, step: int, values: dict[str, float]) -> None:
        self._log(step, values)

    def log_text(self, step: int, tag: str, text: str) -> None:
        self._log(step, {tag: text})

    def _log(self, step: int, values: dict[str, Any]) -> None:
        # W&B's history step only moves forward: an event at an earlier step (a resume at its
        # checkpoint's step) is logged at the latest step instead of being dropped.
        self.last_step = max(self.last_step, step)
        self.run.log(values, step=self.last_step)

    def log_summary(self, summary: dict[str, Any], complete: bool) -> None:
        self.run.summary.update(flat_numbers(summary))
        self.run.summary["complete"] = complete

    def close(self, complete: bool) -> None:
        self.run.finish(exit_code=0 if complete else 1)

    def resume_state(self) -> dict[str, Any]:
        return {"id": self.run_id, "step": self.last_step}


class MlflowBackend(Backend):
    """One MLflow run in an experiment, continued by its run id on a resume."""

    PARAMS_PER_BATCH = 100  # MLflow's limit for one log_batch call
    PARAM_CHARS = 500

    def __init__(self, config: MlflowConfig, name: str, state: dict[str, Any]):
        from mlflow.tracking import MlflowClient

        if (config.tracking_uri or "").startswith("file:"):
            # MLflow 3 refuses its file store unless told that it is wanted; a `file:` URI in
            # the config says so (the store still works; it gets no new features).
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=config.tracking_uri)
        self.resumed = "run_id" in state
        if self.resumed:
            self.run_id = state["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            experiment = self.client.get_experiment_by_name(config.experiment)
            experiment_id = (experiment.experiment_id if experiment is not None
                             else self.client.create_experiment(config.experiment))
            self.run_id = self.client.create_run(experiment_id, run_name=name,
                                                 tags={"raygrow.run": name}).info.run_id

    def log_config(self, config: dict[str, Any]) -> None:
        from mlflow.entities import Param

        if self.resumed:  # MLflow refuses to change a parameter: the first invocation's stay
            self.client.set_tag(self.run_id, "raygrow.resumed", "true")
            return
        params = [Param(key, str(value)[:self.PARAM_CHARS]) for key, value in flat_items(config)]
        for first in range(0, len(params), self.PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=params[first:first + self.PARAMS_PER_BATCH])
        self.client.log_dict(self.run_id, config, "config.json")

    def log_scalars(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(key, float(value), stamp, step) for key, value in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def log_text(self, step: int, tag: str, text: str) -> None:
        # Tags are MLflow's searchable strings; one per event, ordered by its step.
        self.client.set_tag(self.run_id, f"{tag}.{step:09d}", text[:5000])

    def log_summary(self, summary: dict[str, Any], complete: bool) -> None:
        self.client.log_dict(self.run_id, summary, "summary.json")

    def close(self, complete: bool) -> None:
        # KILLED, not FAILED: an incomplete run is resumable and continues this MLflow run.
        self.client.set_terminated(self.run_id, "FINISHED" if complete else "KILLED")

    def resume_state(self) -> dict[str, Any]:
        return {"run_id": self.run_id}


def flat_items(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, leaf) pairs of a nested dict; lists are kept whole as one value."""
    if isinstance(value, dict):
        items: list[tuple[str, Any]] = []
        for key, item in value.items():
            items += flat_items(item, f"{prefix}.{key}" if prefix else str(key))
        return items
    return [(prefix, value)]


def flat_numbers(summary: dict[str, Any]) -> dict[str, float]:
    """The numeric leaves of a summary (lists of stages indexed), for a tracker's summary."""
    numbers: dict[str, float] = {}

    def walk(value: Any, prefix: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{prefix}/{key}" if prefix else str(key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{prefix}/{index}")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            numbers[prefix] = float(value)

    walk({key: item for key, item in summary.items() if key != "config"}, "")
    return numbers
