"""Training input through Ray Data against direct reads, side by side in one run.

    .venv/bin/python jobs/bench/ingest.py [--plan jobs/plans/tiny.yaml] [--steps 40] [--workers 1,2]
            [--s3-epochs 3] [--s3-documents 8] [--s3-rows-per-shard 32]

For each worker count, the same single-stage run (the plan's final shape, the same rows in the
same order) once with `data.ingest: direct` (each worker reads its rows in its own process) and
once with `data.ingest: ray_data` (a Ray Data pipeline per worker): tokens/s after the warm-up
window and the share of training-step time spent waiting for rows (`data_wait_frac`; targets:
throughput within 5% of direct, wait ≤ 2% of step time). Then, from a real S3-compatible server
(moto_server on 127.0.0.1), a small model trained for several epochs of a corpus of many
32-row shards with a 2-shard window, each ingest in turn: the GET requests per shard file per
epoch the training reads made (the server's access log; preparing the corpus not counted), so
that "reads each shard a bounded number of times" is counted, not assumed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from raygrow.config import RunConfig, from_dict  # noqa: E402

INGESTS = ("direct", "ray_data")
SHARD_HEAD = r'"HEAD /bench/\S*/train-\d+\.parquet'


def local_run(config: RunConfig, storage: str, workers: int, ingest: str, steps: int,
              warmup: int) -> dict:
    """tokens/s and input wait that `raygrow train` reports, after the warm-up window."""
    from raygrow import driver

    train = dataclasses.replace(config.train, workers=workers, cpus_per_worker=None,
                                tokens=(steps + 1) * config.train.batch_tokens, stop_after=steps,
                                log_every=warmup, val_every=steps, deterministic=False)
    run = dataclasses.replace(config, name=f"ingest-{ingest}-{workers}w", storage=storage,
                              train=train,
                              data=dataclasses.replace(config.data, ingest=ingest,
                                                       cache_dir=config.dataset_root),
                              checkpoint=dataclasses.replace(config.checkpoint, every_steps=steps))
    driver.train(run, show_progress=False)
    windows = [record for record in _records(Path(run.run_dir)) if "tokens_per_s" in record][1:]
    return {"tokens_per_s": sum(r["tokens_per_s"] for r in windows) / len(windows),
            "data_wait_frac": sum(r["data_wait_frac"] for r in windows) / len(windows),
            "worst_wait_frac": max(r["data_wait_frac"] for r in windows)}


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def s3_counts(epochs: float, workers: int, documents: int, rows_per_shard: int) -> dict[str, dict]:
    """Per ingest: GETs per train shard per epoch of a run from moto_server over `epochs`."""
    with _moto() as (endpoint, log):
        _make_bucket(endpoint)
        base = {"storage": "s3://bench/runs", "s3": {"endpoint_url": endpoint},
                "data": {"source": "stdlib", "seq_len": 32, "max_documents": documents,
                         "val_fraction": 0.2, "rows_per_shard": rows_per_shard,
                         "shuffle_window": 2},
                "model": {"layers": 1, "hidden": 32, "heads": 4, "kv_heads": 2, "ffn": 64},
                "train": {"tokens": 2048, "batch_tokens": 2048, "micro_batch": 16,
                          "workers": workers, "lr": 1e-3, "warmup_steps": 1, "log_every": 8,
                          "val_rows": 8}}
        from raygrow import driver, storage
        from raygrow.data import prepare

        storage.configure_s3(endpoint)
        manifest = prepare(from_dict(RunConfig, {**base, "name": "s3-prepare"}),
                           show_progress=False)
        batch_rows = base["train"]["batch_tokens"] // base["data"]["seq_len"]
        steps = max(1, round(epochs * manifest.train_rows / batch_rows))
        base["train"].update(tokens=steps * base["train"]["batch_tokens"], val_every=steps)
        base["checkpoint"] = {"every_steps": steps}
        out = {}
        for ingest in INGESTS:
            config = from_dict(RunConfig, {**base, "name": f"s3-{ingest}",
                                           "data": {**base["data"], "ingest": ingest}})
            before = log.stat().st_size
            driver.train(config, show_progress=False)
            requests = log.read_bytes()[before:].decode(errors="replace")
            gets = Counter(re.findall(r'"GET /bench/\S*/(train-\d+\.parquet)', requests))
            read = [gets[name] for name in manifest.train_shards if gets.get(name)]
            trained = steps * batch_rows / manifest.train_rows
            out[ingest] = {"shards": len(manifest.train_shards), "epochs": trained,
                           "steps": steps, "gets": sum(read), "shards_read": len(read),
                           "max_gets": max(read), "heads": len(re.findall(SHARD_HEAD, requests)),
                           "gets_per_shard_epoch": sum(read) / len(manifest.train_shards)
                           / trained}
        return out


class _moto:
    """moto_server on a free port of 127.0.0.1, its access log in a temporary file."""

    def __enter__(self) -> tuple[str, Path]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self._dir = tempfile.TemporaryDirectory(prefix="raygrow-moto-")
        log = Path(self._dir.name) / "access.log"
        server = Path(sys.executable).with_name("moto_server")
        self._process = subprocess.Popen([str(server), "-H", "127.0.0.1", "-p", str(port)],
                                         stdout=log.open("wb"), stderr=subprocess.STDOUT)
        endpoint = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return endpoint, log
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"moto_server did not listen on {port}")

    def __exit__(self, *exc) -> None:
        self._process.terminate()
        self._process.wait(timeout=30)
        self._dir.cleanup()


def _make_bucket(endpoint: str) -> None:
    import boto3

    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", default="jobs/plans/tiny.yaml")
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per local run")
    parser.add_argument("--warmup", type=int, default=8, help="steps left out as warm-up")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    parser.add_argument("--s3-epochs", type=float, default=3.0,
                        help="epochs the S3 runs train (0: no S3 runs)")
    parser.add_argument("--s3-documents", type=int, default=8,
                        help="stdlib documents in the S3 corpus (8: 1432 train rows)")
    parser.add_argument("--s3-rows-per-shard", type=int, default=32,
                        help="rows per shard of the S3 corpus (32: 45 train shards)")
    args = parser.parse_args()
    # Before Ray starts: its worker processes take the environment the driver had then.
    for name, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"),
                        ("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_EC2_METADATA_DISABLED", "true")):
        os.environ.setdefault(name, value)
    from throughput import single_stage

    config = single_stage(args.plan)
    figures = {}
    with tempfile.TemporaryDirectory(prefix="raygrow-bench-") as storage:
        for workers in [int(w) for w in args.workers.split(",") if w]:  # "": S3 counts only
            for ingest in INGESTS:
                figures[(workers, ingest)] = local_run(config, storage, workers, ingest,
                                                       args.steps, args.warmup)
    print(f"\n{config.model.layers}x{config.model.hidden}, seq_len {config.data.seq_len}, batch "
          f"{config.train.batch_tokens} tokens, {args.steps - args.warmup} timed steps, "
          f"{os.cpu_count()} CPUs")
    print(f"{'workers':>7} {'ingest':>9} {'tokens/s':>10} {'ratio':>6} {'wait':>7} {'worst':>7}")
    for (workers, ingest), figure in figures.items():
        ratio = figure["tokens_per_s"] / figures[(workers, "direct")]["tokens_per_s"]
        print(f"{workers:7d} {ingest:>9} {figure['tokens_per_s']:10.0f} {ratio:6.3f} "
              f"{figure['data_wait_frac']:7.2%} {figure['worst_wait_frac']:7.2%}")
    if args.s3_epochs:
        counts = s3_counts(args.s3_epochs, 2, args.s3_documents, args.s3_rows_per_shard)
        print("\nfrom S3 (moto_server), 2 workers: GET requests for train shards")
        for ingest, count in counts.items():
            print(f"{ingest:>9}: {count['shards']} shards, {count['epochs']:.2f} epochs in "
                  f"{count['steps']} steps, {count['gets']} GETs of {count['shards_read']} shards "
                  f"(at most {count['max_gets']} of one), {count['gets_per_shard_epoch']:.2f} per "
                  f"shard per epoch; {count['heads']} HEADs")

if __name__ == "__main__":
    main()
