"""RunTracker: forwards a run's records to its trackers, each record once, across resumes.

The hook is the driver: every record a stage's rank 0 sends ends up, in order, in that spec's
`metrics.jsonl` (raygrow.train.metrics). The driver reads each spec's file while the run goes
(every `tracking.every_s` seconds) and once more at the end, and hands the records it has not
forwarded yet to the trackers. Workers never talk to a tracker, so "rank 0 only" holds by
construction and a tracker's network trouble never stalls training.

What has been forwarded is a cursor per spec in `<run>/tracking.json`, beside the trackers'
run ids: the last step logged and the number of events logged. A resume retrains the steps
after its checkpoint; their records are at or below the cursor and are not logged twice (W&B
and TensorBoard would show the curve folding back on itself), and the tracked run continues
with the ids stored there.

Steps: a spec's step k is the run's global step `offset + k - start_step`, where `offset` is
the steps of the specs before it. A grown stage's first look (its `growth` event at step 0)
lands on the same global step as the previous stage's last step: the validation loss just
before and just after growth sit on one x.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

from raygrow import storage
from raygrow.config import RunConfig
from raygrow.coordinator.spec import StageSpec
from raygrow.errors import RaygrowError
from raygrow.tracking.backends import (
    Backend,
    MlflowBackend,
    TensorBoardBackend,
    WandbBackend,
    flat_numbers,
    require_module,
)
from raygrow.train.metrics import METRICS_FILE
from raygrow.train.records import EventRecord, Record, StepRecord, parse_record

log = logging.getLogger("raygrow")

STATE_FILE = "tracking.json"

# StepRecord field → the tracker's metric name
STEP_METRICS = {
    "loss": "train/loss", "lr": "train/lr", "grad_norm": "train/grad_norm",
    "tokens_per_s": "train/tokens_per_s", "mfu": "train/mfu",
    "data_wait_frac": "train/data_wait_frac", "val_loss": "val/loss",
    "tokens": "progress/tokens", "flops": "progress/flops",
}


def check_tracking(config: RunConfig) -> None:
    """Before any cluster work: every tracker switched on has its library installed."""
    tracking = config.tracking
    for setting, on in (("tracking.tensorboard", tracking.tensorboard),
                        ("tracking.wandb", tracking.wandb is not None),
                        ("tracking.mlflow", tracking.mlflow is not None)):
        if on:
            require_module(setting)


@dataclass
class SpecCursor:
    """How far a spec's records have been forwarded."""

    step: int = -1  # the last step record forwarded (-1: none)
    events: int = 0  # event records forwarded (events are only ever appended to the file)
    began: bool = False  # the stage-boundary marker for its start was logged
    ended: bool = False  # ... and for its end (its last step was forwarded)


@dataclass
class TrackingState:
    """<run>/tracking.json: the trackers' ids and the cursors."""

    backends: dict[str, dict[str, Any]] = field(default_factory=dict)
    cursors: dict[str, SpecCursor] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str) -> TrackingState:
        if not storage.exists(path):
            return cls()
        raw = json.loads(storage.read_bytes(path))
        cursors = {name: SpecCursor(**cursor) for name, cursor in raw.get("cursors", {}).items()}
        return cls(backends=raw.get("backends", {}), cursors=cursors)

    def save(self, path: str) -> None:
        data = {"backends": self.backends,
                "cursors": {name: vars(cursor) for name, cursor in self.cursors.items()}}
        storage.write_bytes(path, json.dumps(data, indent=1).encode())


def open_backends(config: RunConfig, state: TrackingState) -> dict[str, Backend]:
    """The run's trackers, each continuing its tracked run when `state` holds its id. One that
    cannot start (no API key, a server down) is reported in one line and left out."""
    tracking, run_dir = config.tracking, config.run_dir
    makers = {}
    if tracking.tensorboard:
        makers["tensorboard"] = lambda: TensorBoardBackend(
            tracking.tensorboard_dir or storage.join(run_dir, "tensorboard"))
    if tracking.wandb is not None:
        directory = tracking.wandb.dir or run_dir
        makers["wandb"] = lambda: WandbBackend(tracking.wandb, config.name, directory,
                                               state.backends.get("wandb", {}))
    if tracking.mlflow is not None:
        makers["mlflow"] = lambda: MlflowBackend(tracking.mlflow, config.name,
                                                 state.backends.get("mlflow", {}))
    backends: dict[str, Backend] = {}
    for name, make in makers.items():
        try:
            backends[name] = make()
        except ImportError:
            raise
        except Exception as error:  # noqa: BLE001 - any library's error, reported in one line
            _warn(name, "could not start", error)
    return backends


class RunTracker:
    """Forwards the records of `specs` (in order) to the trackers of `config.tracking`."""

    def __init__(self, config: RunConfig, specs: list[StageSpec]):
        self.config = config
        self.specs = specs
        self.run_dir = storage.canonical(config.run_dir)
        self.state_path = storage.join(self.run_dir, STATE_FILE)
        storage.make_dirs(self.run_dir)
        self.state = TrackingState.load(self.state_path)
        self.offsets = _offsets(specs)
        self.backends = open_backends(config, self.state)
        self.last_poll = 0.0
        self._each("log_config", config.to_dict())
        self._save()

    # ---- forwarding -----------------------------------------------------------------------

    def poll(self, force: bool = False) -> None:
        """Forward what the specs' metrics files hold beyond the cursors (at most every
        `tracking.every_s` seconds unless `force`)."""
        if not force and time.monotonic() - self.last_poll < self.config.tracking.every_s:
            return
        self.last_poll = time.monotonic()
        forwarded = False
        for index, spec in enumerate(self.specs):
            cursor = self.state.cursors.setdefault(spec.name, SpecCursor())
            if cursor.ended:
                continue
            records = _read_records(storage.join(spec.directory(self.run_dir), METRICS_FILE))
            if records:
                self._forward(index, spec, cursor, records)
                forwarded = True
        if forwarded:
            self._each("flush")
            self._save()

    def _forward(self, index: int, spec: StageSpec, cursor: SpecCursor,
                 records: list[Record]) -> None:
        if not cursor.began:
            self._stage_marker(index, spec, "begins", self._global(index, spec, spec.start_step))
            cursor.began = True
        seen_events = 0
        for record in records:
            if isinstance(record, EventRecord):
                seen_events += 1
                if seen_events > cursor.events:
                    self._event(index, spec, record)
                    cursor.events = seen_events
            elif record.step > cursor.step:
                self._step(index, spec, record)
                cursor.step = record.step
        if cursor.step >= spec.end_step and not cursor.ended:
            self._stage_marker(index, spec, "ends", self._global(index, spec, cursor.step))
            cursor.ended = True

    def _step(self, index: int, spec: StageSpec, record: StepRecord) -> None:
        values = {name: getattr(record, key) for key, name in STEP_METRICS.items()}
        values = {name: float(value) for name, value in values.items()
                  if value is not None and math.isfinite(value)}
        values["stage"] = float(index)
        self._each("log_scalars", self._global(index, spec, record.step), values)

    def _event(self, index: int, spec: StageSpec, record: EventRecord) -> None:
        """An event as a scalar marker (`events/<kind>` = 1; a growth also as `growth`, with
        the grown model's validation loss) and a line of text."""
        step = self._global(index, spec, record.step)
        values = {f"events/{record.event}": 1.0}
        if record.event == "growth":
            values["growth"] = 1.0
            if record.val_loss is not None and math.isfinite(record.val_loss):
                values["val/loss_after_growth"] = float(record.val_loss)
        self._each("log_scalars", step, values)
        self._each("log_text", step, "events", self._describe(spec, record))

    def _describe(self, spec: StageSpec, record: EventRecord) -> str:
        text = f"{spec.name}: {record.event} at step {record.step}"
        if record.event == "growth" and spec.init.growth is not None:
            growth = spec.init.growth
            text += (f" from {spec.init.spec} (depth {growth.depth_op or '-'}, width "
                     f"{growth.width_op or '-'}, lr {spec.init.lr_policy})")
        if record.val_loss is not None:
            text += f", validation loss {record.val_loss:.4f}"
        if record.checkpoint:
            text += f" ({record.checkpoint})"
        if record.detail:
            text += f": {json.dumps(record.detail)}"
        return text

    def _stage_marker(self, index: int, spec: StageSpec, what: str, step: int) -> None:
        """A stage boundary: `stage_boundary` = the stage index, and a line of text."""
        model = spec.model
        text = (f"{spec.name} {what} at step {step} ({model.layers} layers × {model.hidden}, "
                f"{spec.workers} worker(s), ZeRO-{spec.config.train.zero_stage})")
        self._each("log_scalars", step, {"stage_boundary": float(index)})
        self._each("log_text", step, "stages", text)

    def _global(self, index: int, spec: StageSpec, step: int) -> int:
        return self.offsets[index] + step - spec.start_step

    # ---- the end --------------------------------------------------------------------------

    def close(self, summary: dict[str, Any] | None, complete: bool) -> None:
        """Forward the last records, the run's summary (and any eval scores in it), and end
        the tracked runs (an incomplete run's are continued by its resume)."""
        try:
            self.poll(force=True)
            if summary is not None:
                self._each("log_summary", summary, complete)
                scores = flat_numbers({"eval": summary["eval"]}) if summary.get("eval") else {}
                if scores:
                    self._each("log_scalars", self._global_end(), scores)
        finally:
            self._each("close", complete)
            self._save()

    def _global_end(self) -> int:
        cursors = [self.state.cursors.get(spec.name, SpecCursor()) for spec in self.specs]
        done = [(index, cursor.step) for index, cursor in enumerate(cursors) if cursor.step >= 0]
        if not done:
            return 0
        index, step = done[-1]
        return self._global(index, self.specs[index], step)

    # ---- helpers --------------------------------------------------------------------------

    def _each(self, method: str, *args) -> None:
        """Call `method` on every tracker. A tracker that fails (a server gone) is reported
        once and switched off: tracking never ends a training run."""
        for name, backend in list(self.backends.items()):
            try:
                getattr(backend, method)(*args)
            except Exception as error:  # noqa: BLE001 - any library's error, reported in one line
                _warn(name, "failed", error)
                del self.backends[name]

    def _save(self) -> None:
        for name, backend in self.backends.items():
            self.state.backends[name] = backend.resume_state()
        self.state.save(self.state_path)


def open_tracker(config: RunConfig, specs: list[StageSpec]) -> RunTracker | None:
    """The run's tracker, or None when `tracking` switches nothing on."""
    if not config.tracking.enabled:
        return None
    try:
        return RunTracker(config, specs)
    except ImportError as error:  # check_tracking ran first; a broken install still says so
        raise RaygrowError(f"tracking: {error}; pip install 'raygrow[tracking]'") from None


def _warn(name: str, what: str, error: Exception) -> None:
    text = str(error).strip().splitlines()
    log.warning("tracking: %s %s (%s: %s); it is off for this invocation, training goes on",
                name, what, type(error).__name__, text[0] if text else "")


def _offsets(specs: list[StageSpec]) -> list[int]:
    offsets, total = [], 0
    for spec in specs:
        offsets.append(total)
        total += spec.end_step - spec.start_step
    return offsets


def _read_records(path: str) -> list[Record]:
    """The complete lines of a metrics file being written: a last line without its newline
    is still being appended and is read next time."""
    if not storage.exists(path):
        return []
    data = storage.read_bytes(path)
    complete = data[:data.rfind(b"\n") + 1].decode("utf-8", "replace")
    return [parse_record(json.loads(line)) for line in complete.splitlines() if line.strip()]
