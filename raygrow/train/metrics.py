"""Metrics: the per-stage `metrics.jsonl` log, the channel that carries records from rank 0 to the
coordinator while a stage trains, and the device peak MFU is measured against."""

from __future__ import annotations

import json
import logging
import time

import ray
import torch

from raygrow import storage
from raygrow.errors import CheckpointError
from raygrow.hardware import gpu_peak, measure_cpu_peak
from raygrow.train.records import EventRecord, Record, parse_record, to_json

log = logging.getLogger("raygrow")

METRICS_FILE = "metrics.jsonl"


def device_peak() -> tuple[str, float]:
    """(device name, peak FLOP/s) for the device this worker trains on."""
    if torch.cuda.is_available():
        return gpu_peak(torch.cuda.get_device_name())
    return "cpu", measure_cpu_peak(torch.get_num_threads())


def write_jsonl(path: str, records: list[Record]) -> None:
    """Replace `path` with `records` as JSON lines, atomically."""
    storage.make_dirs(storage.parent(path))
    storage.write_bytes(path, _lines(records))


def _lines(records: list[Record]) -> bytes:
    return "".join(json.dumps(to_json(record)) + "\n" for record in records).encode()


def read_jsonl(path: str) -> list[Record]:
    """The records of a metrics file. A torn last line (a crash, power loss or full disk while it
    was written) is dropped with a warning: it is the one record that never finished. A damaged
    line anywhere else means a damaged file, refused naming it."""
    if not storage.exists(path):
        return []
    lines = [line for line in storage.read_bytes(path).decode("utf-8", "replace").split("\n")
             if line.strip()]
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(parse_record(json.loads(line)))
        except (ValueError, TypeError):
            if number < len(lines):
                raise CheckpointError(f"{path}: line {number} is not a metrics record; restore "
                                      "the file or delete that line") from None
            log.warning("%s: dropping a torn last line (%d bytes)", path, len(line))
    return records


class MetricsLog:
    """Appends rank 0's records to <stage>/metrics.jsonl; a resume drops the records of its step
    and later ones (the worker sends the resumed step's record again, from the checkpoint).

    Locally every `write` reaches the file at once. An object store has no append (each write
    uploads the whole file again), so there records are batched: written at most every
    REMOTE_FLUSH_S seconds and by `flush()` at the end of a stage.
    """

    REMOTE_FLUSH_S = 10.0

    def __init__(self, run_dir: str):
        self.path = storage.join(run_dir, METRICS_FILE)
        self.flush_every_s = self.REMOTE_FLUSH_S if storage.is_remote(self.path) else 0.0
        self._pending: list[Record] = []
        self._flushed_at = time.monotonic()

    def records(self) -> list[Record]:
        self.flush()
        return read_jsonl(self.path)

    def write(self, new: list[Record]) -> None:
        stamp = time.time()
        for record in new:
            record.time = stamp
        self._pending += new
        if time.monotonic() - self._flushed_at >= self.flush_every_s:
            self.flush()

    def flush(self) -> None:
        stamped, self._pending = self._pending, []
        self._flushed_at = time.monotonic()
        if not stamped:
            return
        resumes = [r for r in stamped if isinstance(r, EventRecord) and r.event == "resume"]
        if not resumes and not self._torn():  # the common case: append, without reading back
            storage.append_bytes(self.path, _lines(stamped))
            return
        kept = read_jsonl(self.path)
        for record in stamped:
            if isinstance(record, EventRecord) and record.event == "resume":
                # the resumed step's record is re-sent from its checkpoint (see loop.Worker)
                kept = [r for r in kept if r.step < record.step or isinstance(r, EventRecord)]
            kept.append(record)
        write_jsonl(self.path, kept)

    def _torn(self) -> bool:
        """Whether the file ends inside a line (appending would glue a record onto it)."""
        if storage.is_remote(self.path) or not storage.exists(self.path):
            return False
        with open(storage.resolve(self.path)[1], "rb") as handle:
            handle.seek(0, 2)
            if handle.tell() == 0:
                return False
            handle.seek(-1, 2)
            return handle.read(1) != b"\n"


def local_sink():
    """A MetricsSink on this process's node (the coordinator's): a lost worker node must not
    take the records of the stage with it."""
    from raygrow.train.resources import on_this_node

    return MetricsSink.options(scheduling_strategy=on_this_node()).remote()


@ray.remote(num_cpus=0)
class MetricsSink:
    """Collects metric records from rank 0 so the coordinator can show progress while `fit()`
    runs, and carries a stop request the other way (SIGTERM or Ctrl-C on the driver: the workers
    checkpoint at the next step boundary and end the stage).

    It also hands the next stage to a worker group that stays (see launch.WorkerGroup): rank 0
    says which stage it `ended`, every rank asks for the `next_run`, the coordinator `hand_over`s
    a StageRun (as [its object ref], which this actor never unpickles; or None: the group ends).
    `current` is the stage the group trains now, which a group restarted after a failure takes
    up again."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.stopping = False
        self.ended_dir: str | None = None  # the stage (its directory) the workers ended
        self.handed: dict[str, object] = {}  # by ended stage: the run that follows it, or None
        self.current_run = None  # the last run handed over

    def request_stop(self) -> None:
        self.stopping = True

    def stop_requested(self) -> bool:
        return self.stopping

    def push(self, record: Record) -> None:
        self.records.append(record)

    def poll(self) -> tuple[list[Record], str | None]:
        """(the records since the last poll, the stage the workers ended and wait after): rank 0
        pushes its records before it says `ended`, so none of the ended stage comes later."""
        records, self.records = self.records, []
        return records, self.ended_dir

    def ended(self, run_dir: str) -> None:
        self.ended_dir = run_dir

    def hand_over(self, ended_dir: str, run) -> None:
        self.handed[ended_dir] = run
        if run is not None:
            self.current_run, self.ended_dir = run, None

    def next_run(self, ended_dir: str) -> tuple[bool, object]:
        """(whether the coordinator answered, the run after `ended_dir` or None)."""
        return ended_dir in self.handed, self.handed.get(ended_dir)

    def current(self):
        return self.current_run
