"""Training throughput of `raygrow train` against a bare PyTorch loop, side by side in one run.

Same model, global batch, micro-batch, precision and threads:

    .venv/bin/python jobs/bench/throughput.py [--plan jobs/plans/tiny.yaml] [--steps 40]
    python jobs/bench/throughput.py --plan jobs/plans/bench_1b.yaml --steps 24 --warmup 4  # GPU

Prints tokens/s and MFU for each and the ratio to the bare loop (target ≥ 0.9), and for raygrow
the share of step time its workers waited for rows (through Ray Data, data.ingest's default).
On a CPU, between the two: the bare loop again in a second thread of this process (Ray Train v2
runs a worker's loop in a thread of its own), and the DeepSpeed engine a worker builds, driven in
this process without Ray (ZeRO-0 and the plan's stage), so that the gap splits into parts.
`--ingest direct` runs raygrow's workers without Ray Data (the plan's data.ingest otherwise).
On a GPU the bare loop runs the plan's precision with autocast and a fused AdamW; `raygrow
train` runs it through DeepSpeed (bf16 weights, fp32 master copy) at the plan's ZeRO stage. The
first window of steps is warm-up and is left out of every figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from raygrow.config import RunConfig, load_config  # noqa: E402
from raygrow.config.run import INGESTS  # noqa: E402


def bare_loop(config: RunConfig, vocab: int, steps: int, warmup: int, threads: int) -> float:
    """tokens/s of a plain single-process loop: the same forward, loss, AdamW and batch."""
    from raygrow.model import build_model, compile_blocks

    torch.set_num_threads(threads)
    device = _device()
    model = build_model(config.model, vocab, seed=config.train.seed).to(device)
    if config.train.compile:
        compile_blocks(model)
    fused = {"fused": True} if device.type == "cuda" else {"foreach": False}
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr, **fused)
    bf16 = config.train.precision == "bf16"

    def step(rows: torch.Tensor) -> None:
        for micro in rows.split(config.train.micro_batch):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model(input_ids=micro[:, :-1]).logits
            loss = F.cross_entropy(logits.float().reshape(-1, vocab), micro[:, 1:].reshape(-1))
            (loss / config.grad_accum(1)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return _timed(config, vocab, steps, warmup, step)  # its model is freed on return


def in_thread(loop, *args) -> float:
    """`loop(*args)` in a new thread of this process, as Ray Train v2 runs a worker's loop (in
    its `TrainingThread`, not the process's main thread)."""
    result = {}
    thread = threading.Thread(target=lambda: result.update(value=loop(*args)))
    thread.start()
    thread.join()
    return result["value"]


def engine_loop(config: RunConfig, vocab: int, steps: int, warmup: int, threads: int,
                zero_stage: int) -> float:
    """tokens/s of the DeepSpeed engine a raygrow worker builds (raygrow.train.engine, at
    `zero_stage`), driven in this process as a worker drives it (one backward and engine.step per
    micro-batch), on the bare loop's batch: the DeepSpeed part of the gap, without Ray. CPU
    only: the one-rank process group here is gloo (single_process_group)."""
    from raygrow.model import build_model, compile_blocks
    from raygrow.train.engine import build_engine, single_process_group
    from raygrow.train.loop import causal_lm_loss

    torch.set_num_threads(threads)
    single_process_group()
    config = dataclasses.replace(config, train=dataclasses.replace(config.train,
                                                                   zero_stage=zero_stage))
    model = build_model(config.model, vocab, seed=config.train.seed)
    if config.train.compile:
        compile_blocks(model)
    engine = build_engine(model, config, 1)

    def step(rows: torch.Tensor) -> None:
        for micro in rows.split(config.train.micro_batch):
            engine.backward(causal_lm_loss(engine, micro))
            engine.step()

    tokens_per_s = _timed(config, vocab, steps, warmup, step)
    engine.destroy()
    return tokens_per_s


def _timed(config: RunConfig, vocab: int, steps: int, warmup: int, step) -> float:
    """tokens/s of `step(rows)` over `steps` steps on one fixed random batch, the first `warmup`
    left out."""
    device = _device()
    generator = torch.Generator().manual_seed(0)
    rows = torch.randint(0, vocab, (config.batch_rows, config.data.seq_len + 1),
                         generator=generator).to(device)
    started = None
    for index in range(steps):
        if index == warmup:
            _sync(device)
            started = time.perf_counter()
        step(rows)
    _sync(device)
    seconds = time.perf_counter() - started
    return (steps - warmup) * config.batch_rows * config.data.seq_len / seconds


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def single_stage(plan: str) -> RunConfig:
    """The plan's final shape as one stage (a growth plan's last model is what is benchmarked)."""
    config = load_config(plan)
    return dataclasses.replace(config, model=config.plan_stages[-1].shape, stages=[])


def raygrow_run(config: RunConfig, storage: str, workers: int, steps: int,
                warmup: int) -> tuple[float, float]:
    """(tokens/s, share of step time waiting for rows) that `raygrow train` itself reports,
    after the warm-up window. On a CPU the workers take their default share (the machine's CPUs
    less what their Ray Data read tasks ask for: data.ingest_cpus), with the bare loop's threads."""
    from raygrow import driver

    cpus = None
    if torch.cuda.is_available():  # a GPU worker needs a few threads, not the whole node
        cpus = max(1, min(os.cpu_count() or 1, 8 * workers) // workers)
    train = dataclasses.replace(config.train, workers=workers, cpus_per_worker=cpus,
                                tokens=(steps + 1) * config.train.batch_tokens, stop_after=steps,
                                log_every=warmup, val_every=steps, deterministic=False)
    # One step more than is run: the invocation stops (checkpointed) as a preemption would, so the
    # figures are not followed by the stage's HF export (minutes for a 1B model, and not measured).
    run = dataclasses.replace(config, name=f"bench-{workers}w", storage=storage, train=train,
                              data=dataclasses.replace(config.data, cache_dir=config.dataset_root),
                              checkpoint=dataclasses.replace(config.checkpoint, every_steps=steps))
    driver.train(run, show_progress=False)
    records = [json.loads(line)
               for line in (Path(run.run_dir) / "metrics.jsonl").read_text().splitlines()]
    windows = [r for r in records if "tokens_per_s" in r][1:]  # drop the warm-up window
    return (sum(r["tokens_per_s"] for r in windows) / len(windows),
            sum(r["data_wait_frac"] for r in windows) / len(windows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", default="jobs/plans/tiny.yaml")
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per measurement")
    parser.add_argument("--warmup", type=int, default=8, help="steps left out as warm-up")
    parser.add_argument("--workers", default=None,
                        help="comma-separated worker counts for raygrow train (default: 1,2 on "
                             "CPU, one per GPU on a GPU machine)")
    parser.add_argument("--ingest", choices=INGESTS, default=None,
                        help="data.ingest of raygrow's workers (default: the plan's)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the blocks in both loops")
    args = parser.parse_args()
    config = single_stage(args.plan)
    if args.compile:
        config = dataclasses.replace(config, train=dataclasses.replace(config.train, compile=True))
    if args.ingest:
        config = dataclasses.replace(config, data=dataclasses.replace(config.data,
                                                                      ingest=args.ingest))
    from raygrow.data import load_tokenizer
    from raygrow.model import flops_per_token, param_counts
    from raygrow.train.metrics import device_peak

    vocab = config.model.vocab_size(load_tokenizer(config.data.tokenizer).vocab_size)
    gpus = torch.cuda.device_count()
    worker_counts = ([int(w) for w in args.workers.split(",")] if args.workers
                     else [gpus] if gpus else [1, 2])
    threads = os.cpu_count() or 1
    device, peak = device_peak()
    # name -> (tokens/s, devices it ran on); a CPU's measured peak already spans all its threads
    figures = {"bare PyTorch loop": (bare_loop(config, vocab, args.steps, args.warmup, threads), 1)}
    if gpus:
        torch.cuda.empty_cache()  # the raygrow runs that follow need the GPU's memory
    else:  # where the CPU gap sits: a second thread, then DeepSpeed without Ray
        figures["bare loop, second thread"] = (
            in_thread(bare_loop, config, vocab, args.steps, args.warmup, threads), 1)
        for stage in sorted({0, config.train.zero_stage}):
            figures[f"DeepSpeed engine, ZeRO-{stage}"] = (
                engine_loop(config, vocab, args.steps, args.warmup, threads, stage), 1)
    waits = {}
    with tempfile.TemporaryDirectory(prefix="raygrow-bench-") as storage:
        for workers in worker_counts:
            name = f"raygrow train, {workers} worker(s)"
            tokens_per_s, waits[name] = raygrow_run(config, storage, workers, args.steps,
                                                    args.warmup)
            figures[name] = (tokens_per_s, workers if gpus else 1)
    bare = figures["bare PyTorch loop"][0]
    per_token = flops_per_token(config.model, vocab, config.data.seq_len)
    params = param_counts(config.model, vocab)
    print(f"\nmodel {config.model.layers}x{config.model.hidden} ({params['params'] / 1e9:.3f}B "
          f"params, {params['non_embedding_params'] / 1e9:.3f}B non-embedding, {per_token:.4g} "
          f"FLOPs/token), seq_len {config.data.seq_len}, batch {config.train.batch_tokens} tokens, "
          f"micro-batch {config.train.micro_batch}, {config.train.precision}, "
          f"ZeRO-{config.train.zero_stage}, "
          f"{'compiled blocks' if config.train.compile else 'eager'}, device {device} (peak "
          f"{peak:.4g} FLOP/s), {threads} CPU threads, {args.steps - args.warmup} timed steps")
    print(f"{'loop':32} {'tokens/s':>10} {'MFU':>7} {'ratio':>7} {'data wait':>10}")
    for name, (tokens_per_s, devices) in figures.items():
        mfu = per_token * tokens_per_s / devices / peak
        wait = f"{waits[name]:10.2%}" if name in waits else f"{'-':>10}"
        print(f"{name:32} {tokens_per_s:10.0f} {mfu:7.1%} {tokens_per_s / bare:7.2f} {wait}")


if __name__ == "__main__":
    main()
