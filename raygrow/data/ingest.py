"""A rank's training rows through Ray Data: streamed, prefetched, bounded, and still exactly once.

A worker knows the stream positions its next steps start at: its checkpointed position, the
batch size and the batches left out after a rollback. `RayDataRows` turns that plan into a Ray
Data pipeline: one input row per window of the streaming order (the planned steps whose rows
start in it), a read task per window that reads the window's shards once and gives the rank's
rows of each step, and an iterator that prefetches. The position stays one number: the pipeline
is rebuilt from it at every (re)start and whenever the step asked for is not the one planned
(after a rollback), so stops, crashes, resizes and growth take every row once (DESIGN.md,
invariant 1), and the rows are the ones `PackedRows.take` gives (`DirectRows`, data.ingest:
direct).

Read tasks ask for `data.ingest_cpus` each, which the workers' default share leaves free
(`raygrow.train.resources`; 0 where train.cpus_per_worker gave the workers every CPU), so the
data never waits behind training on any cluster size; a step whose rows do not come within
`data.ingest_timeout_s` is a DataError saying what the cluster lacks, not a silent hang.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator

import numpy as np

from raygrow import storage
from raygrow.config import DataConfig
from raygrow.data.packed import PackedRows
from raygrow.errors import DataError

Plan = Callable[[], list[int]]  # the start positions of the steps ahead, the next one first


class DirectRows:
    """A rank's rows of each step, read in the worker's own process (data.ingest: direct)."""

    def __init__(self, rows: PackedRows, rank: int, world: int, batch_rows: int):
        self.rows, self.per_rank = rows, batch_rows // world
        self.offset = rank * self.per_rank

    def batch(self, start: int, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
        """(row ids, tokens int32 [rows, seq_len + 1]) of this rank for the step at `start`."""
        return self.rows.take(start + self.offset, self.per_rank)

    def start(self, plan: Plan) -> None:
        """Start reading ahead for the steps `plan()` gives (nothing to start here)."""

    def close(self) -> None:
        pass


class RayDataRows(DirectRows):
    """A rank's rows of each step, from a Ray Data pipeline over the steps planned ahead."""

    def __init__(self, rows: PackedRows, rank: int, world: int, batch_rows: int, data: DataConfig,
                 cpus: float):
        super().__init__(rows, rank, world, batch_rows)
        self.data, self.cpus = data, cpus  # cpus: of each read task (data.ingest_cpus, or 0)
        self.reads = 0  # pipelines built: one per (re)start, plus one per rollback
        self._feed: _Feed | None = None

    def start(self, plan: Plan) -> None:
        """Start the pipeline for the steps `plan()` gives, before the first is asked for (the
        worker does while it builds its engine); `batch` uses it when its first step is the one
        asked for."""
        if self._feed is None:
            self._open(plan())

    def batch(self, start: int, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
        if self._feed is None or self._feed.next_start != start:
            starts = plan()
            if not starts or starts[0] != start:
                raise ValueError(f"the plan must start at the step asked for ({start}), "
                                 f"got {starts[:1]}")
            self._open(starts)
        return self._feed.get(self.data.ingest_timeout_s, self._why_waiting)

    def _open(self, starts: list[int]) -> None:
        self.close()
        self._feed = _Feed(self._batches(starts), starts, self.data.prefetch_steps)
        self.reads += 1

    def close(self) -> None:
        if self._feed is not None:
            self._feed.close()
            self._feed = None

    def _batches(self, starts: list[int]) -> Iterator[dict[str, np.ndarray]]:
        import ray
        from ray.data import DataContext

        context = DataContext.get_current()  # this worker's process: its own context
        context.execution_options.preserve_order = True  # steps in the order planned
        context.enable_progress_bars = False
        # Ray Data's own lines (each execution's plan, the disabled bars, a failed task's stack)
        # stay in its log file: training's console shows raygrow's, and errors come raised.
        logging.getLogger("ray.data").setLevel(logging.CRITICAL)
        steps = np.asarray(starts, dtype=np.int64)
        windows = self.rows.windows(steps + self.offset)
        groups = np.split(steps, np.flatnonzero(np.diff(windows)) + 1)
        dataset = (ray.data.from_items([{"starts": group.tolist()} for group in groups],
                                       override_num_blocks=len(groups))
                   .map_batches(_read_window, batch_size=1, num_cpus=self.cpus,
                                compute=ray.data.TaskPoolStrategy(size=2),
                                fn_kwargs={"rows": _RowsSpec(self.rows), "offset": self.offset,
                                           "per_rank": self.per_rank, "s3": storage.s3_settings()}))
        return dataset.iter_batches(batch_size=self.per_rank, batch_format="numpy",
                                    prefetch_batches=self.data.prefetch_steps)

    def _why_waiting(self) -> str:
        import ray

        free = ray.available_resources().get("CPU", 0.0)
        return (f"each read task needs {self.cpus:g} CPU and the cluster has {free:g} "
                "free; leave CPUs to Ray Data (train.cpus_per_worker, data.ingest_cpus) or, if the "
                "storage is only slow, raise data.ingest_timeout_s")


class _RowsSpec:
    """What a read task needs to open the same stream as the worker: PackedRows reads no shard
    until asked, and with the worker's manifest it looks nothing up, so each task opens its own."""

    def __init__(self, rows: PackedRows):
        self.directory, self.seed, self.window = rows.directory, rows.shuffle_seed, rows.window
        self.manifest = rows.manifest

    def open(self) -> PackedRows:
        return PackedRows(self.directory, "train", self.seed, self.window, self.manifest)


def _read_window(batch: dict[str, np.ndarray], rows: _RowsSpec, offset: int, per_rank: int,
                 s3: storage.S3Settings) -> Iterator[dict[str, np.ndarray]]:
    """Ray Data task: the rank's rows of each planned step of one window, in order."""
    storage.configure_s3(s3.endpoint_url, s3.region)  # this task's process has its own settings
    stream = rows.open()
    for start in batch["starts"][0]:
        row_ids, tokens = stream.take(int(start) + offset, per_rank)
        yield {"start": np.full(per_rank, start, dtype=np.int64), "row_id": row_ids,
               "tokens": tokens}


class _Feed:
    """The pipeline's batches, pulled by a thread into a bounded queue, so that the worker can
    wait for a step's rows with a timeout (Ray Data itself would wait forever for a task that
    cannot be scheduled)."""

    _END = object()

    def __init__(self, batches: Iterator[dict[str, np.ndarray]], starts: list[int], depth: int):
        self._starts = iter(starts)
        self.next_start = next(self._starts)
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pull, args=(batches,), daemon=True,
                                        name="raygrow-ingest")
        self._thread.start()

    def get(self, timeout: float, why: Callable[[], str]) -> tuple[np.ndarray, np.ndarray]:
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise DataError(f"data.ingest_timeout_s: the rows of the step at stream position "
                            f"{self.next_start} did not come from Ray Data within {timeout:g} s "
                            f"({why()})") from None
        if isinstance(item, BaseException):
            raise item
        if item is self._END:
            raise DataError(f"the Ray Data pipeline ended before the step at stream position "
                            f"{self.next_start}")
        start, row_ids, tokens = item
        if start != self.next_start:
            raise DataError(f"the Ray Data pipeline gave the step at stream position {start} "
                            f"where {self.next_start} was planned")
        self.next_start = next(self._starts, None)
        return row_ids, tokens

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _pull(self, batches: Iterator[dict[str, np.ndarray]]) -> None:
        try:
            for batch in batches:
                starts = batch["start"]
                if starts[0] != starts[-1]:
                    raise DataError("a Ray Data batch held the rows of two steps "
                                    f"({starts[0]} and {starts[-1]})")
                if not self._put((int(starts[0]), batch["row_id"], batch["tokens"])):
                    return
            self._put(self._END)
        except Exception as error:  # handed to the worker, which raises it at its next step
            self._put(_data_error(error))
        finally:
            close = getattr(batches, "close", None)
            if close is not None:
                close()  # stops the streaming executor

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False


def _data_error(error: BaseException) -> BaseException:
    """The DataError a read task raised (Ray Data and Ray wrap it in their own exceptions, whose
    text holds the task's traceback), else `error` itself."""
    from ray.exceptions import RayTaskError

    seen: BaseException | None = error
    while seen is not None:
        cause = getattr(seen, "cause", None)
        for candidate in (cause, seen):  # its first line: Ray Data appends its retry advice
            if isinstance(candidate, DataError) and not isinstance(candidate, RayTaskError):
                return DataError(str(candidate).splitlines()[0])
        seen = seen.__cause__ or seen.__context__
    return error
