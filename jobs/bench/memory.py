"""Peak memory and step time with and without activation checkpointing, side by side.

Each mode (`train.activation_checkpointing`: none, every_k, full) trains the same model on the
same rows for a few optimizer steps through the real DeepSpeed engine, built as a Ray Train
worker builds it (raygrow.train.engine.engine_from_state, the model checkpointed with
raygrow.train.engine.checkpoint_activations). Every mode runs in a fresh process of its own, so
one mode's peak cannot hide another's:

- CPU: peak resident memory (`ru_maxrss`) of that process, and how far the training steps
  raised it above the resident memory after the engine was built (the activations, gradients
  and optimizer step: the part checkpointing changes).
- CUDA: `torch.cuda.max_memory_allocated` over the steps, and the same above what was
  allocated after the engine was built.

Step time is the median over the steps after the first.

    .venv/bin/python jobs/bench/memory.py [--layers 8] [--hidden 256] [--seq 512]
        [--micro-batch 8] [--accum 1] [--steps 6] [--zero 0] [--every 2] [--precision fp32]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

MODES = ("none", "every_k", "full")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--ffn", type=int, default=None, help="default: 8/3 × hidden")
    parser.add_argument("--vocab", type=int, default=260, help="the byte tokenizer's size")
    parser.add_argument("--seq", type=int, default=512, help="tokens per row")
    parser.add_argument("--micro-batch", type=int, default=8, help="rows per forward pass")
    parser.add_argument("--accum", type=int, default=1, help="micro-batches per optimizer step")
    parser.add_argument("--steps", type=int, default=6, help="optimizer steps per mode")
    parser.add_argument("--zero", type=int, default=0, help="DeepSpeed ZeRO stage")
    parser.add_argument("--every", type=int, default=2, help="every_k: the k")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default=None,
                        help="default: bf16 on a GPU, fp32 on CPU")
    parser.add_argument("--modes", default=",".join(MODES))
    # one mode, measured in a process of its own (set by main)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_config(args: argparse.Namespace, mode: str, precision: str):
    from raygrow.config import RunConfig, from_dict

    rows = args.micro_batch * args.accum
    return from_dict(RunConfig, {
        "model": {"layers": args.layers, "hidden": args.hidden, "heads": args.heads,
                  "ffn": args.ffn, "vocab": args.vocab, "max_positions": args.seq},
        "data": {"seq_len": args.seq},
        "train": {"batch_tokens": rows * args.seq, "micro_batch": args.micro_batch,
                  "zero_stage": args.zero, "precision": precision, "warmup_steps": 0,
                  "activation_checkpointing": mode, "activation_checkpointing_every": args.every}})


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(args: argparse.Namespace, mode: str) -> dict:
    """Train `args.steps` steps in this process at checkpointing `mode`."""
    import torch

    from raygrow.model import build_model
    from raygrow.train.engine import checkpoint_activations, engine_from_state, single_process_group
    from raygrow.train.loop import causal_lm_loss

    cuda = torch.cuda.is_available()
    config = run_config(args, mode, args.precision or ("bf16" if cuda else "fp32"))
    device = torch.device("cuda" if cuda else "cpu")
    single_process_group()
    model = build_model(config.model, args.vocab, seed=0)
    chosen = checkpoint_activations(model, mode, args.every)
    engine = engine_from_state(model.to(device), config, 1)
    generator = torch.Generator().manual_seed(0)
    batches = torch.randint(0, args.vocab, (args.steps, config.batch_rows, args.seq + 1),
                            generator=generator)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resident_bytes()
    seconds, losses = [], []
    for batch in batches:
        started = time.perf_counter()
        for micro in batch.split(args.micro_batch):
            loss = causal_lm_loss(engine, micro.to(device))
            engine.backward(loss)
            engine.step()
        losses.append(loss.item())  # .item() waits for the device
        seconds.append(time.perf_counter() - started)
    peak = (torch.cuda.max_memory_allocated() if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"mode": mode, "blocks": chosen,
            "device": torch.cuda.get_device_name() if cuda else "cpu", "peak": peak, "base": base,
            "step_s": statistics.median(seconds[1:] or seconds), "losses": losses}


def run_child(args: argparse.Namespace, mode: str) -> dict:
    """`mode` measured in a fresh process (a process's peak RSS never comes down)."""
    command = [sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--child", mode]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"memory.py: mode {mode} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def table(results: list[dict], args: argparse.Namespace) -> str:
    cuda = results[0]["device"] != "cpu"
    what = "CUDA max allocated" if cuda else "peak RSS"
    plain = next((r for r in results if r["mode"] == "none"), results[0])
    lines = [f"device {results[0]['device']}; {args.layers} layers × {args.hidden}, "
             f"seq {args.seq}, micro-batch {args.micro_batch} × {args.accum}, ZeRO-{args.zero}, "
             f"{args.precision or ('bf16' if cuda else 'fp32')}, {args.steps} steps",
             f"| mode | blocks | {what} MiB | ratio | above engine MiB | ratio | step s | ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for result in results:
        above, plain_above = result["peak"] - result["base"], plain["peak"] - plain["base"]
        name = f"every_k (k={args.every})" if result["mode"] == "every_k" else result["mode"]
        lines.append(f"| {name} | {len(result['blocks'])}/{args.layers} | "
                     f"{result['peak'] / 2**20:,.0f} | {result['peak'] / plain['peak']:.2f} | "
                     f"{above / 2**20:,.0f} | {above / plain_above:.2f} | {result['step_s']:.3f} | "
                     f"{result['step_s'] / plain['step_s']:.2f} |")
    drift = max(abs(a - b) for r in results for a, b in zip(r["losses"], plain["losses"]))
    lines.append(f"largest loss difference from `none` over the steps: {drift:.2e}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    if args.child:
        print(json.dumps(measure(args, args.child)))
        return
    results = [run_child(args, mode) for mode in args.modes.split(",")]
    print(table(results, args))


if __name__ == "__main__":
    main()
