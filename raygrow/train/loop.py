"""The loop each Ray Train worker runs: resume, train, validate, checkpoint.

Data position (DESIGN.md invariant 1): the run is a stream of packed rows addressed by a global
position. Optimizer step g consumes positions [p_g, p_g + B), where B is the global batch in rows,
and rank r takes the r-th of `world` equal slices. `rows_consumed` (the next position) is saved in
every checkpoint, so a resumed or resized run continues exactly where the checkpoint left off.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import math
import os
import tempfile
import time
from collections import deque
from dataclasses import dataclass

import psutil
import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
import torch.nn.functional as F

from raygrow import storage
from raygrow.config import RunConfig, TrainConfig
from raygrow.resume import check_spec
from raygrow.data import Manifest, PackedRows
from raygrow.data.ingest import DirectRows, RayDataRows
from raygrow.grow import TrainState, apply_masks, fold, mask_value, set_mask_value
from raygrow.model import build_model, compile_blocks, flops_per_token
from raygrow.train import checkpoint
from raygrow.train.engine import (
    checkpoint_activations, engine_from_state, freeze, gather_full_state, set_lr,
)
from raygrow.train.metrics import device_peak
from raygrow.train.records import EventRecord, Record, StepRecord, parse_record, to_json
from raygrow.train.stage_run import StageRun

log = logging.getLogger("raygrow")


@dataclass
class Progress:
    """Counters that survive restarts: saved in every checkpoint's state.json."""

    step: int = 0  # optimizer steps done
    rows_consumed: int = 0  # next global stream position
    tokens: int = 0  # training tokens seen (inputs, excluding the shifted label token)
    flops: float = 0.0  # cumulative training FLOPs
    skipped: list[int] = dataclasses.field(default_factory=list)  # stream positions of batches
    # left out after a non-finite step was rolled back (the rows of [p, p + batch) are never
    # trained)

    @classmethod
    def from_meta(cls, meta: dict) -> Progress:
        return cls(**{name: meta[name] for name in cls.__dataclass_fields__ if name in meta})


class Worker:
    """One data-parallel rank of a stage.

    `startup` holds wall-clock stamps (seconds since the epoch) of this worker's start, for the
    stage-transition breakdown in summary.json: `process` (this process started), `imported`
    (this module, with torch, DeepSpeed and transformers, imported), `train_fn` (Ray Train called
    the loop), `data` (the rows readable), `state` (the checkpoint or init loaded), `engine` (the
    model and DeepSpeed engine built), then in `_train` `validated` (a grown model's first
    validation) and `first_step`; rank 0 sends them as a `startup` event after its first step.
    """

    def __init__(self, run: StageRun, entered: float | None = None,
                 released: float | None = None):
        entered = entered or time.time()
        # released: this process ended the stage before and waited from then on; the coordinator
        # handed it this one (launch.WorkerGroup): no process started for it, nothing imported
        self.startup = ({"released": released, "handed": entered, "train_fn": entered}
                        if released is not None else
                        {"process": psutil.Process().create_time(), "imported": IMPORTED_AT,
                         "train_fn": entered})
        self.run = run
        self.config: RunConfig = run.config
        context = ray.train.get_context()
        self.rank, self.world = context.get_world_rank(), context.get_world_size()
        self.device = ray.train.torch.get_device()
        torch.set_num_threads(run.threads)
        checkpoint.set_fault(run.fault)  # test hook, see checkpoint.fault_point
        if self.config.train.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        storage.configure_s3(self.config.s3.endpoint_url, self.config.s3.region)
        manifest = Manifest.load(run.dataset_dir)
        self.vocab = self.config.model.vocab_size(manifest.vocab_size)
        # One manifest load per worker: each looks up every shard (a request each on S3).
        self.train_rows = self._train_rows(run.dataset_dir, manifest)
        self.val_rows = PackedRows(run.dataset_dir, "val", None, manifest=manifest)
        self.startup["data"] = time.time()
        self.flops_per_token = flops_per_token(self.config.model, self.vocab,
                                               self.config.data.seq_len, run.trainable)
        resumed_from, state, meta = self._start_state()
        self.startup["state"] = time.time()
        self.progress = Progress.from_meta(meta) if meta else Progress()
        self.masks = run.masks if self.progress.step <= run.ramp_steps else None
        self._eos_id = manifest.eos_id
        train = self.config.train
        self.stop_at = min(self.config.total_steps, train.stop_after or self.config.total_steps)
        if self.stop_at > self.progress.step:  # the first batches are read while the engine builds
            self.train_rows.start(self._planned_starts)
        try:
            self.engine = self._engine(state, manifest.eos_id)
        except BaseException:
            self.train_rows.close()
            raise
        self.startup["engine"] = time.time()
        self.device_name, self.peak = device_peak()
        self.resumed = resumed_from is not None
        if self.resumed:
            self._resumed(resumed_from, meta)
        self.started_from_growth = not self.resumed and run.grown
        self._stop_probe = None  # a pending `stop_requested` call to the sink (rank 0)

    def _train_rows(self, dataset_dir: str, manifest: Manifest) -> DirectRows:
        """This rank's rows of each step: through Ray Data (data.ingest: ray_data), or read here."""
        data = self.config.data
        rows = PackedRows(dataset_dir, "train", data.shuffle_seed, data.shuffle_window, manifest)
        if data.ingest == "ray_data":
            return RayDataRows(rows, self.rank, self.world, self.config.batch_rows, data,
                               self.run.read_cpus)
        return DirectRows(rows, self.rank, self.world, self.config.batch_rows)

    def _start_state(self) -> tuple[str | None, TrainState | None, dict | None]:
        """(checkpoint resumed from, state, meta): this stage's newest checkpoint, else the
        stage's init (resumed from: None), else nothing (fresh weights)."""
        latest = checkpoint.load_latest(self.run.run_dir)
        if latest is not None:
            path, state, meta = latest
            check_spec(f"{storage.base_name(self.run.run_dir)} ({storage.base_name(path)})",
                       meta.get("fingerprint", self.run.fingerprint), self.run.fingerprint)
            return str(path), state, meta
        if self.run.init_from is not None:
            return None, *checkpoint.load(self.run.init_from)
        return None, None, None

    def _engine(self, state: TrainState | None, eos_id: int):
        model = build_model(self.config.model, self.vocab, self.config.train.seed, eos_id=eos_id)
        freeze(model, self.run.trainable)
        if self.masks is not None:
            apply_masks(model, self.masks, mask_value(self.progress.step, self.run.ramp_steps))
        train = self.config.train
        checkpoint_activations(model, train.activation_checkpointing,
                               train.activation_checkpointing_every)
        if self.config.train.compile:
            compile_blocks(model)
        return engine_from_state(model.to(self.device), self.config, self.world, state)

    def _resumed(self, path: str, meta: dict) -> None:
        """Undo the row log of steps after the checkpoint, and tell the log where we resumed."""
        self._roll_back_row_log()
        self.emit(EventRecord(event="resume", step=self.progress.step,
                              checkpoint=storage.base_name(path)))
        # The checkpointed step's own record comes back from the checkpoint: if the process that
        # collects records died before writing it down, the log still ends where training did.
        record = meta.get("record")
        if record and record.get("step") == self.progress.step:
            self.emit(parse_record(record))

    def lr(self) -> float:
        """LR of the next step, from the stage's segment of its schedule."""
        return self.run.lr.lr(self.progress.step)

    def update_masks(self) -> None:
        """Move the MSG masks along their ramp; once at m = 1 they are identities and are
        removed."""
        if self.masks is None:
            return
        module = self.engine.module
        value = mask_value(self.progress.step, self.run.ramp_steps)
        if value >= 1.0:
            set_mask_value(module, 1.0)
            fold(module)
            self.masks = None
        else:
            set_mask_value(module, value)

    # ---- one step ---------------------------------------------------------------------------

    def _rank_slice(self, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        row_ids, tokens = self.train_rows.batch(start, self._planned_starts)
        return torch.from_numpy(row_ids), torch.from_numpy(tokens).long()

    def _planned_starts(self) -> list[int]:
        """The stream positions the steps left in this stage start at, the next one first: one
        batch after another, leaving out the batches skipped after a rollback."""
        batch, skipped = self.config.batch_rows, set(self.progress.skipped)
        starts, position = [], self.progress.rows_consumed
        for _ in range(self.stop_at - self.progress.step):
            while position in skipped:
                position += batch
            starts.append(position)
            position += batch
        return starts

    def _loss(self, tokens: torch.Tensor) -> torch.Tensor:
        return causal_lm_loss(self.engine, tokens.to(self.device))

    def train_step(self) -> dict:
        """One optimizer step on the next batch of the stream. A step whose gradient norm is not
        finite applies nothing: DeepSpeed's ZeRO optimizers skip such a step themselves (and
        report an infinite norm); at ZeRO stage 0 the gradients are dropped before it."""
        config = self.config
        lr = self.lr()
        set_lr(self.engine, lr)
        self.update_masks()
        while self.progress.rows_consumed in self.progress.skipped:  # left out after a rollback
            self.progress.rows_consumed += config.batch_rows
        start = self.progress.rows_consumed
        waited = time.perf_counter()
        row_ids, tokens = self._rank_slice(start)
        waited = time.perf_counter() - waited
        poisoned = os.environ.get("RAYGROW_FAULT") == f"poison_rows:{start}"  # test hook
        losses = []
        for micro in tokens.split(config.train.micro_batch):
            loss = self._loss(micro) * (float("nan") if poisoned else 1.0)
            self.engine.backward(loss)
            if self.engine.is_gradient_accumulation_boundary() and config.train.zero_stage == 0:
                grad_norm = _grad_norm(self.engine.module)
                if not math.isfinite(grad_norm):
                    # AdamW leaves grad-less params be
                    self.engine.module.zero_grad(set_to_none=True)
            self.engine.step()
            losses.append(loss.item())
        if config.train.zero_stage > 0 or self.engine.bfloat16_enabled():
            grad_norm = float(self.engine.get_global_grad_norm() or 0.0)
        step_tokens = config.batch_rows * config.data.seq_len
        self.progress.step += 1
        self.progress.rows_consumed += config.batch_rows
        self.progress.tokens += step_tokens
        self.progress.flops += float(self.flops_per_token * step_tokens)
        loss = sum(losses) / len(losses)
        return {"loss": loss, "lr": lr, "grad_norm": grad_norm, "data_wait_s": waited,
                "start": start,
                "row_ids": row_ids, "finite": math.isfinite(loss) and math.isfinite(grad_norm)}

    def agree(self, finite: bool) -> tuple[bool, bool]:
        """(stop requested, some rank's step was not finite): one all-reduce for both, so every
        rank takes the same branch (a checkpoint and a rollback are collectives)."""
        asked = False
        if self.rank == 0 and self.run.sink is not None:
            if self._stop_probe is None:  # asked without waiting: the answer is picked up later
                self._stop_probe = self.run.sink.stop_requested.remote()
            ready, _ = ray.wait([self._stop_probe], timeout=0)
            if ready:
                asked = ray.get(ready[0])
                self._stop_probe = None
        flags = torch.tensor([1.0 if asked else 0.0, 0.0 if finite else 1.0])
        _all_reduce(flags)
        return bool(flags[0].item()), bool(flags[1].item())

    def roll_back(self, bad_start: int) -> str:
        """Back to this stage's newest checkpoint (else its init, else fresh weights), leaving the
        batch at stream position `bad_start` out from now on; returns where it rolled back to.
        The engine is rebuilt from that state, as a restarted worker would build it."""
        skipped = sorted(set(self.progress.skipped) | {bad_start})
        resumed_from, state, meta = self._start_state()
        self.progress = Progress.from_meta(meta) if meta else Progress()
        self.progress.skipped = sorted(set(self.progress.skipped) | set(skipped))
        self.masks = self.run.masks if self.progress.step <= self.run.ramp_steps else None
        del self.engine
        gc.collect()
        self.engine = self._engine(state, self._eos_id)
        self._roll_back_row_log()
        return storage.base_name(resumed_from or self.run.init_from or "fresh weights")

    def placement(self) -> dict:
        """Where each rank of this worker group runs: node ids and addresses by rank (a
        collective)."""
        context = ray.get_runtime_context()
        mine = {"node": context.get_node_id(), "ip": ray.util.get_node_ip_address()}
        ranks = [None] * self.world
        if self.world > 1:
            dist.all_gather_object(ranks, mine)
        else:
            ranks = [mine]
        return {"workers": self.world, "nodes": sorted({rank["node"] for rank in ranks}),
                "ranks": ranks}

    def log_rows(self, row_ids: torch.Tensor) -> None:
        # Numbered like the metrics: the step these rows completed (just done).
        line = json.dumps({"step": self.progress.step, "rows": row_ids.tolist()}) + "\n"
        storage.append_bytes(storage.join(self.run.run_dir, "rows", f"rank-{self.rank}.jsonl"),
                             line.encode())

    def _roll_back_row_log(self) -> None:
        """Steps after the checkpoint we resume from are undone: so are their row records (rank 0
        cleans every rank's file, as the world size may have changed; others wait at the first
        collective of the first step, which rank 0 reaches only after this)."""
        if not self.config.train.log_rows or self.rank != 0:
            return
        for entry in storage.list_files(storage.join(self.run.run_dir, "rows")):
            kept = [line for line in storage.read_bytes(entry.path).decode().splitlines()
                    if json.loads(line)["step"] <= self.progress.step]
            storage.write_bytes(entry.path, "".join(line + "\n" for line in kept).encode())

    # ---- evaluation, checkpoints, metrics ---------------------------------------------------

    @torch.no_grad()
    def validate(self) -> float:
        """Mean loss over the first `val_rows` validation rows, split across ranks.

        Every rank runs the same number of forward passes: under ZeRO-3 each forward gathers the
        parameters from all ranks, so a rank with one micro-batch fewer (33 rows on 2 ranks, or
        1 row: one rank has none) would leave the others waiting. A rank whose share runs out
        early forwards a row of the split again and leaves it out of the mean."""
        total = min(self.config.train.val_rows, self.val_rows.num_rows)
        start, count, forwards = validation_share(total, self.world, self.rank,
                                                  self.config.train.micro_batch)
        _, tokens = self.val_rows.take(start, count) if count else self.val_rows.take(0, 1)
        micro_batches = torch.from_numpy(tokens).long().split(self.config.train.micro_batch)
        loss_sum = torch.zeros(2, dtype=torch.float64)
        for index in range(forwards):
            real = index < len(micro_batches) and count > 0
            micro = micro_batches[index] if real else micro_batches[0][:1]
            loss = self._loss(micro).item()
            if real:
                loss_sum[0] += loss * len(micro)
                loss_sum[1] += len(micro)
        _all_reduce(loss_sum)
        return float(loss_sum[0] / loss_sum[1])

    def save_checkpoint(self, record: StepRecord) -> None:
        state = gather_full_state(self.engine, keep=self.rank == 0)  # collective; rank 0 holds it
        meta = {**dataclasses.asdict(self.progress), "world_size": self.world,
                "zero_stage": self.config.train.zero_stage,
                "shape": dataclasses.asdict(self.config.model),
                "vocab": self.vocab, "record": to_json(record), "fingerprint": self.run.fingerprint}
        if self.run.chained:  # Ray Train's run directory is another stage's: published here
            if self.rank == 0:
                checkpoint.publish(self.run.run_dir, self.progress.step, state, meta,
                                   keep=self.config.checkpoint.keep)
            return
        with tempfile.TemporaryDirectory(prefix="raygrow-ckpt-") as tmp:
            saved = None
            if self.rank == 0:
                checkpoint.save(tmp, state, meta)
                saved = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(to_json(record), checkpoint=saved,
                             checkpoint_dir_name=checkpoint.dir_name(self.progress.step))

    def summarise(self, window: Window, record: StepRecord) -> None:
        """Fill a log line's loss (averaged over ranks and steps), throughput and MFU."""
        loss = torch.tensor([window.loss_sum / window.steps], dtype=torch.float64)
        _all_reduce(loss)
        tokens = window.steps * self.config.batch_rows * self.config.data.seq_len
        tokens_per_s = tokens / window.seconds
        record.loss = float(loss) / self.world
        record.tokens_per_s = tokens_per_s
        record.mfu = self.flops_per_token * tokens_per_s / self.world / self.peak
        record.data_wait_frac = window.data_wait_s / window.seconds
        record.device = self.device_name

    def started(self) -> None:
        """After this worker's first step: send its start-up stamps, once."""
        if self.startup is not None:
            self.startup["first_step"] = time.time()
            self.emit(EventRecord(event="startup", step=self.progress.step,
                                  detail={"times": self.startup}))
            self.startup = None

    def emit(self, record: Record) -> None:
        if self.rank == 0 and self.run.sink is not None:
            self.run.sink.push.remote(record)


def causal_lm_loss(model, tokens: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy of packed rows (seq_len + 1 tokens each), in fp32."""
    logits = model(input_ids=tokens[:, :-1]).logits
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), tokens[:, 1:].reshape(-1))


def validation_share(total: int, world: int, rank: int, micro_batch: int) -> tuple[int, int, int]:
    """(first row, rows, forward passes) of `rank`'s share of `total` validation rows: equal
    shares (the last ones shorter or empty), the same number of passes on every rank."""
    per_rank = -(-total // world)
    start = min(rank * per_rank, total)
    count = min(per_rank, total - start)
    return start, count, -(-per_rank // micro_batch)


def _all_reduce(tensor: torch.Tensor) -> None:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor)


def _grad_norm(module: torch.nn.Module) -> float:
    norms = [p.grad.detach().float().norm() for p in module.parameters() if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0


@dataclass
class Window:
    """Training-only time and loss since the last log line (validation and saves excluded)."""

    steps: int = 0
    seconds: float = 0.0
    data_wait_s: float = 0.0
    loss_sum: float = 0.0

    def add(self, result: dict, seconds: float) -> None:
        self.steps += 1
        self.seconds += seconds
        self.data_wait_s += result["data_wait_s"]
        self.loss_sum += result["loss"]


def train_fn(loop_config: dict) -> None:
    """Ray Train's `train_loop_per_worker`: the group's stage, then each stage the coordinator
    hands over after it (launch.WorkerGroup) while this process and its imports stay."""
    entered = time.time()
    run: StageRun | None = loop_config["run"]
    if run.sink is not None:  # a group restarted after a failure: the stage it trains now
        run = _unboxed(ray.get(run.sink.current.remote())) or run
    released = None
    while run is not None:
        worker = Worker(run, entered, released)
        try:
            complete = _train(worker)
        finally:
            worker.train_rows.close()  # stops this rank's Ray Data pipeline
        if not complete or run.sink is None:
            return
        if worker.rank == 0:  # after its last record: seen by the coordinator after them all
            run.sink.ended.remote(run.run_dir)
        del worker
        gc.collect()
        released = time.time()
        run = _next_run(run)
        entered = time.time()


def _unboxed(boxed: list | None) -> StageRun | None:
    """A run the coordinator handed over: [its object ref] (see launch.WorkerGroup.train)."""
    return ray.get(boxed[0]) if boxed else None


def _next_run(ended: StageRun) -> StageRun | None:
    """The stage handed over after `ended`, or None (the group ends); asked by every rank."""
    while True:
        answered, boxed = ray.get(ended.sink.next_run.remote(ended.run_dir))
        if answered:
            return _unboxed(boxed)
        time.sleep(0.05)


def _train(worker: Worker) -> bool:
    """Train the worker's stage; True when it reached its last step (not a stop before it)."""
    config = worker.config
    stop_at = worker.stop_at
    window, guard = Window(), Guard(config.train)
    if not worker.resumed:  # where the stage's counters start: its cost is measured from here
        worker.emit(EventRecord(event="start", step=worker.progress.step,
                                tokens=worker.progress.tokens, flops=worker.progress.flops))
    worker.emit(EventRecord(event="placement", step=worker.progress.step,
                            detail=worker.placement()))
    if worker.started_from_growth:  # the loss right after growth, for the function-preservation log
        worker.emit(EventRecord(event="growth", step=0, val_loss=worker.validate(),
                                tokens=worker.progress.tokens, flops=worker.progress.flops))
        worker.startup["validated"] = time.time()
    while worker.progress.step < stop_at:
        started = time.perf_counter()
        result = worker.train_step()
        stopping, nonfinite = worker.agree(result["finite"])
        if nonfinite:
            if not guard.handle(worker, result):
                return False  # on_nonfinite: stop (or too many rollbacks): the coordinator
                #               reports it
            continue
        if config.train.log_rows:
            worker.log_rows(result["row_ids"])
        window.add(result, time.perf_counter() - started)
        step, last = worker.progress.step, worker.progress.step == stop_at
        stopping = stopping and not last
        record = StepRecord(step=step, lr=result["lr"], grad_norm=result["grad_norm"],
                            tokens=worker.progress.tokens, flops=worker.progress.flops)
        if step % config.train.log_every == 0 or last:
            worker.summarise(window, record)
            window = Window()
        if step % config.train.val_every == 0 or last:
            record.val_loss = worker.validate()
        guard.watch_spikes(worker, result["loss"])
        worker.emit(record)
        worker.started()
        if step % config.checkpoint.every_steps == 0 or last or stopping:
            stepped = time.time()
            worker.save_checkpoint(record)
            guard.rollbacks = 0  # a checkpoint after the last rollback: training goes on normally
            if last:  # the stage's end, for the transition breakdown
                worker.emit(EventRecord(event="finish", step=step, detail={
                    "times": {"stepped": stepped, "saved": time.time()}}))
        _kill_rank_fault(worker)
        if stopping:
            worker.emit(EventRecord(event="stop", step=step, detail={"reason": "stop requested"}))
            return False
    return worker.progress.step >= config.total_steps


class Guard:
    """What a step with a non-finite loss or gradient norm leads to (`train.on_nonfinite`), and
    loss spikes (a z-score over a window of recent losses), logged as events."""

    def __init__(self, train: TrainConfig):
        self.policy = train.on_nonfinite
        self.max_rollbacks = train.max_rollbacks
        self.rollbacks = 0  # since the last checkpoint
        self.zscore, self.losses = train.spike_zscore, deque(maxlen=train.spike_window)

    def handle(self, worker: Worker, result: dict) -> bool:
        """Deal with a non-finite step (its update was not applied); False: end the stage."""
        start, step = result["start"], worker.progress.step
        detail = {"loss": _finite_or_text(result["loss"]),
                  "grad_norm": _finite_or_text(result["grad_norm"]),
                  "rows": [start, start + worker.config.batch_rows], "policy": self.policy}
        if self.policy == "skip":
            worker.emit(EventRecord(event="nonfinite", step=step,
                                    detail={**detail, "action": "skipped"}))
            return True
        if self.policy == "rollback" and self.rollbacks < self.max_rollbacks:
            self.rollbacks += 1
            to = worker.roll_back(start)
            worker.emit(EventRecord(event="nonfinite", step=step,
                                    detail={**detail, "action": f"rolled back to {to}"}))
            return True
        reason = ("train.on_nonfinite is stop" if self.policy == "stop" else
                  f"{self.rollbacks} rollbacks without a checkpoint since (train.max_rollbacks)")
        worker.emit(EventRecord(event="nonfinite", step=step, detail={**detail, "action": "stopped",
                                                                      "reason": reason}))
        return False

    def watch_spikes(self, worker: Worker, loss: float) -> None:
        if len(self.losses) >= max(8, self.losses.maxlen // 2):
            mean = sum(self.losses) / len(self.losses)
            spread = (sum((x - mean) ** 2 for x in self.losses) / len(self.losses)) ** 0.5
            z = (loss - mean) / spread if spread > 0 else 0.0
            if z > self.zscore:
                worker.emit(EventRecord(event="spike", step=worker.progress.step,
                                        detail={"loss": loss, "mean": mean, "std": spread, "z": z}))
        self.losses.append(loss)


def _finite_or_text(value: float) -> float | str:
    """JSON has no NaN or infinity: such values go into a record as text."""
    return value if math.isfinite(value) else str(value)


def _kill_rank_fault(worker: Worker) -> None:
    """Test hook: RAYGROW_FAULT=kill_rank:<rank>:<step> kills that rank once, as a lost node
    would."""
    fault = os.environ.get("RAYGROW_FAULT", "")
    marker = storage.join(worker.run.run_dir, ".fault-fired")
    if fault == f"kill_rank:{worker.rank}:{worker.progress.step}" and not storage.exists(marker):
        storage.write_bytes(marker, b"")
        os._exit(17)


# When this module, and torch, DeepSpeed and transformers with it, was imported in this process:
# a new stage's worker imports it on its way to the loop (the `imported` start-up stamp).
IMPORTED_AT = time.time()
