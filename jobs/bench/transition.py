"""Stage-transition cost against a plain checkpoint save + load, and input starvation.

    .venv/bin/python jobs/bench/transition.py [--from OUT_DIR] [--scale 0.1] [--storage DIR] [--out DIR]

Transition: summary.json's `transitions[].seconds`, the time from the last step record of stage k
to the first step record of stage k+1. It covers stage k's final checkpoint, the end of its
worker group, the growth itself (load, grow, save), the new worker group (or, when stage k+1
keeps stage k's worker layout, the hand-over to stage k's waiting workers: see
raygrow.train.launch.WorkerGroup), the engine build and state load, the validation logged right
after growth and the first step. Stage k's HF export starts once stage k+1 is grown and runs
beside its training (a Ray task the coordinator does not wait for): its seconds are printed as
`export (beside)`, not a part of the sum.
Records are time-stamped when the coordinator writes them (every 0.5 s), so each figure is good
to about ±0.5 s. Its breakdown (summary.json's `transitions[].breakdown`) comes from stamps the
workers and the coordinator take themselves: stage k's last step and final checkpoint (rank 0),
fit() returning, the growth task, fit() of stage k+1, then in its rank-0 worker the
process start, the imports, Ray Train's call of the loop, the data readers, the checkpoint load,
the engine, the grown model's first validation and the first step.

Against it, measured here on the larger model's final checkpoint of the same run (full state:
weights and AdamW moments, as a plain resume of that model would save and load):
  save + load      raygrow.train.checkpoint.save and .load (load verifies sha256, as every load
                   does); median of 5, warm page cache, the same disk as the run
  engine re-init   in this process, one rank (gloo): build the model, copy the weights in,
                   DeepSpeed engine at the stage's ZeRO stage, load_full_state; median of 3
                   after one warm-up (the worker's imports and process start are not in it)
  cold start       a fresh Python process that imports, loads that checkpoint and builds the
                   engine once (what a new worker pays, less Ray's scheduling and actor start)
The target (DESIGN.md) is transition <= 3x save + load; the ratios with the warm engine re-init
and with the cold start in place of the load are printed beside it.

Input starvation: the share of training-step time spent waiting for the batch (`data_wait_frac`
of every logged window, weighted by the window's duration), per run; target <= 2%.

Runs: with --from, the runs of a growth_speedup.py output directory (its results.json);
otherwise this script trains the growth plans of growth_speedup.py (stack, clone_zero) at --scale.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import growth_speedup  # noqa: E402

from raygrow.config import RunConfig, from_dict  # noqa: E402
from raygrow.coordinator.summary import BREAKDOWN  # noqa: E402
from raygrow.data import Manifest  # noqa: E402
from raygrow.errors import RaygrowError  # noqa: E402
from raygrow.train import checkpoint  # noqa: E402

STARVATION_TARGET = 0.02
BREAKDOWN_ORDER = tuple(dict.fromkeys(part for _, part in BREAKDOWN if part))
TRANSITION_TARGET = 3.0


def _median_seconds(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def save_load_seconds(source: Path) -> tuple[float, float, int]:
    """(save s, load s, bytes on disk) of a checkpoint, via raygrow's own save and load."""
    state, meta = checkpoint.load(source)
    with tempfile.TemporaryDirectory(prefix="raygrow-bench-ckpt-", dir=source.parent) as tmp:
        target = Path(tmp) / "checkpoint"
        save = _median_seconds(lambda: checkpoint.save(target, state, meta), repeats=5)
        load = _median_seconds(lambda: checkpoint.load(target), repeats=5)
        size = sum(p.stat().st_size for p in target.iterdir())
    return save, load, size


def _single_rank_group() -> None:
    """A one-rank gloo group, as Ray Train gives each worker, so DeepSpeed can initialise here."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": "0", "WORLD_SIZE": "1",
                       "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"})
    dist.init_process_group("gloo", rank=0, world_size=1)


def _rebuild(stage_config: RunConfig, state, manifest: Manifest) -> None:
    """What a new stage's worker does with a state before its first step, on one rank: the
    model, and the engine from the state (raygrow.train.engine.engine_from_state, as the worker)."""
    from raygrow.model import build_model
    from raygrow.train.engine import engine_from_state

    model = build_model(stage_config.model, manifest.vocab_size, stage_config.train.seed, eos_id=manifest.eos_id)
    engine_from_state(model, stage_config, 1, state)


def _stage_setup(run_dir: Path, stage: int) -> tuple[RunConfig, Manifest]:
    summary = json.loads((run_dir / "summary.json").read_text())
    config = from_dict(RunConfig, summary["config"]).stage_config(stage)
    return config, Manifest.load(summary["dataset"])


def engine_seconds(run_dir: Path, stage: int, source: Path) -> float:
    """Warm engine re-init in this process: median of 3 after a warm-up run (first-use costs such
    as DeepSpeed's op build are left out)."""
    import torch

    config, manifest = _stage_setup(run_dir, stage)
    _single_rank_group()
    torch.set_num_threads(max(1, int(config.train.cpus_per_worker or os.cpu_count() or 1)))
    state, _ = checkpoint.load(source)
    _rebuild(config, state, manifest)
    return _median_seconds(lambda: _rebuild(config, state, manifest), repeats=3)


def cold_start_seconds(run_dir: Path, stage: int, source: Path) -> float:
    """A fresh Python process that imports, loads the checkpoint and builds the engine once: what a
    new worker pays before its first step, less Ray's scheduling and actor start."""
    started = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--probe", str(run_dir), str(stage), str(source)], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def _probe(run_dir: str, stage: str, source: str) -> None:
    import torch

    config, manifest = _stage_setup(Path(run_dir), int(stage))
    _single_rank_group()
    torch.set_num_threads(max(1, int(config.train.cpus_per_worker or os.cpu_count() or 1)))
    _rebuild(config, checkpoint.load(source)[0], manifest)


def _step_records(records: list[dict], stage: int) -> list[dict]:
    return [r for r in records if r.get("stage") == stage and "step" in r and "event" not in r]


def transition_rows(run_dir: Path) -> list[dict]:
    """One row per transition of a run: its seconds, their breakdown, and the yardsticks, measured
    on the larger model's final checkpoint (full state: weights and AdamW moments)."""
    summary = json.loads((run_dir / "summary.json").read_text())
    if not summary["transitions"]:
        return []
    specs = json.loads((run_dir / "coordinator.json").read_text())["specs"]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = []
    for transition in summary["transitions"]:
        after = transition["to_stage"]
        growth = specs[f"stage-{after}"]["growth"]
        larger = checkpoint.latest_valid(run_dir / f"stage-{after}")
        event = next((r for r in records if r.get("stage") == after and r.get("event") == "growth"), None)
        last_step = _step_records(records, after - 1)[-1]
        save, load, size = save_load_seconds(larger)
        engine = engine_seconds(run_dir, after, larger)
        cold = cold_start_seconds(run_dir, after, larger)
        seconds = transition["seconds"]
        rows.append({
            "run": run_dir.name, "transition": f"{after - 1}->{after}",
            "ops": "+".join(op for op in (transition["width_op"], transition["depth_op"]) if op),
            "seconds": seconds, "grow_seconds": growth["seconds"],
            "breakdown": transition.get("breakdown"), "export_seconds": transition.get("export_s"),
            "to_growth_validation": event["time"] - last_step["time"] if event else None,
            "checkpoint_bytes": size, "save_seconds": save, "load_seconds": load, "engine_seconds": engine,
            "cold_start_seconds": cold, "ratio": seconds / (save + load),
            "ratio_with_engine": seconds / (save + load + engine), "ratio_with_cold_start": seconds / (save + cold),
        })
    return rows


def data_wait(run_dir: Path) -> dict:
    """Share of training-step time spent waiting for input, per stage and for the run; each logged
    window weighs by its length (its steps × batch tokens / its tokens/s)."""
    summary = json.loads((run_dir / "summary.json").read_text())
    batch_tokens = summary["config"]["train"]["batch_tokens"]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    waited: dict[int, float] = {}
    seconds: dict[int, float] = {}
    previous_step: dict[int, int] = {}
    worst = 0.0
    for record in records:
        if "event" in record or "data_wait_frac" not in record:
            continue
        stage = record.get("stage", 0)
        window = (record["step"] - previous_step.get(stage, 0)) * batch_tokens / record["tokens_per_s"]
        waited[stage] = waited.get(stage, 0.0) + record["data_wait_frac"] * window
        seconds[stage] = seconds.get(stage, 0.0) + window
        worst = max(worst, record["data_wait_frac"])
        previous_step[stage] = record["step"]
    total = sum(seconds.values())
    return {"run": run_dir.name, "share": sum(waited.values()) / total if total else None,
            "stage_shares": {stage: waited[stage] / seconds[stage] for stage in seconds if seconds[stage]},
            "worst_window": worst, "train_seconds": total}


def run_dirs(args: argparse.Namespace) -> list[Path]:
    """The runs to measure: from a growth_speedup output directory, or trained here."""
    if args.source:
        results = Path(args.source) / "results.json"
        if not results.is_file():
            raise RaygrowError(f"--from: {results} does not exist; give a growth_speedup.py --out directory")
        return [Path(plan["run_dir"]) for plan in json.loads(results.read_text())["plans"]]
    options = growth_speedup.parse_args(["--scale", str(args.scale), "--storage", args.storage,
                                         "--plans", "stack,clone_zero"])
    base, sizing, plans = growth_speedup.build(options)
    growth_speedup.describe(sizing, {plan: plans[plan] for plan in ("stack", "clone_zero")})
    from raygrow import driver
    from raygrow.data import prepare

    driver.ensure_ray()
    prepare(growth_speedup.run_config(base, "probe", plans["stack"][0], growth_speedup.DEFAULT_LR, 0),
            show_progress=not args.quiet)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dirs = []
    for plan in ("stack", "clone_zero"):
        print(f"\n== {plan} ==", flush=True)
        config = growth_speedup.run_config(base, f"transition-{plan}-{stamp}", plans[plan][0],
                                           growth_speedup.DEFAULT_LR, 0)
        run = growth_speedup.run_plan(config, not args.quiet)
        dirs.append(Path(run["config"].run_dir))
    return dirs


def print_breakdown(transitions: list[dict]) -> None:
    """Each transition part by part, from the workers' and the coordinator's own stamps
    (summary.json's `breakdown`), in the order the parts happen."""
    present = {part for row in transitions for part in (row["breakdown"] or {})}
    parts = [part for part in BREAKDOWN_ORDER if part in present]
    if not parts:
        return
    print("\ntransition breakdown, seconds (worker and coordinator stamps; 'sum' against the transition)")
    print(f"{'part':22} " + " ".join(f"{row['run'][:18]:>18}" for row in transitions))
    for part in parts + ["sum"]:
        cells = []
        for row in transitions:
            breakdown = row["breakdown"] or {}
            value = sum(breakdown.values()) if part == "sum" else breakdown.get(part)
            cells.append(f"{value:18.2f}" if value is not None else f"{'-':>18}")
        print(f"{part:22} " + " ".join(cells))
    cells = [f"{row['export_seconds']:18.2f}" if row.get("export_seconds") is not None else f"{'-':>18}"
             for row in transitions]
    print(f"{'export (beside)':22} " + " ".join(cells))  # not a part of the sum


def report(transitions: list[dict], waits: list[dict]) -> None:
    print("\nstage transitions, seconds (save, load, engine: medians on the larger model's final checkpoint;"
          "\n  cold: a fresh process that imports, loads and builds the engine; ratios: transition over"
          "\n  save+load, save+load+engine, save+cold)")
    header = (f"{'run':34} {'step':5} {'ops':16} {'transition':>10} {'grow':>6} {'to val':>7} {'save':>6} "
              f"{'load':>6} {'engine':>6} {'cold':>6} {'ratio':>7} {'+engine':>8} {'+cold':>6}")
    print(header)
    print("-" * len(header))
    for row in transitions:
        to_val = f"{row['to_growth_validation']:7.1f}" if row["to_growth_validation"] is not None else "      -"
        print(f"{row['run'][:34]:34} {row['transition']:5} {row['ops'][:16]:16} {row['seconds']:10.2f} "
              f"{row['grow_seconds']:6.2f} {to_val} {row['save_seconds']:6.3f} {row['load_seconds']:6.3f} "
              f"{row['engine_seconds']:6.2f} {row['cold_start_seconds']:6.2f} {row['ratio']:6.1f}x "
              f"{row['ratio_with_engine']:7.1f}x {row['ratio_with_cold_start']:5.1f}x")
    print_breakdown(transitions)
    if transitions:
        worst = max(row["ratio"] for row in transitions)
        print(f"worst transition: {worst:.1f}x a plain save + load of the larger model "
              f"({'meets' if worst <= TRANSITION_TARGET else 'misses'} the <= {TRANSITION_TARGET:g}x target); "
              f"checkpoints of {transitions[0]['checkpoint_bytes'] / 1e6:.1f} MB")
    print("\ninput starvation (share of training-step time waiting for data)")
    for wait in waits:
        share = f"{wait['share']:.3%}" if wait["share"] is not None else "no logged windows"
        stages = ", ".join(f"{stage}: {value:.2%}" for stage, value in wait["stage_shares"].items())
        print(f"  {wait['run'][:40]:40} {share:>10}   per stage {stages}; worst window {wait['worst_window']:.2%}")
    total = sum(w["train_seconds"] for w in waits)
    if total:
        overall = sum(w["share"] * w["train_seconds"] for w in waits if w["share"] is not None) / total
        verdict = "meets" if overall <= STARVATION_TARGET else "misses"
        print(f"  {'all runs':40} {overall:10.3%}   ({verdict} the <= {STARVATION_TARGET:.0%} target)")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--probe"]:  # the child process of cold_start_seconds
        _probe(*argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--from", dest="source", default=None, metavar="OUT_DIR",
                        help="a growth_speedup.py --out directory: measure its runs instead of training")
    parser.add_argument("--scale", type=float, default=0.1, help="token scale of the runs trained here")
    parser.add_argument("--storage", default="./runs/bench", help="run directories and the packed dataset")
    parser.add_argument("--out", default=None, help="transition.json goes here (default: --from, else "
                                                    "<storage>/transition)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    try:
        dirs = run_dirs(args)
        transitions = [row for run_dir in dirs for row in transition_rows(run_dir)]
        waits = [data_wait(run_dir) for run_dir in dirs]
    except RaygrowError as error:
        sys.exit(f"transition: error: {error}")
    report(transitions, waits)
    out = Path(args.out or args.source or Path(args.storage) / "transition")
    out.mkdir(parents=True, exist_ok=True)
    (out / "transition.json").write_text(json.dumps({"transitions": transitions, "data_wait": waits}, indent=1))
    print(f"wrote {out / 'transition.json'}")


if __name__ == "__main__":
    main()
