"""Training throughput of `raygrow train` (1 and 2 workers) against a bare PyTorch loop.

Same model, global batch, micro-batch and CPU threads, measured side by side in one run:

    .venv/bin/python jobs/bench/throughput.py [--plan jobs/plans/tiny.yaml] [--steps 40]

Prints tokens/s for each and the ratio to the bare loop (target ≥ 0.9). The first window of
steps is warm-up and is left out of every figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from raygrow.config import RunConfig, load_config  # noqa: E402


def bare_loop(config: RunConfig, vocab: int, steps: int, warmup: int, threads: int) -> float:
    """tokens/s of a plain single-process loop: the same forward, loss, AdamW and batch."""
    from raygrow.model import build_model

    torch.set_num_threads(threads)
    model = build_model(config.model, vocab, seed=config.train.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr, foreach=False)
    generator = torch.Generator().manual_seed(0)
    rows = torch.randint(0, vocab, (config.batch_rows, config.data.seq_len + 1), generator=generator)
    started = None
    for step in range(steps):
        if step == warmup:
            started = time.perf_counter()
        for micro in rows.split(config.train.micro_batch):
            logits = model(input_ids=micro[:, :-1]).logits
            loss = F.cross_entropy(logits.float().reshape(-1, vocab), micro[:, 1:].reshape(-1))
            (loss / config.grad_accum(1)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return (steps - warmup) * config.batch_rows * config.data.seq_len / (time.perf_counter() - started)


def single_stage(plan: str) -> RunConfig:
    """The plan's final shape as one stage (a growth plan's last model is what is benchmarked)."""
    config = load_config(plan)
    return dataclasses.replace(config, model=config.plan_stages[-1].shape, stages=[])


def raygrow_run(config: RunConfig, storage: str, workers: int, steps: int, warmup: int) -> float:
    """tokens/s that `raygrow train` itself reports, after the warm-up window."""
    from raygrow import driver

    cpus = os.cpu_count() or 1
    train = dataclasses.replace(config.train, workers=workers, cpus_per_worker=max(1, cpus // workers),
                                tokens=steps * config.train.batch_tokens, log_every=warmup, val_every=steps,
                                deterministic=False)
    run = dataclasses.replace(config, name=f"bench-{workers}w", storage=storage, train=train,
                              data=dataclasses.replace(config.data, cache_dir=config.dataset_root),
                              checkpoint=dataclasses.replace(config.checkpoint, every_steps=steps))
    driver.train(run, show_progress=False)
    records = [json.loads(line) for line in (Path(run.run_dir) / "metrics.jsonl").read_text().splitlines()]
    windows = [r for r in records if "tokens_per_s" in r][1:]  # drop the warm-up window
    return sum(r["tokens_per_s"] for r in windows) / len(windows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", default="jobs/plans/tiny.yaml")
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per measurement")
    parser.add_argument("--warmup", type=int, default=8, help="steps left out as warm-up")
    args = parser.parse_args()
    config = single_stage(args.plan)
    from raygrow.data import load_tokenizer

    vocab = config.model.vocab or load_tokenizer(config.data.tokenizer).vocab_size
    threads = os.cpu_count() or 1
    figures = {"bare PyTorch loop": bare_loop(config, vocab, args.steps, args.warmup, threads)}
    with tempfile.TemporaryDirectory(prefix="raygrow-bench-") as storage:
        for workers in (1, 2):
            figures[f"raygrow train, {workers} worker(s)"] = raygrow_run(
                config, storage, workers, args.steps, args.warmup)
    bare = figures["bare PyTorch loop"]
    print(f"\nmodel {config.model.layers}x{config.model.hidden}, batch {config.train.batch_tokens} tokens, "
          f"micro-batch {config.train.micro_batch}, {threads} CPU threads, {args.steps - args.warmup} timed steps")
    print(f"{'loop':32} {'tokens/s':>10} {'ratio':>7}")
    for name, tokens_per_s in figures.items():
        print(f"{name:32} {tokens_per_s:10.0f} {tokens_per_s / bare:7.2f}")


if __name__ == "__main__":
    main()
