"""The driver of a single-stage run: validate, prepare data, run Ray Train, summarise, export.

Order matters for invariant 5: everything that can be checked without a cluster (config, corpus
paths, tokenizer) is checked before Ray starts or anything is written.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from pathlib import Path

import ray
import ray.train
from ray.train.torch import TorchTrainer
from tqdm import tqdm

from raygrow.config import RunConfig
from raygrow.data import Manifest, check_sources, dataset_dir, prepare
from raygrow.errors import ConfigError, RaygrowError
from raygrow.export import export_checkpoint
from raygrow.model import param_counts
from raygrow.report import plot_run
from raygrow.train import checkpoint
from raygrow.train.metrics import MetricsSink

log = logging.getLogger("raygrow")


def check(config: RunConfig) -> None:
    """Everything that can be checked without a cluster; raises a one-line RaygrowError."""
    check_sources(config.data)
    run_dir = Path(config.run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError("name", f"{run_dir} exists and is not a directory")


def ensure_ray() -> None:
    """Join the cluster named by RAY_ADDRESS (as `ray job submit` sets), else start a local one."""
    if not ray.is_initialized():
        ray.init(logging_level=logging.WARNING, log_to_driver=True,
                 runtime_env={"env_vars": {"PYTHONWARNINGS": "ignore::FutureWarning"}})


def worker_resources(config: RunConfig) -> tuple[dict, bool, int]:
    """(resources per worker, use_gpu, torch threads per worker), refusing what cannot be scheduled.

    Training reads packed shards directly (no Ray Data tasks run during fit), so the workers may
    take every CPU; data preparation runs before training, never beside it.
    """
    total = ray.cluster_resources()
    workers = config.train.workers
    use_gpu = config.train.use_gpu if config.train.use_gpu is not None else total.get("GPU", 0) >= 1
    cpus = config.train.cpus_per_worker or max(1.0, math.floor(total.get("CPU", 1) / workers))
    if cpus * workers > total.get("CPU", 0) and not _autoscaling():
        if config.train.cpus_per_worker is None:
            cpus = total.get("CPU", 1) / workers  # more workers than CPUs: share them
        else:
            raise ConfigError("train.cpus_per_worker",
                              f"{workers} workers × {cpus} CPUs do not fit the cluster's "
                              f"{total.get('CPU', 0):g} CPUs; lower train.workers or cpus_per_worker")
    if use_gpu and total.get("GPU", 0) < workers and not _autoscaling():
        raise ConfigError("train.workers", f"{workers} GPU workers but the cluster has "
                          f"{total.get('GPU', 0):g} GPUs")
    return {"CPU": cpus}, use_gpu, max(1, int(cpus))


def _autoscaling() -> bool:
    """Whether nodes can still join (then a request beyond current capacity is not an error)."""
    return os.environ.get("RAYGROW_AUTOSCALING", "") == "1"


class MetricsLog:
    """Appends rank 0's records to <run>/metrics.jsonl; a resume drops records past its step."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / "metrics.jsonl"

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def write(self, new: list[dict]) -> None:
        kept = self.records()
        for record in new:
            if record.get("event") == "resume":
                kept = [r for r in kept if r.get("step", 0) <= record["step"] or "event" in r]
            kept.append({**record, "time": time.time()})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(tmp, self.path)


def _fit_with_progress(trainer: TorchTrainer, sink, metrics: MetricsLog, total_steps: int,
                       show_progress: bool):
    outcome: dict = {}

    def fit() -> None:
        try:
            outcome["result"] = trainer.fit()
        except Exception as error:  # noqa: BLE001 - reported to the user as one line below
            outcome["error"] = error

    thread = threading.Thread(target=fit, daemon=True)
    thread.start()
    bar = tqdm(total=total_steps, desc="train", unit="step", disable=not show_progress)
    while thread.is_alive() or bar.n < total_steps:
        thread.join(timeout=0.5)
        records = ray.get(sink.drain.remote())
        if records:
            metrics.write(records)
            for record in records:
                if "step" in record:
                    bar.n = record["step"]
                if "loss" in record:
                    bar.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{record['tokens_per_s']:.0f}")
            bar.refresh()
        if not thread.is_alive():
            break
    bar.close()
    if "error" in outcome:
        raise RaygrowError(f"training failed: {_first_line(outcome['error'])}")
    return outcome["result"]


def summarise(config: RunConfig, manifest: Manifest, records: list[dict], wall_s: float) -> dict:
    vocab = config.model.vocab or manifest.vocab_size
    steps = [r for r in records if "step" in r and "event" not in r]
    last = steps[-1] if steps else {}
    losses = [r for r in steps if "loss" in r]
    val = [r for r in steps if "val_loss" in r]
    speeds = [r["tokens_per_s"] for r in losses]
    stage = {
        "shape": config.model.__dict__, **param_counts(config.model, vocab),
        "workers": config.train.workers, "zero_stage": config.train.zero_stage,
        "steps": last.get("step", 0), "tokens": last.get("tokens", 0), "flops": last.get("flops", 0.0),
        "final_train_loss": losses[-1]["loss"] if losses else None,
        "final_val_loss": val[-1]["val_loss"] if val else None,
        "tokens_per_s": sum(speeds) / len(speeds) if speeds else None,
    }
    return {"name": config.name, "complete": stage["steps"] >= config.total_steps, "stages": [stage],
            "total_tokens": stage["tokens"], "total_flops": stage["flops"], "wall_s": wall_s,
            "dataset": dataset_dir(config), "config": config.to_dict()}


def train(config: RunConfig, show_progress: bool = True) -> dict:
    """Run `config` to completion (or to `train.stop_after`); returns summary.json's contents."""
    started = time.time()
    check(config)
    ensure_ray()
    manifest = prepare(config, show_progress=show_progress)
    if config.model.vocab is not None and config.model.vocab < manifest.vocab_size:
        raise ConfigError("model.vocab", f"{config.model.vocab} is smaller than the tokenizer's "
                          f"{manifest.vocab_size} tokens; raise it or leave it unset")
    from raygrow.train.loop import train_fn  # imports DeepSpeed: only once a run really starts

    resources, use_gpu, threads = worker_resources(config)
    run_dir = Path(config.run_dir).resolve()
    checkpoint.latest_valid(run_dir)  # refuse a run whose checkpoints are all broken, up front
    sink = MetricsSink.remote()
    trainer = TorchTrainer(
        train_fn,
        train_loop_config={"config": config.to_dict(), "run_dir": str(run_dir), "sink": sink,
                           "dataset_dir": dataset_dir(config), "threads": threads,
                           "fault": os.environ.get("RAYGROW_FAULT")},
        scaling_config=ray.train.ScalingConfig(num_workers=config.train.workers, use_gpu=use_gpu,
                                               resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=config.name, storage_path=str(run_dir.parent),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=config.checkpoint.keep),
            failure_config=ray.train.FailureConfig(max_failures=config.train.max_failures)),
    )
    metrics = MetricsLog(run_dir)
    result = _fit_with_progress(trainer, sink, metrics, config.total_steps, show_progress)
    if result.error is not None:
        raise RaygrowError(f"training failed: {_first_line(result.error)}")
    summary = summarise(config, manifest, metrics.records(), time.time() - started)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    plot_run(metrics.records(), run_dir / "report.png", title=config.name)
    if summary["complete"]:
        export_checkpoint(checkpoint.latest_valid(run_dir), run_dir / "export", manifest)
    return summary


def _first_line(error: BaseException) -> str:
    """The last line of a worker's error: the exception itself, without its traceback."""
    text = str(error).strip() or type(error).__name__
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
