"""Growth speed-up: FLOPs (and wall time) each plan needs to reach the from-scratch run's final
validation loss, measured side by side in one run.

    .venv/bin/python jobs/bench/growth_speedup.py [--corpus stdlib|PATH] [--scale 1.0]
                                                  [--storage DIR] [--out DIR] [--plans a,b,...]

Every plan trains the same target shape (8 layers x 128 by default) on the same packed rows in
the same order (each run starts at stream position 0), with the same total training-FLOP budget:
the budget of the from-scratch run. The plans are RunConfigs built from ONE base dict and differ
only in `stages`:
  scratch      the target shape from scratch (defines the budget and the target loss)
  stack        G_stack: a quarter-depth model, stacked 4x (depth_op stack)
  clone_zero   function-preserving: half width, half depth; width hyperclone + depth zero
  masked       (optional) MSG: the same small model; width masked + depth masked
Validation runs every few steps on the same fixed rows, so "FLOPs to reach the from-scratch run's
final validation loss" is read off by linear interpolation of val_loss against cumulative FLOPs
(the validation loss logged right after each growth counts as a point too). Wall time is read the
same way, from the moment `raygrow.driver.train` is called (Ray Train start-up, growth and
validation included; data preparation, done once up front, excluded).

Next to validation loss, each plan's final export (every plan spends the same FLOP budget) is
scored on the IQ suite (raygrow.eval; `--eval-limit` items per task, `--eval-limit 0` skips it).
Prints a table and writes results.json and growth_speedup.png into --out. Target (DESIGN.md): the
best plan reaches the loss with <= 0.55x the from-scratch FLOPs. `--scale` multiplies tokens,
`--hidden` the width; `--set a.b=c` overrides the base dict (e.g. train.workers=8 on a cluster).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from raygrow import driver  # noqa: E402
from raygrow.config import RunConfig, Shape, apply_override, from_dict  # noqa: E402
from raygrow.data import prepare  # noqa: E402
from raygrow.errors import RaygrowError  # noqa: E402
from raygrow.model import flops_per_token, param_counts, tokens_for_flops  # noqa: E402
from raygrow.plan import growth_timing_tokens  # noqa: E402
from raygrow.plan.accounting import vocab_size  # noqa: E402

# Sized on the 2-core CPU box so that --scale 1.0 finishes in about 30 minutes (see README.md).
BASE_TOKENS = 2_949_120  # from-scratch tokens at --scale 1.0: 360 steps of 8192
SEQ_LEN = 128
BATCH_TOKENS = 8192  # 64 rows per step
VAL_POINTS = 60  # validation passes per from-scratch run: dense enough to interpolate
SMALL_FRACTION = 0.3  # share of a growth plan's tokens spent on the small model when the rule does not fit
MIN_DOCUMENTS = 300  # stdlib files: ~3.7M byte tokens, ~500 validation rows
ALL_PLANS = ("scratch", "stack", "clone_zero", "masked")
DEFAULT_PLANS = ("scratch", "stack", "clone_zero")


def scratch_steps(scale: float) -> int:
    return max(4, round(BASE_TOKENS * scale / BATCH_TOKENS))


def base_dict(corpus: str, storage: str, scale: float) -> dict:
    """What every plan shares; plans add only `stages` (and a name)."""
    steps = scratch_steps(scale)
    cpus = os.cpu_count() or 1
    return {
        "storage": storage,
        "data": {"source": corpus, "tokenizer": "byte", "seq_len": SEQ_LEN,
                 "max_documents": None},  # set by size_corpus once the plans' token counts are known
        "train": {
            "workers": 1, "cpus_per_worker": cpus,  # one worker takes the box's cores: runs on 2 CPUs
            "zero_stage": 2, "batch_tokens": BATCH_TOKENS, "micro_batch": 16,
            "lr": 3e-3, "warmup_steps": min(10, max(1, steps // 20)), "schedule": "cosine",
            "log_every": max(1, steps // VAL_POINTS), "val_every": max(1, steps // VAL_POINTS),
            "val_rows": 64,  # the same first 64 validation rows every pass: a fixed yardstick
            "deterministic": False,  # speed; every plan runs the same way
            "max_failures": 0,  # a benchmark that needed a restart is not a clean figure
        },
        # One checkpoint per stage (the last step always saves): growth needs it, nothing else does.
        "checkpoint": {"every_steps": 1 << 30, "keep": 1},
    }


def shapes(hidden: int) -> dict[str, dict]:
    """Target and small shapes; head_dim 32 throughout (width growth adds heads, RoPE keeps
    head_dim). The target's FFN is twice the half-width FFN so that hyperclone can double it."""
    if hidden % 64:
        raise RaygrowError(f"--hidden: must be a multiple of 64 (half width, head_dim 32), got {hidden}")
    half = hidden // 2
    half_ffn = -(-8 * half // 3 // 8) * 8  # 8/3·d rounded up to 8, as Shape's default
    common = {"tie_embeddings": True}
    return {
        "target": {"layers": 8, "hidden": hidden, "heads": hidden // 32, "ffn": 2 * half_ffn, **common},
        "quarter_depth": {"layers": 2, "hidden": hidden, "heads": hidden // 32, "ffn": 2 * half_ffn, **common},
        "half": {"layers": 4, "hidden": half, "heads": half // 32, "ffn": half_ffn, **common},
    }


GROWTH = {  # plan -> (small shape, growth spec into the target)
    "stack": ("quarter_depth", {"depth_op": "stack", "optimizer": "reset", "lr": "restart"}),
    "clone_zero": ("half", {"depth_op": "zero", "width_op": "hyperclone"}),  # operators' own policies
    "masked": ("half", {"depth_op": "masked", "width_op": "masked"}),  # ramp_steps set per scale
}


def _shape(raw: dict) -> Shape:
    return from_dict(Shape, raw)


class Sizing:
    """Token counts per plan for one FLOP budget: the from-scratch run's. Stage tokens are whole
    steps of the base dict's batch, as the trainer would round them."""

    def __init__(self, base: dict, shape_table: dict[str, dict], scale: float):
        self.batch_tokens, self.seq_len = base["train"]["batch_tokens"], base["data"]["seq_len"]
        probe = from_dict(RunConfig, {**base, "stages": [{"shape": shape_table["target"],
                                                          "tokens": self.batch_tokens}]})
        self.vocab = vocab_size(probe, _shape(shape_table["target"]))
        self.shapes = shape_table
        self.scratch_tokens = self.whole_steps(scratch_steps(scale) * BATCH_TOKENS)
        self.budget = self.per_token("target") * self.scratch_tokens
        target_params = param_counts(_shape(shape_table["target"]), self.vocab)["params"]
        # The stacking paper's fit, with N the target's parameters and C = 6·N·D (as `raygrow plan`).
        self.rule_tokens = growth_timing_tokens(target_params, 6 * target_params * self.scratch_tokens)

    def per_token(self, name: str) -> int:
        return flops_per_token(_shape(self.shapes[name]), self.vocab, self.seq_len)

    def whole_steps(self, tokens: float) -> int:
        return max(1, round(tokens / self.batch_tokens)) * self.batch_tokens

    def small_tokens(self, small: str) -> tuple[int, str]:
        """Tokens for the small model: the timing rule's d where it leaves at least half the budget
        to the target model, else SMALL_FRACTION of the plan's tokens."""
        if self.per_token(small) * self.rule_tokens <= 0.5 * self.budget:
            return self.whole_steps(self.rule_tokens), "growth-timing rule"
        # f of the plan's T tokens small: F_s·f·T + F_t·(1-f)·T = budget
        f, small_cost, target_cost = SMALL_FRACTION, self.per_token(small), self.per_token("target")
        plan_tokens = self.budget / (small_cost * f + target_cost * (1 - f))
        return self.whole_steps(f * plan_tokens), f"{f:.0%} of the plan's tokens"

    def stages(self, plan: str, ramp_steps: int) -> tuple[list[dict], str]:
        if plan == "scratch":
            return [{"shape": self.shapes["target"], "tokens": self.scratch_tokens}], "-"
        small, growth = GROWTH[plan]
        small_tokens, how = self.small_tokens(small)
        rest = self.budget - self.per_token(small) * small_tokens
        large_tokens = tokens_for_flops(rest, self.per_token("target"), self.batch_tokens)
        growth = {**growth, **({"ramp_steps": ramp_steps} if plan == "masked" else {})}
        return [{"shape": self.shapes[small], "tokens": small_tokens},
                {"shape": self.shapes["target"], "tokens": large_tokens, "growth": growth}], how


def size_corpus(base: dict, most_tokens: int) -> None:
    """For the built-in corpus, read just enough standard-library files that no plan repeats a row
    (byte tokens ~ bytes; 30% headroom for validation documents and packing tails), and at least
    MIN_DOCUMENTS so that the 2% held out for validation gives enough rows."""
    if base["data"]["source"] != "stdlib":
        return
    from raygrow.data.sources import resolve_source

    needed, documents = 1.3 * most_tokens, 0
    for documents, file in enumerate(resolve_source("stdlib"), start=1):
        needed -= file.size
        if needed <= 0 and documents >= MIN_DOCUMENTS:
            break
    base["data"]["max_documents"] = documents


# ---- reading the runs -------------------------------------------------------------------------


def val_curve(records: list[dict], started: float) -> list[dict]:
    """(cumulative FLOPs, seconds since train() was called, val_loss) in order; the loss logged
    right after a growth sits at the FLOPs where the previous stage ended."""
    curve, flops = [], 0.0
    for record in records:
        flops = record.get("flops", flops)
        if "val_loss" in record:
            curve.append({"flops": flops, "seconds": record["time"] - started, "val_loss": record["val_loss"],
                          "growth": record.get("event") == "growth"})
    return curve


def reach(curve: list[dict], target: float) -> dict | None:
    """FLOPs and seconds where val_loss first reaches `target`, interpolated linearly between the
    two validation points around the crossing; None if it never does."""
    for index, point in enumerate(curve):
        if point["val_loss"] <= target:
            if index == 0:
                return {"flops": point["flops"], "seconds": point["seconds"]}
            before = curve[index - 1]
            share = (before["val_loss"] - target) / (before["val_loss"] - point["val_loss"])
            return {key: before[key] + share * (point[key] - before[key]) for key in ("flops", "seconds")}
    return None


def run_plan(base: dict, name: str, stages: list[dict], show_progress: bool) -> dict:
    """Train one plan with raygrow.driver.train; its summary, records and validation curve."""
    config = from_dict(RunConfig, {**copy.deepcopy(base), "name": name, "stages": stages})
    started = time.time()
    summary = driver.train(config, show_progress=show_progress)
    wall = time.time() - started
    if not summary["complete"]:
        raise RaygrowError(f"run {name} stopped before its last step; see {config.run_dir}")
    records = [json.loads(line) for line in (Path(config.run_dir) / "metrics.jsonl").read_text().splitlines()]
    return {"config": config, "summary": summary, "records": records, "wall_s": wall,
            "curve": val_curve(records, started)}


# ---- report -----------------------------------------------------------------------------------


def plan_result(plan: str, how: str, run: dict, scratch: dict | None) -> dict:
    """One plan's figures; `scratch` is the from-scratch result (None: this is it, and it reaches
    its own final loss at its end by definition)."""
    summary, curve = run["summary"], run["curve"]
    reached = reach(curve, scratch["final_val_loss"]) if scratch else curve[-1]
    reached = {"flops": reached["flops"], "seconds": reached["seconds"]} if reached else None
    scratch_reached = scratch["reached"] if scratch else reached
    stage_flops = [stage["flops"] for stage in summary["stages"]]
    return {
        "plan": plan, "run_dir": run["config"].run_dir, "small_tokens_from": how,
        "stages": [{"shape": s["shape"], "tokens": s["tokens"], "flops": s["flops"],
                    "tokens_per_s": s["tokens_per_s"], "final_val_loss": s["final_val_loss"]}
                   for s in summary["stages"]],
        "transitions": summary["transitions"],
        "growth_flops": [sum(stage_flops[:i + 1]) for i in range(len(stage_flops) - 1)],
        "total_flops": summary["total_flops"], "total_tokens": summary["total_tokens"],
        "wall_s": run["wall_s"], "final_val_loss": curve[-1]["val_loss"], "reached": reached,
        "flops_ratio": reached["flops"] / scratch_reached["flops"] if reached else None,
        "seconds_ratio": reached["seconds"] / scratch_reached["seconds"] if reached else None,
        "curve": curve,
    }


def iq_scores(results: list[dict], limit: int) -> None:
    """Score each plan's final export on the IQ suite (at equal FLOPs: every plan spends the
    budget) into its result, and print the table: exact match per task and plan."""
    from raygrow.eval.config import EvalConfig
    from raygrow.eval.evaluate import evaluate_export

    config = EvalConfig(limit=limit)
    for result in results:
        result["iq"] = evaluate_export(str(Path(result["run_dir"]) / "export"), config)["scores"]
    print(f"\nIQ suite (exact match, {limit} items per task) of each plan's final export, at equal FLOPs")
    print(f"{'task':20}{'chance':>8}" + "".join(f"{r['plan']:>12}" for r in results))
    for task in config.tasks:
        print(f"{task:20}{results[0]['iq'][task]['chance']:8.3f}"
              + "".join(f"{r['iq'][task]['exact_match']:12.3f}" for r in results))
    print(f"{'mean':20}{'':8}" + "".join(
        f"{sum(s['exact_match'] for s in r['iq'].values()) / len(r['iq']):12.3f}" for r in results))


def print_table(results: list[dict], target: float) -> None:
    print(f"\ntarget: the from-scratch run's final validation loss {target:.4f}")
    header = (f"{'plan':12} {'FLOPs total':>12} {'final val':>9} {'FLOPs to target':>15} {'ratio':>6} "
              f"{'wall to target':>14} {'ratio':>6} {'wall total':>10}")
    print(header)
    print("-" * len(header))
    for result in results:
        reached = result["reached"]
        flops = f"{reached['flops']:.3e}" if reached else "not reached"
        seconds = f"{reached['seconds']:.0f} s" if reached else "not reached"
        ratio = f"{result['flops_ratio']:.2f}" if reached else "-"
        wall_ratio = f"{result['seconds_ratio']:.2f}" if reached else "-"
        print(f"{result['plan']:12} {result['total_flops']:12.3e} {result['final_val_loss']:9.4f} {flops:>15} "
              f"{ratio:>6} {seconds:>14} {wall_ratio:>6} {result['wall_s']:8.0f} s")
    grown = [r for r in results if r["plan"] != "scratch" and r["reached"]]
    if grown:
        best = min(grown, key=lambda r: r["flops_ratio"])
        verdict = "meets" if best["flops_ratio"] <= 0.55 else "misses"
        print(f"best plan: {best['plan']} at {best['flops_ratio']:.2f}x the from-scratch FLOPs "
              f"({verdict} the <= 0.55x target)")
    else:
        print("no growth plan reached the from-scratch loss within the budget (target <= 0.55x missed)")


def plot(results: list[dict], target: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for axis, key, label in ((axes[0], "flops", "training FLOPs"), (axes[1], "seconds", "wall seconds")):
        for number, result in enumerate(results):
            color = f"C{number}"
            points = [p for p in result["curve"] if not p["growth"]]
            axis.plot([p[key] for p in points], [p["val_loss"] for p in points], "-", color=color,
                      label=result["plan"])
            grown = [p for p in result["curve"] if p["growth"]]
            axis.plot([p[key] for p in grown], [p["val_loss"] for p in grown], "o", color=color,
                      markerfacecolor="none", label=f"{result['plan']}: after growth" if grown else None)
            if key == "flops":
                for x in result["growth_flops"]:
                    axis.axvline(x, color=color, linestyle=":", alpha=0.6)
            if result["reached"] and result["plan"] != "scratch":
                axis.plot([result["reached"][key]], [target], "x", color=color, markersize=9)
        axis.axhline(target, color="grey", linestyle="--", linewidth=1, label="from-scratch final val loss")
        axis.set_xlabel(label)
        axis.set_ylabel("validation loss (nats/token)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    axes[0].set_title("val loss vs FLOPs (dotted: growth points, x: target reached)", fontsize=9)
    axes[1].set_title("val loss vs wall time since train() was called", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# ---- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="stdlib", help="'stdlib' or a file, directory or glob (default: stdlib)")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiplies every plan's tokens (1.0: ~30 min on 2 CPU cores)")
    parser.add_argument("--hidden", type=int, default=128, help="target width, a multiple of 64 (default: 128)")
    parser.add_argument("--storage", default="./runs/bench", help="run directories and the packed dataset")
    parser.add_argument("--out", default="./runs/bench/growth_speedup", help="results.json and the plot go here")
    parser.add_argument("--plans", default=",".join(DEFAULT_PLANS),
                        help=f"comma-separated, from {', '.join(ALL_PLANS)} (scratch is always run)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override the base dict, e.g. --set train.workers=2 (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--eval-limit", type=int, default=30,
                        help="IQ-suite items per task for each plan's final export (0: no evaluation)")
    args = parser.parse_args(argv)
    if not args.scale > 0:
        parser.error(f"--scale: must be > 0, got {args.scale}")
    unknown = [p for p in args.plans.split(",") if p not in ALL_PLANS]
    if unknown:
        parser.error(f"--plans: unknown {unknown[0]!r} (known: {', '.join(ALL_PLANS)})")
    args.plans = ["scratch"] + [p for p in args.plans.split(",") if p != "scratch"]
    return args


def build(args: argparse.Namespace) -> tuple[dict, Sizing, dict[str, tuple[list[dict], str]]]:
    """The base dict, the sizing and every plan's stages."""
    base = base_dict(args.corpus, args.storage, args.scale)
    for assignment in args.overrides:
        apply_override(base, assignment)
    sizing = Sizing(base, shapes(args.hidden), args.scale)
    ramp_steps = max(1, scratch_steps(args.scale) // 10)  # masked: over 10% of the budget's steps
    plans = {plan: sizing.stages(plan, ramp_steps) for plan in args.plans}
    size_corpus(base, max(sum(s["tokens"] for s in stages) for stages, _ in plans.values()))
    for plan, (stages, _) in plans.items():  # validate every config before anything runs
        from_dict(RunConfig, {**copy.deepcopy(base), "name": plan, "stages": stages})
    return base, sizing, plans


def describe(sizing: Sizing, plans: dict[str, tuple[list[dict], str]]) -> None:
    budget_tokens = sizing.scratch_tokens
    print(f"FLOP budget {sizing.budget:.3e} (the target shape on {budget_tokens:,} tokens)")
    print(f"growth-timing rule (log10 d = 0.88·log10 N + 163.27/log10 C − 5.74): d = {sizing.rule_tokens:.3e} "
          f"tokens for the small model, {sizing.rule_tokens / budget_tokens:.3g}x the whole budget's tokens")
    for plan, (stages, how) in plans.items():
        text = " → ".join(f"L{s['shape']['layers']}×{s['shape']['hidden']} {s['tokens']:,} tok" for s in stages)
        growth = stages[-1].get("growth") or {}
        ops = " + ".join(f"{kind} {growth[f'{kind}_op']}" for kind in ("width", "depth")
                         if growth.get(f"{kind}_op")) or "none"
        print(f"  {plan:11} {text}   growth: {ops}   small tokens: {how}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        base, sizing, plans = build(args)
        describe(sizing, plans)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        driver.ensure_ray()
        probe = from_dict(RunConfig, {**copy.deepcopy(base), "stages": plans["scratch"][0]})
        prepare(probe, show_progress=not args.quiet)  # once, outside every timed run
        stamp = time.strftime("%Y%m%d-%H%M%S")
        results = []
        for plan, (stages, how) in plans.items():  # scratch first: it sets the target loss
            print(f"\n== {plan} ==", flush=True)
            run = run_plan(base, f"growth-{plan}-{stamp}", stages, show_progress=not args.quiet)
            results.append(plan_result(plan, how, run, results[0] if results else None))
    except RaygrowError as error:
        sys.exit(f"growth_speedup: error: {error}")
    target = results[0]["final_val_loss"]
    print_table(results, target)
    if args.eval_limit > 0:
        iq_scores(results, args.eval_limit)
    settings = {"scale": args.scale, "hidden": args.hidden, "corpus": args.corpus, "cpus": os.cpu_count(),
                "base": base, "budget_flops": sizing.budget, "scratch_tokens": sizing.scratch_tokens,
                "growth_timing_rule_tokens": sizing.rule_tokens, "small_fraction": SMALL_FRACTION}
    (out / "results.json").write_text(json.dumps(
        {"settings": settings, "target_val_loss": target, "plans": results}, indent=1, default=str))
    plot(results, target, out / "growth_speedup.png")
    print(f"wrote {out / 'results.json'} and {out / 'growth_speedup.png'}")


if __name__ == "__main__":
    main()
