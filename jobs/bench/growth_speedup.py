"""Growth speed-up: FLOPs (and wall time) each plan needs to reach the from-scratch run's final
validation loss, measured side by side in one run; with `--protocol`, LR-tuned and over seeds.

    .venv/bin/python jobs/bench/growth_speedup.py [--corpus stdlib|pydoc|PATH] [--scale 1.0]
        [--storage DIR] [--out DIR] [--plans a,b,...] [--lrs a,b,...] [--seeds 0,1,...]
        [--protocol] [--tune]

Every plan trains the same target shape (8 layers x 128 by default) on the same packed rows in
the same order (each run starts at stream position 0), with the same total training-FLOP budget:
the budget of the from-scratch run. The plans are RunConfigs built from ONE base dict and differ
only in `stages`:
  scratch      the target shape from scratch (defines the budget and the target loss)
  stack        G_stack: a quarter-depth model, stacked 4x (depth_op stack)
  clone_zero   function-preserving: half width, half depth; width hyperclone + depth zero
  masked       (optional) MSG: the same small model; width masked + depth masked
  small_fixed  (optional) fixed size: clone_zero's first-stage shape (half width, half depth)
               trained on the whole budget, no growth
  mid_fixed    (optional) fixed size in between: half depth at full width, whole budget
Validation runs every few steps on the same fixed rows, so "FLOPs to reach the from-scratch run's
final validation loss" is read off by linear interpolation of val_loss against cumulative FLOPs
(the validation loss logged right after each growth counts as a point too). Wall time is read the
same way, from the moment the coordinator starts the plan's first stage (its first
`prepare_start` stamp; Ray Train start-up, growth and validation included; data preparation, done
once up front, excluded).

Next to validation loss, each plan's final export (every plan spends the same FLOP budget) is
scored on the IQ suite (raygrow.eval; `--eval-limit` items per task, `--eval-limit 0` skips it).
Prints a table and writes results.json and growth_speedup.png into --out. Target (DESIGN.md): the
best plan reaches the loss with <= 0.55x the from-scratch FLOPs. `--scale` multiplies tokens,
`--hidden` the width; `--set a.b=c` overrides the base dict (e.g. train.workers=8 on a cluster).

The default is the quick mode: one LR (3e-3), one seed (0). The protocol (issue 18):
  --lrs 1.5e-3,3e-3,6e-3,1.2e-2  every plan, scratch included, runs at each peak LR (`train.lr`)
      on seed --seeds[0]; a plan's best LR is the one with the lowest final in-run validation
      loss, i.e. on the first `train.val_rows` (64) validation rows: the selection split. A plan
      whose best LR is the grid's highest (lowest) also runs at 2x (0.5x) it, up to
      EDGE_EXTENSIONS (2) times, so that each plan's optimum is bracketed where it can be.
  --seeds 0,1,2  each plan's winning LR is rerun with every other seed; a seed sets the model init
      (`train.seed`) and the row order (`data.shuffle_seed`, not part of the packed dataset's
      key: no repacking). Per seed, the from-scratch run of that seed defines the target loss
      and the FLOP ratio of a plan is (its FLOPs to reach it) / (scratch's FLOPs), both of the
      same seed; ratios are then given as mean and min-max over seeds.
  Reported losses are measured on the final export on a held-out split the selection never saw:
  the next HELDOUT_ROWS (256) validation rows after the selection split (validation documents
  are chosen by content hash when packing; a document may straddle the two slices at their
  boundary). The FLOPs-to-target figures come from the in-run curves (the selection split).
  --protocol  all of it with the defaults: the 4 LRs above, seeds 0,1,2, the plans scratch,
      stack, clone_zero, small_fixed, mid_fixed, --scale 0.1 and --eval-limit 10 unless given.
      30 runs (5 plans x 4 LRs + 5 x 2 seed reruns, plus any beyond a grid's edge) and the IQ
      suite on the 15 winners' exports: 62 min on 2 idle cores for stdlib (31 runs, 2026-12-04,
      jobs/bench/RESULTS.md). Its runs keep their names: stopped (Ctrl-C), the same command
      continues from the finished runs.
  --tune  growth timing found by the product itself: before the plans run, `raygrow tune`
      (raygrow.tune.sweep: Ray Tune, ASHA on FLOPs, one trial at a time) searches G_stack's d
      (0.1, 0.25, 0.5 of the budget on the small model) x g (2, 4) at this budget, LR 3e-3 and
      the first seed, choosing on the in-run validation loss (the selection split); its best
      trial joins as plan `tuned` and goes through the same protocol (LR sweep, seeds, held-out
      loss, IQ suite). Added to a finished protocol, only the sweep and `tuned`'s runs are new:
      25.6 min on 2 idle cores for stdlib (the sweep 11 min, 6 trials of which ASHA stopped 3;
      `tuned`'s 6 runs and 3 IQ evaluations; 2026-12-04, jobs/bench/RESULTS.md).

Corpora: 'stdlib' (this Python's standard library: code), 'pydoc' (natural language: the English
text of the Python documentation topics shipped with CPython, `pydoc_data.topics`, ~0.5 MB, and
the docstrings of the standard-library modules outside the test suites, ~1.8 MB; written once as
one .jsonl document per topic and per module to --storage/corpora/pydoc-<python version>.jsonl
and read as a file corpus), or a file, directory or
glob of .txt/.jsonl/.parquet/.arrow files. A corpus smaller than a plan's tokens is repeated
(epochs); the script says so after packing.
"""

from __future__ import annotations

import argparse
import ast
import copy
import hashlib
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from raygrow import driver  # noqa: E402
from raygrow.config import RunConfig, Shape, apply_override, from_dict  # noqa: E402
from raygrow.data import PackedRows, dataset_dir, prepare  # noqa: E402
from raygrow.errors import RaygrowError  # noqa: E402
from raygrow.model import flops_per_token, param_counts, tokens_for_flops  # noqa: E402
from raygrow.plan import growth_timing_tokens  # noqa: E402
from raygrow.plan.accounting import vocab_size  # noqa: E402

# Sized on the 2-core CPU box so that --scale 1.0 finishes in about 30 minutes (see README.md).
BASE_TOKENS = 2_949_120  # from-scratch tokens at --scale 1.0: 360 steps of 8192
SEQ_LEN = 128
BATCH_TOKENS = 8192  # 64 rows per step
VAL_POINTS = 60  # validation passes per from-scratch run: dense enough to interpolate
MIN_VAL_EVERY = 2  # ...but at most every other step (at --scale 0.1 every step cost ~1/4 of a run)
SMALL_FRACTION = 0.3  # a growth plan's share of tokens on the small model (rule does not fit)
MIN_DOCUMENTS = 300  # stdlib files: ~3.7M byte tokens, ~500 validation rows
DEFAULT_PLANS = ("scratch", "stack", "clone_zero")
DEFAULT_LR = 3e-3  # the quick mode's peak LR, every plan
# The protocol (issue 18): 4 LRs spanning 8x, 3 seeds, both fixed-size baselines. The grid
# starts at 1.5e-3: a first stdlib sweep from 7.5e-4 (2026-12-04, unfinished) gave scratch
# 3.25 / 2.97 / 2.93 / 2.88 at 7.5e-4 / 1.5e-3 / 3e-3 / 6e-3: the lowest LR was far off and the
# best at the top edge.
PROTOCOL_LRS = (1.5e-3, 3e-3, 6e-3, 1.2e-2)
PROTOCOL_SEEDS = (0, 1, 2)
PROTOCOL_PLANS = ("scratch", "stack", "clone_zero", "small_fixed", "mid_fixed")
EDGE_EXTENSIONS = 2  # LRs a plan may add beyond its grid's edge (each 2x or 0.5x the last)
# 30 runs; a run's fixed cost (Ray Train start-up, a growth transition, export: ~1-2 min on a
# shared box) is a large part of each at this scale
PROTOCOL_SCALE = 0.1
PROTOCOL_EVAL_LIMIT = 10  # IQ items per task: 15 exports x ~25 s (30 items: ~80 s each)
HELDOUT_ROWS = 256  # validation rows after the selection split's: the held-out split reported
SET_BY_FLAGS = {"train.lr": "--lrs", "train.seed": "--seeds", "data.shuffle_seed": "--seeds"}
PYDOC = "pydoc"
# --tune: `raygrow tune`'s grid at the benchmark's budget, one trial at a time on a small box.
TUNE_D = (0.1, 0.25, 0.5)  # the budget's share spent on the small model
TUNE_G = (2, 4)  # target layers / small layers: 4 and 2 layers of the target's width
TEST_FOLDERS = {"test", "tests", "idle_test"}  # left out of the pydoc corpus


def scratch_steps(scale: float) -> int:
    return max(4, round(BASE_TOKENS * scale / BATCH_TOKENS))


def base_dict(corpus: str, storage: str, scale: float) -> dict:
    """What every plan shares; plans add only `stages` (and a name, LR and seed)."""
    steps = scratch_steps(scale)
    cpus = os.cpu_count() or 1
    return {
        "storage": storage,
        "data": {"source": corpus, "tokenizer": "byte", "seq_len": SEQ_LEN,
                 "max_documents": None},  # set by size_corpus once the plans' tokens are known
        "train": {
            # one worker takes the box's cores: runs on 2 CPUs
            "workers": 1, "cpus_per_worker": cpus,
            "zero_stage": 2, "batch_tokens": BATCH_TOKENS, "micro_batch": 16,
            "lr": DEFAULT_LR, "warmup_steps": min(10, max(1, steps // 20)), "schedule": "cosine",
            "log_every": max(MIN_VAL_EVERY, steps // VAL_POINTS),
            "val_every": max(MIN_VAL_EVERY, steps // VAL_POINTS),
            "val_rows": 64,  # the same first 64 validation rows every pass: a fixed yardstick
            "deterministic": False,  # speed; every plan runs the same way
            "max_failures": 0,  # a benchmark that needed a restart is not a clean figure
        },
        # One checkpoint per stage (the last step always saves): growth needs it, nothing else.
        "checkpoint": {"every_steps": 1 << 30, "keep": 1},
    }


def shapes(hidden: int) -> dict[str, dict]:
    """Target and small shapes; head_dim 32 throughout (width growth adds heads, RoPE keeps
    head_dim). The target's FFN is twice the half-width FFN so that hyperclone can double it."""
    if hidden % 64:
        raise RaygrowError(f"--hidden: must be a multiple of 64 (half width, head_dim 32), "
                           f"got {hidden}")
    half = hidden // 2
    half_ffn = -(-8 * half // 3 // 8) * 8  # 8/3·d rounded up to 8, as Shape's default
    wide = {"hidden": hidden, "heads": hidden // 32, "ffn": 2 * half_ffn, "tie_embeddings": True}
    return {
        "target": {"layers": 8, **wide},
        "quarter_depth": {"layers": 2, **wide},
        "half_depth": {"layers": 4, **wide},
        "half": {"layers": 4, "hidden": half, "heads": half // 32, "ffn": half_ffn,
                 "tie_embeddings": True},
    }


GROWTH = {  # plan -> (small shape, growth spec into the target)
    "stack": ("quarter_depth", {"depth_op": "stack", "optimizer": "reset", "lr": "restart"}),
    # operators' own optimizer and LR policies
    "clone_zero": ("half", {"depth_op": "zero", "width_op": "hyperclone"}),
    "masked": ("half", {"depth_op": "masked", "width_op": "masked"}),  # ramp_steps set per scale
}
FIXED = {"small_fixed": "half", "mid_fixed": "half_depth"}  # fixed-size plan -> its one shape
ALL_PLANS = ("scratch", *GROWTH, *FIXED)
TUNED = "tuned"  # --tune: the best (d, g) `raygrow tune` found, as a G_stack plan


def is_growth(plan: str) -> bool:
    return plan in GROWTH or plan == TUNED


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
        # The stacking paper's fit, with N the target's parameters and C = 6·N·D (as `raygrow
        # plan`).
        self.rule_tokens = growth_timing_tokens(target_params,
                                                6 * target_params * self.scratch_tokens)

    def per_token(self, name: str) -> int:
        return flops_per_token(_shape(self.shapes[name]), self.vocab, self.seq_len)

    def whole_steps(self, tokens: float) -> int:
        return max(1, round(tokens / self.batch_tokens)) * self.batch_tokens

    def small_tokens(self, small: str) -> tuple[int, str]:
        """Tokens for the small model: the timing rule's d where it leaves at least half the
        budget to the target model, else SMALL_FRACTION of the plan's tokens."""
        if self.per_token(small) * self.rule_tokens <= 0.5 * self.budget:
            return self.whole_steps(self.rule_tokens), "growth-timing rule"
        # f of the plan's T tokens small: F_s·f·T + F_t·(1-f)·T = budget
        f, small_cost, target_cost = SMALL_FRACTION, self.per_token(small), self.per_token("target")
        plan_tokens = self.budget / (small_cost * f + target_cost * (1 - f))
        return self.whole_steps(f * plan_tokens), f"{f:.0%} of the plan's tokens"

    def stages(self, plan: str, ramp_steps: int) -> tuple[list[dict], str]:
        if plan == "scratch":
            return [{"shape": self.shapes["target"], "tokens": self.scratch_tokens}], "-"
        if plan in FIXED:  # one shape on the whole budget, to the nearest whole step
            shape = FIXED[plan]
            tokens = tokens_for_flops(self.budget, self.per_token(shape), self.batch_tokens)
            return [{"shape": self.shapes[shape], "tokens": tokens}], "fixed size"
        small, growth = GROWTH[plan]
        small_tokens, how = self.small_tokens(small)
        rest = self.budget - self.per_token(small) * small_tokens
        large_tokens = tokens_for_flops(rest, self.per_token("target"), self.batch_tokens)
        growth = {**growth, **({"ramp_steps": ramp_steps} if plan == "masked" else {})}
        return [{"shape": self.shapes[small], "tokens": small_tokens},
                {"shape": self.shapes["target"], "tokens": large_tokens, "growth": growth}], how


def size_corpus(base: dict, most_tokens: int) -> None:
    """For the built-in corpus, read just enough standard-library files that no plan repeats a
    row (byte tokens ~ bytes; 30% headroom for validation documents and packing tails), and at
    least MIN_DOCUMENTS so that the 2% held out for validation gives enough rows."""
    if base["data"]["source"] != "stdlib":
        return
    from raygrow.data.sources import resolve_source

    needed, documents = 1.3 * most_tokens, 0
    for documents, file in enumerate(resolve_source("stdlib"), start=1):
        needed -= file.size
        if needed <= 0 and documents >= MIN_DOCUMENTS:
            break
    base["data"]["max_documents"] = documents


# ---- the pydoc corpus -------------------------------------------------------------------------


def pydoc_documents() -> list[str]:
    """English prose that ships with CPython: every pydoc topic (`pydoc_data.topics`, the text
    `help('TOPIC')` shows), then per standard-library module outside the test suites the
    docstrings of the module, its classes and functions, in path order. A module without
    docstrings gives no document."""
    import sysconfig

    from pydoc_data.topics import topics

    from raygrow.data.sources import resolve_source

    documents = [f"{name}\n\n{text.strip()}" for name, text in sorted(topics.items())]
    root = Path(sysconfig.get_paths()["stdlib"])
    for file in resolve_source("stdlib"):
        if TEST_FOLDERS & set(Path(file.path).relative_to(root).parts[:-1]):
            continue  # test suites: docstrings of test cases, not documentation
        try:
            tree = ast.parse(Path(file.path).read_text(encoding="utf-8", errors="replace"))
        except (SyntaxError, ValueError):  # e.g. a file that is not valid Python 3
            continue
        docs = [ast.get_docstring(node) for node in ast.walk(tree) if isinstance(
            node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
        text = "\n\n".join(doc.strip() for doc in docs if doc and doc.strip())
        if text:
            documents.append(text)
    return documents


def pydoc_corpus(storage: str) -> str:
    """The pydoc corpus as <storage>/corpora/pydoc-<python version>.jsonl (one {"text": ...}
    per line), written on first use. Its content depends only on this Python's standard library,
    hence the version in the name; an existing file is reused untouched (it is written to a temp
    file and renamed, so one that exists is complete), which also keeps the packed dataset's key
    (the file's size and mtime) the same."""
    path = Path(storage) / "corpora" / f"pydoc-{platform.python_version()}.jsonl"
    if path.exists():
        return str(path)
    content = "".join(json.dumps({"text": text}) + "\n" for text in pydoc_documents())
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temp.write_text(content, encoding="utf-8")
    temp.replace(path)
    return str(path)


# ---- reading the runs -------------------------------------------------------------------------


def val_curve(records: list[dict], started: float) -> list[dict]:
    """(cumulative FLOPs, seconds since the run started, val_loss) in order; the loss logged
    right after a growth sits at the FLOPs where the previous stage ended."""
    curve, flops = [], 0.0
    for record in records:
        flops = record.get("flops", flops)
        if "val_loss" in record:
            curve.append({"flops": flops, "seconds": record["time"] - started,
                          "val_loss": record["val_loss"],
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
            return {key: before[key] + share * (point[key] - before[key])
                    for key in ("flops", "seconds")}
    return None


def run_config(base: dict, name: str, stages: list[dict], lr: float, seed: int) -> RunConfig:
    """One plan's RunConfig: the base dict with its stages, peak LR and seed (model init and
    row order)."""
    raw = copy.deepcopy(base)
    raw["train"]["lr"], raw["train"]["seed"], raw["data"]["shuffle_seed"] = lr, seed, seed
    return from_dict(RunConfig, {**raw, "name": name, "stages": stages})


class Stopped(Exception):
    """A signal stopped a run: the benchmark ends (a failed run is only left out)."""


def run_plan(config: RunConfig, show_progress: bool) -> dict:
    """Train one plan with raygrow.driver.train; its summary, records and validation curve."""
    started = time.time()
    summary = driver.train(config, show_progress=show_progress)
    if summary.get("stopped_by"):  # Ctrl-C / SIGTERM: the whole benchmark stops, not this run
        raise Stopped(f"stopped by {summary['stopped_by']} during {config.name}; the same "
                      "command continues from the finished runs (protocol mode)")
    if not summary["complete"]:
        raise RaygrowError(f"run {config.name} stopped before its last step; see "
                           f"{config.run_dir}")
    lines = (Path(config.run_dir) / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    # the coordinator's time over every invocation: a run finished earlier keeps its figure
    return {"config": config, "summary": summary, "records": records,
            "wall_s": summary["wall_s"], "curve": val_curve(records,
                                                            run_started(config.run_dir, started))}


def run_started(run_dir: str, fallback: float) -> float:
    """When the coordinator started the run's first stage (the earliest `prepare_start` in its
    coordinator.json): where a run's wall clock starts, also for a run an earlier invocation
    finished (a protocol continued after a stop reads its finished runs again)."""
    try:
        specs = json.loads((Path(run_dir) / "coordinator.json").read_text())["specs"]
        return min(spec["times"]["prepare_start"] for spec in specs.values())
    except (OSError, KeyError, TypeError, ValueError):  # no state file, or one without stamps
        return fallback


def heldout_loss(export: str, dataset: str, skip: int, rows: int = HELDOUT_ROWS) -> dict:
    """Mean next-token loss of an export on validation rows [skip, skip + rows): the rows after
    the in-run yardstick's, which no LR choice looked at."""
    import torch

    from raygrow.eval.score import load_export
    from raygrow.train.loop import causal_lm_loss

    split = PackedRows(dataset, "val", None)
    count = min(rows, split.num_rows - skip)
    if count < 16:
        raise RaygrowError(f"{dataset}: {split.num_rows} validation rows leave {count} after the "
                           f"first {skip} for the held-out split (need ≥ 16); use a larger corpus "
                           "or raise data.val_fraction with --set")
    model, _ = load_export(export)
    _, tokens = split.take(skip, count)
    loss_sum = 0.0
    with torch.no_grad():
        for batch in torch.from_numpy(tokens).long().split(32):
            loss_sum += causal_lm_loss(model, batch).item() * len(batch)
    return {"loss": loss_sum / count, "rows": count, "first_row": skip}


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


def score_iq(results: list[dict], limit: int) -> None:
    """Score each plan's final export on the IQ suite into its result (at equal FLOPs: every
    plan spends the budget)."""
    from raygrow.eval.config import EvalConfig
    from raygrow.eval.evaluate import evaluate_export

    config = EvalConfig(limit=limit)
    for result in results:
        export = Path(result["run_dir"]) / "export"
        result["iq"] = kept(export, f"iq-{limit}",
                            lambda: evaluate_export(str(export), config)["scores"])


def kept(export: Path, what: str, compute):
    """`compute()` (JSON), kept beside the run as bench-<what>.json and reused while the export
    is the same files: a protocol continued or extended (--tune) does not measure an export
    twice."""
    stamp = [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in sorted(export.iterdir())]
    path = export.parent / f"bench-{what}.json"
    if path.exists():
        saved = json.loads(path.read_text())
        if saved["export"] == stamp:
            return saved["value"]
    value = compute()
    path.write_text(json.dumps({"export": stamp, "value": value}))
    return value


def print_iq(columns: dict[str, dict], limit: int, what: str) -> None:
    """The IQ table: exact match per task (rows) and column (a plan's scores)."""
    tasks = list(next(iter(columns.values())))
    print(f"\nIQ suite (exact match, {limit} items per task) of {what}, at equal FLOPs")
    print(f"{'task':20}{'chance':>8}" + "".join(f"{name:>12}" for name in columns))
    first = next(iter(columns.values()))
    for task in tasks:
        print(f"{task:20}{first[task]['chance']:8.3f}"
              + "".join(f"{iq[task]['exact_match']:12.3f}" for iq in columns.values()))
    print(f"{'mean':20}{'':8}" + "".join(f"{iq_mean(iq, 'exact_match'):12.3f}"
                                          for iq in columns.values()))


def iq_mean(iq: dict, metric: str) -> float:
    return sum(score[metric] for score in iq.values()) / len(iq)


def print_table(results: list[dict], target: float) -> None:
    print(f"\ntarget: the from-scratch run's final validation loss {target:.4f}")
    header = (f"{'plan':12} {'FLOPs total':>12} {'final val':>9} {'FLOPs to target':>15} "
              f"{'ratio':>6} {'wall to target':>14} {'ratio':>6} {'wall total':>10}")
    print(header)
    print("-" * len(header))
    for result in results:
        reached = result["reached"]
        flops = f"{reached['flops']:.3e}" if reached else "not reached"
        seconds = f"{reached['seconds']:.0f} s" if reached else "not reached"
        ratio = f"{result['flops_ratio']:.2f}" if reached else "-"
        wall_ratio = f"{result['seconds_ratio']:.2f}" if reached else "-"
        print(f"{result['plan']:12} {result['total_flops']:12.3e} {result['final_val_loss']:9.4f} "
              f"{flops:>15} {ratio:>6} {seconds:>14} {wall_ratio:>6} {result['wall_s']:8.0f} s")
    grown = [r for r in results if r["plan"] in GROWTH and r["reached"]]
    if grown:
        best = min(grown, key=lambda r: r["flops_ratio"])
        verdict = "meets" if best["flops_ratio"] <= 0.55 else "misses"
        print(f"best plan: {best['plan']} at {best['flops_ratio']:.2f}x the from-scratch FLOPs "
              f"({verdict} the <= 0.55x target)")
    else:
        print("no growth plan reached the from-scratch loss within the budget "
              "(target <= 0.55x missed)")


def plot(results: list[dict], target: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for axis, key, label in ((axes[0], "flops", "training FLOPs"),
                             (axes[1], "seconds", "wall seconds")):
        for number, result in enumerate(results):
            color = f"C{number}"
            points = [p for p in result["curve"] if not p["growth"]]
            axis.plot([p[key] for p in points], [p["val_loss"] for p in points], "-", color=color,
                      label=result["plan"])
            grown = [p for p in result["curve"] if p["growth"]]
            axis.plot([p[key] for p in grown], [p["val_loss"] for p in grown], "o", color=color,
                      markerfacecolor="none",
                      label=f"{result['plan']}: after growth" if grown else None)
            if key == "flops":
                for x in result["growth_flops"]:
                    axis.axvline(x, color=color, linestyle=":", alpha=0.6)
            if result["reached"] and result["plan"] != "scratch":
                axis.plot([result["reached"][key]], [target], "x", color=color, markersize=9)
        axis.axhline(target, color="grey", linestyle="--", linewidth=1,
                     label="from-scratch final val loss")
        axis.set_xlabel(label)
        axis.set_ylabel("validation loss (nats/token)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    axes[0].set_title("val loss vs FLOPs (dotted: growth points, x: target reached)", fontsize=9)
    axes[1].set_title("val loss vs wall time since train() was called", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# ---- the protocol: LR sweep, seeds, summary ---------------------------------------------------


def best_lrs(sweep: dict[str, dict[float, float | None]]) -> dict[str, float]:
    """Each plan's LR with the lowest final loss on the selection split (ties: the smaller LR).
    A run that failed (None) or ended on a non-finite loss never wins; RaygrowError when no run
    of a plan finished."""
    best = {}
    for plan, losses in sweep.items():
        finished = [(loss, lr) for lr, loss in losses.items()
                    if loss is not None and math.isfinite(loss)]
        if not finished:
            raise RaygrowError(f"plan {plan}: no run of the LR sweep finished with a finite "
                               f"loss (LRs {', '.join(f'{lr:g}' for lr in losses)})")
        best[plan] = min(finished)[1]
    return best


def beyond_edge(losses: dict[float, float | None], best: float) -> float | None:
    """The LR to try next when a plan's best LR is the highest (2x) or lowest (0.5x) of at least
    3 it ran, unless that one ran already (and failed); None when the best lies inside: then
    the optimum is bracketed."""
    lrs = sorted(losses)
    if len(lrs) < 3 or best not in (lrs[0], lrs[-1]):
        return None
    wanted = best * 2 if best == lrs[-1] else best / 2
    return None if any(math.isclose(wanted, lr) for lr in lrs) else wanted


def lr_sweep(plans: list[str], lrs: list[float], attempt) -> dict[str, dict[float, dict | None]]:
    """`attempt(plan, lr)` (a run, or None if it failed) for every plan at every LR, then, while
    a plan's best LR sits at its grid's edge, one LR beyond it (at most EDGE_EXTENSIONS)."""
    runs = {plan: {lr: attempt(plan, lr) for lr in lrs} for plan in plans}
    for _ in range(EDGE_EXTENSIONS):
        losses = final_losses(runs)
        best = best_lrs(losses)
        beyond = {plan: lr for plan in plans
                  if (lr := beyond_edge(losses[plan], best[plan])) is not None}
        for plan, lr in beyond.items():
            runs[plan][lr] = attempt(plan, lr)
        if not beyond:
            break
    return runs


def final_losses(runs: dict[str, dict[float, dict | None]]) -> dict[str, dict[float, float | None]]:
    return {plan: {lr: run["curve"][-1]["val_loss"] if run else None for lr, run in by_lr.items()}
            for plan, by_lr in runs.items()}


def spread(values: list[float]) -> dict | None:
    """Mean, min and max of `values` (None when there are none)."""
    if not values:
        return None
    return {"mean": sum(values) / len(values), "min": min(values), "max": max(values),
            "n": len(values)}


def seed_results(runs: dict[str, dict[int, dict]], hows: dict[str, str]) -> dict[int, list[dict]]:
    """Per seed, every plan's result against the from-scratch run of the SAME seed: its final
    loss is that seed's target and its FLOPs the ratio's denominator. A seed whose scratch run
    failed gives no results; a plan whose run failed at a seed is left out of that seed."""
    paired = {}
    for seed in sorted(runs["scratch"]):
        scratch = plan_result("scratch", hows["scratch"], runs["scratch"][seed], None)
        paired[seed] = [scratch] + [plan_result(plan, hows[plan], by_seed[seed], scratch)
                                    for plan, by_seed in runs.items()
                                    if plan != "scratch" and seed in by_seed]
        for result in paired[seed]:
            result["seed"] = seed
    return paired


def summarize(by_seed: dict[int, list[dict]]) -> dict[str, dict]:
    """Per plan over seeds: losses and the FLOPs ratio as mean and min–max, how many seeds
    reached the target, the IQ suite's mean exact match and log-likelihood per byte."""
    plans: dict[str, list[dict]] = {}
    for results in by_seed.values():
        for result in results:
            plans.setdefault(result["plan"], []).append(result)
    summary = {}
    for plan, results in plans.items():
        ratios = [r["flops_ratio"] for r in results if r["flops_ratio"] is not None]
        iq = [r["iq"] for r in results if r.get("iq")]
        summary[plan] = {
            "seeds": [r["seed"] for r in results],
            "final_val_loss": spread([r["final_val_loss"] for r in results]),
            "heldout_loss": spread([r["heldout"]["loss"] for r in results if "heldout" in r]),
            "flops_ratio": spread(ratios), "reached": f"{len(ratios)}/{len(results)}",
            "iq_exact_match": spread([iq_mean(scores, "exact_match") for scores in iq]),
            "iq_loglik_per_byte": spread([iq_mean(scores, "loglik_per_byte") for scores in iq]),
        }
    return summary


def loss_key(summary: dict[str, dict]) -> str:
    """The loss the verdict compares: the held-out split's where every plan has it."""
    return ("heldout_loss" if all(s["heldout_loss"] for s in summary.values())
            else "final_val_loss")


def verdict(by_seed: dict[int, list[dict]], summary: dict[str, dict]) -> dict | None:
    """Does the best growth plan beat the best fixed-size model (scratch, small_fixed,
    mid_fixed) at equal FLOPs? Best = lowest mean loss; compared on mean loss, on seeds won
    (same seed, lower loss) and on the mean FLOPs ratio. None without both kinds of plan."""
    key = loss_key(summary)
    growth = [plan for plan in summary if is_growth(plan)]
    fixed = [plan for plan in summary if not is_growth(plan)]
    if not growth or not fixed:
        return None
    best_growth = min(growth, key=lambda plan: summary[plan][key]["mean"])
    best_fixed = min(fixed, key=lambda plan: summary[plan][key]["mean"])

    def loss(result: dict) -> float:
        return result["heldout"]["loss"] if key == "heldout_loss" else result["final_val_loss"]

    won = shared = 0
    for results in by_seed.values():
        at_seed = {result["plan"]: result for result in results}
        if best_growth in at_seed and best_fixed in at_seed:
            shared += 1
            won += loss(at_seed[best_growth]) < loss(at_seed[best_fixed])
    ratios = [summary[plan]["flops_ratio"] for plan in (best_growth, best_fixed)]
    return {"loss": key, "best_growth": best_growth, "best_fixed": best_fixed,
            "growth_loss": summary[best_growth][key]["mean"],
            "fixed_loss": summary[best_fixed][key]["mean"],
            "beats_on_loss": summary[best_growth][key]["mean"] < summary[best_fixed][key]["mean"],
            "seeds_won": f"{won}/{shared}",
            "growth_ratio": ratios[0]["mean"] if ratios[0] else None,
            "fixed_ratio": ratios[1]["mean"] if ratios[1] else None}


def mean_iq(results: list[dict]) -> dict:
    """One plan's IQ scores averaged over its seeds, task by task."""
    tasks = results[0]["iq"]
    return {task: {"chance": tasks[task]["chance"],
                   "exact_match": sum(r["iq"][task]["exact_match"] for r in results) / len(results)}
            for task in tasks}


def _spread_text(value: dict | None, digits: int = 4) -> str:
    if not value:
        return "-"
    if value["n"] == 1:
        return f"{value['mean']:.{digits}f}"
    return f"{value['mean']:.{digits}f} ({value['min']:.{digits}f}–{value['max']:.{digits}f})"


def print_sweep(sweep: dict[str, dict[float, float | None]], best: dict[str, float],
                seed: int, val_rows: int) -> None:
    print(f"\nLR sweep, seed {seed}: final in-run validation loss (selection split: the first "
          f"{val_rows} validation rows); * = the plan's chosen LR, - = not run (a plan whose "
          f"best LR was at its grid's edge ran up to {EDGE_EXTENSIONS} more beyond it)")
    lrs = sorted({lr for losses in sweep.values() for lr in losses})
    print(f"{'plan':12}" + "".join(f"{lr:>11.2e}" for lr in lrs) + f"{'best LR':>10}")
    for plan, losses in sweep.items():
        cells = "".join(f"{'-':>11}" if lr not in losses else f"{'failed':>11}"
                        if losses[lr] is None else
                        f"{losses[lr]:10.4f}{'*' if lr == best[plan] else ' '}" for lr in lrs)
        at_edge = len(losses) >= 3 and best[plan] in (min(losses), max(losses))
        edge = "  (grid edge: the optimum may lie beyond)" if at_edge else ""
        print(f"{plan:12}{cells}{best[plan]:10.2e}{edge}")


def print_summary(summary: dict[str, dict], best: dict[str, float], seeds: list[int],
                  heldout: dict | None) -> None:
    rows = f"{heldout['rows']} validation rows from row {heldout['first_row']}" if heldout else "-"
    print(f"\nOver seeds {','.join(map(str, seeds))} at each plan's chosen LR, equal FLOPs; "
          "mean (min–max)")
    print(f"  held-out loss: the final export on {rows} (not used to choose the LR)")
    print("  ratio: FLOPs to reach the SAME seed's from-scratch final in-run val loss / that "
          "scratch run's FLOPs")
    header = (f"{'plan':12}{'LR':>9}  {'held-out loss':26}{'in-run val loss':26}"
              f"{'FLOPs ratio':22}{'reached':>8}{'IQ EM':>7}{'IQ ll/B':>9}")
    print(header)
    print("-" * len(header))
    for plan, row in summary.items():
        em, ll = row["iq_exact_match"], row["iq_loglik_per_byte"]
        print(f"{plan:12}{best[plan]:9.2e}  {_spread_text(row['heldout_loss']):26}"
              f"{_spread_text(row['final_val_loss']):26}{_spread_text(row['flops_ratio'], 2):22}"
              f"{row['reached']:>8}{em['mean'] if em else math.nan:7.3f}"
              f"{ll['mean'] if ll else math.nan:9.3f}")


def print_verdict(outcome: dict | None) -> None:
    if outcome is None:
        return
    loss = outcome["loss"].replace("_", " ")

    def ratio(value: float | None) -> str:
        return f"{value:.2f}x" if value is not None else "not reached"

    beat = "beats" if outcome["beats_on_loss"] else "does not beat"
    print(f"best growth plan {outcome['best_growth']} ({loss} {outcome['growth_loss']:.4f}, "
          f"FLOPs ratio {ratio(outcome['growth_ratio'])}) {beat} the best fixed-size model "
          f"{outcome['best_fixed']} ({outcome['fixed_loss']:.4f}, "
          f"{ratio(outcome['fixed_ratio'])}) at equal FLOPs; lower loss on "
          f"{outcome['seeds_won']} seeds")


# ---- main -------------------------------------------------------------------------------------


def _numbers(parser: argparse.ArgumentParser, flag: str, text: str, kind: type) -> list:
    """A comma-separated list of `kind` (float LRs > 0, int seeds ≥ 0), distinct; one
    parser.error line otherwise."""
    try:
        values = [kind(item) for item in text.split(",") if item.strip()]
    except ValueError:
        parser.error(f"{flag}: expected comma-separated {kind.__name__}s, got {text!r}")
    low = "> 0" if kind is float else "≥ 0"
    bad = [v for v in values if not (v > 0 if kind is float else v >= 0) or not math.isfinite(v)]
    if not values or bad:
        parser.error(f"{flag}: every value must be {low}, at least one, got {text!r}")
    if len(set(values)) != len(values):
        parser.error(f"{flag}: values must be distinct, got {text!r}")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default="stdlib",
                        help="'stdlib', 'pydoc' or a file, directory or glob (default: stdlib)")
    parser.add_argument("--scale", type=float, default=None,
                        help="multiplies every plan's tokens (default 1.0: ~30 min for 3 plans on "
                             f"2 CPU cores; {PROTOCOL_SCALE} with --protocol)")
    parser.add_argument("--hidden", type=int, default=128,
                        help="target width, a multiple of 64 (default: 128)")
    parser.add_argument("--storage", default="./runs/bench",
                        help="run directories and the packed dataset")
    parser.add_argument("--out", default="./runs/bench/growth_speedup",
                        help="results.json and the plot go here")
    parser.add_argument("--plans", default=None,
                        help=f"comma-separated, from {', '.join(ALL_PLANS)} (scratch is always "
                             f"run; default {','.join(DEFAULT_PLANS)}, with --protocol "
                             f"{','.join(PROTOCOL_PLANS)})")
    parser.add_argument("--lrs", default=None,
                        help=f"peak LRs, comma-separated: every plan runs at each, the best per "
                             f"plan is kept (default {DEFAULT_LR:g}; with --protocol "
                             f"{','.join(f'{lr:g}' for lr in PROTOCOL_LRS)})")
    parser.add_argument("--seeds", default=None,
                        help="seeds (model init and row order), comma-separated: the first runs "
                             "the LR sweep, the others rerun each plan's best LR (default 0; "
                             f"with --protocol {','.join(map(str, PROTOCOL_SEEDS))})")
    parser.add_argument("--protocol", action="store_true",
                        help="the fair protocol's defaults for --lrs, --seeds, --plans, --scale, "
                             "--eval-limit")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override the base dict, e.g. --set train.workers=2 (repeatable)")
    parser.add_argument("--tune", action="store_true",
                        help="first run `raygrow tune` over growth timing d x factor g at this "
                             "budget and add its best plan as plan 'tuned', measured like the "
                             "others")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--eval-limit", type=int, default=None,
                        help="IQ-suite items per task for each plan's final export "
                             f"(0: no evaluation; default 30, {PROTOCOL_EVAL_LIMIT} with "
                             "--protocol)")
    args = parser.parse_args(argv)
    protocol = args.protocol
    args.scale = args.scale if args.scale is not None else PROTOCOL_SCALE if protocol else 1.0
    if not args.scale > 0:
        parser.error(f"--scale: must be > 0, got {args.scale}")
    if args.eval_limit is None:
        args.eval_limit = PROTOCOL_EVAL_LIMIT if protocol else 30
    if args.eval_limit < 0:
        parser.error(f"--eval-limit: must be ≥ 0, got {args.eval_limit}")
    plans = args.plans or ",".join(PROTOCOL_PLANS if protocol else DEFAULT_PLANS)
    unknown = [p for p in plans.split(",") if p not in ALL_PLANS]
    if unknown:
        parser.error(f"--plans: unknown {unknown[0]!r} (known: {', '.join(ALL_PLANS)})")
    args.plans = ["scratch"] + list(dict.fromkeys(p for p in plans.split(",") if p != "scratch"))
    lrs = ",".join(map(str, PROTOCOL_LRS if protocol else (DEFAULT_LR,)))
    args.lrs = _numbers(parser, "--lrs", lrs if args.lrs is None else args.lrs, float)
    seeds = ",".join(map(str, PROTOCOL_SEEDS if protocol else (0,)))
    args.seeds = _numbers(parser, "--seeds", seeds if args.seeds is None else args.seeds, int)
    for assignment in args.overrides:
        key = assignment.partition("=")[0].strip()
        if key in SET_BY_FLAGS:
            parser.error(f"--set {key}: set by {SET_BY_FLAGS[key]}, give it there")
    return args


def quick(args: argparse.Namespace) -> bool:
    """One LR and one seed: the quick mode, which reports as it always did."""
    return len(args.lrs) == 1 and len(args.seeds) == 1


def build(args: argparse.Namespace) -> tuple[dict, Sizing, dict[str, tuple[list[dict], str]]]:
    """The base dict, the sizing and every plan's stages."""
    corpus = pydoc_corpus(args.storage) if args.corpus == PYDOC else args.corpus
    base = base_dict(corpus, args.storage, args.scale)
    for assignment in args.overrides:
        apply_override(base, assignment)
    sizing = Sizing(base, shapes(args.hidden), args.scale)
    ramp_steps = max(1, scratch_steps(args.scale) // 10)  # masked: over 10% of the budget's steps
    plans = {plan: sizing.stages(plan, ramp_steps) for plan in args.plans}
    size_corpus(base, max(sum(s["tokens"] for s in stages) for stages, _ in plans.values()))
    for plan, (stages, _) in plans.items():  # validate every config before anything runs
        for lr in args.lrs:
            run_config(base, plan, stages, lr, args.seeds[0])
    return base, sizing, plans


def describe(sizing: Sizing, plans: dict[str, tuple[list[dict], str]]) -> None:
    budget_tokens = sizing.scratch_tokens
    print(f"FLOP budget {sizing.budget:.3e} (the target shape on {budget_tokens:,} tokens)")
    print(f"growth-timing rule (log10 d = 0.88·log10 N + 163.27/log10 C − 5.74): "
          f"d = {sizing.rule_tokens:.3e} tokens for the small model, "
          f"{sizing.rule_tokens / budget_tokens:.3g}x the whole budget's tokens")
    for plan, (stages, how) in plans.items():
        describe_plan(plan, stages, how)


def describe_plan(plan: str, stages: list[dict], how: str) -> None:
    text = " → ".join(f"L{s['shape']['layers']}×{s['shape']['hidden']} {s['tokens']:,} tok"
                      for s in stages)
    growth = stages[-1].get("growth") or {}
    ops = " + ".join(f"{kind} {growth[f'{kind}_op']}" for kind in ("width", "depth")
                     if growth.get(f"{kind}_op")) or "none"
    print(f"  {plan:11} {text}   growth: {ops}   small tokens: {how}")


def describe_corpus(manifest, plans: dict[str, tuple[list[dict], str]]) -> None:
    """Say which plans read the corpus's training rows more than once (epochs)."""
    for plan, (stages, _) in plans.items():
        epochs = sum(s["tokens"] for s in stages) / manifest.train_tokens
        if epochs > 1:
            print(f"  note: {plan} reads {epochs:.2f} epochs of the corpus's "
                  f"{manifest.train_tokens:,} training tokens (rows repeat)")


def setting_tag(args: argparse.Namespace) -> str:
    """Corpus, scale and width as a name part: runs and sweeps of other settings never share a
    name (a corpus path goes in as a hash)."""
    corpus = args.corpus
    if corpus not in ("stdlib", PYDOC):
        corpus = "corpus-" + hashlib.sha256(corpus.encode()).hexdigest()[:8]
    return f"{corpus}-x{args.scale:g}-h{args.hidden}"


def tuned_stages(sizing: Sizing, small_layers: int, small_tokens: int,
                 final_tokens: int) -> list[dict]:
    """A sweep trial's two stages: the target's width at `small_layers`, stacked (G_stack)."""
    target = sizing.shapes["target"]
    return [{"shape": {**target, "layers": small_layers}, "tokens": small_tokens},
            {"shape": target, "tokens": final_tokens, "growth": {"depth_op": "stack"}}]


def tune_plan(args: argparse.Namespace, base: dict, sizing: Sizing) -> tuple[list[dict], str]:
    """Growth timing found by the product: `raygrow tune` (raygrow.tune.sweep, ASHA on FLOPs)
    over TUNE_D x TUNE_G at the benchmark's budget, on the quick mode's LR and the first seed;
    its best trial (lowest in-run validation loss: the selection split) becomes plan `tuned`.
    The sweep keeps its name per setting, so a rerun continues it."""
    from raygrow.tune import sweep

    scratch, _ = sizing.stages("scratch", 0)
    plan = run_config(base, "tune-base", scratch, DEFAULT_LR, args.seeds[0])
    name = f"tune-{setting_tag(args)}-s{args.seeds[0]}"
    print(f"\n== raygrow tune {name}: d {list(TUNE_D)} of the budget x g {list(TUNE_G)}, "
          f"lr {DEFAULT_LR:g}, seed {args.seeds[0]} ==", flush=True)
    result = sweep(plan, space={"d": list(TUNE_D), "g": list(TUNE_G)}, flop_budget=sizing.budget,
                   name=name, storage=str(Path(args.storage) / "sweeps"), concurrency=1,
                   show_progress=not args.quiet)
    print(result.table)
    if result.best is None:
        raise RaygrowError(f"raygrow tune {name}: no trial completed; see {result.sweep_dir}/"
                           "trials.md and rerun to continue")
    best = result.best
    stages = tuned_stages(sizing, best.small_layers, best.small_tokens, best.final_tokens)
    return stages, f"raygrow tune: d={best.d:g}, g={best.g:g} ({best.run})"


class Runner:
    """Trains (plan, LR, seed) runs of one invocation and measures each final export on the
    held-out split."""

    def __init__(self, args: argparse.Namespace, base: dict, dataset: str):
        self.args, self.base, self.dataset = args, base, dataset
        self.stamp = time.strftime("%Y%m%d-%H%M%S")

    def name(self, plan: str, lr: float, seed: int) -> str:
        """Quick mode: a fresh run per invocation. Protocol: one name per (corpus, scale, width,
        plan, LR, seed), so a stopped protocol rerun with the same --storage takes its finished
        runs as they are and continues the others from their checkpoints."""
        if quick(self.args):
            return f"growth-{plan}-{self.stamp}"
        return f"protocol-{setting_tag(self.args)}-{plan}-lr{lr:g}-s{seed}"

    def run(self, plan: str, stages: list[dict], lr: float, seed: int) -> dict:
        config = run_config(self.base, self.name(plan, lr, seed), stages, lr, seed)
        print(f"\n== {plan}" + ("" if quick(self.args) else f", lr {lr:g}, seed {seed}") + " ==",
              flush=True)
        return run_plan(config, show_progress=not self.args.quiet)

    def attempt(self, plan: str, stages: list[dict], lr: float, seed: int) -> dict | None:
        """A protocol run, with its held-out loss; None (and a line) if training failed: one
        diverging LR must not cost the rest of the sweep."""
        try:
            run = self.run(plan, stages, lr, seed)
        except RaygrowError as error:
            print(f"run {plan} lr {lr:g} seed {seed} failed: {error}", flush=True)
            return None
        export, skip = Path(run["config"].run_dir) / "export", self.base["train"]["val_rows"]
        run["heldout"] = kept(export, f"heldout-{skip}-{HELDOUT_ROWS}",
                              lambda: heldout_loss(str(export), self.dataset, skip))
        return run


def quick_mode(args, runner: Runner, plans: dict, out: Path, settings: dict) -> None:
    """The default: one LR, one seed; the table, the IQ suite, results.json and the plot."""
    results = []
    for plan, (stages, how) in plans.items():  # scratch first: it sets the target loss
        run = runner.run(plan, stages, args.lrs[0], args.seeds[0])
        results.append(plan_result(plan, how, run, results[0] if results else None))
    target = results[0]["final_val_loss"]
    print_table(results, target)
    if args.eval_limit > 0:
        score_iq(results, args.eval_limit)
        print_iq({r["plan"]: r["iq"] for r in results}, args.eval_limit, "each plan's final export")
    (out / "results.json").write_text(json.dumps(
        {"settings": settings, "target_val_loss": target, "plans": results}, indent=1,
        default=str))
    plot(results, target, out / "growth_speedup.png")


def protocol_mode(args, runner: Runner, plans: dict, out: Path, settings: dict) -> None:
    """LR sweep on the first seed, the winners on every other seed, the summary over seeds."""
    sweep_seed = args.seeds[0]
    sweep_runs = lr_sweep(list(plans), args.lrs,
                          lambda plan, lr: runner.attempt(plan, plans[plan][0], lr, sweep_seed))
    sweep = final_losses(sweep_runs)
    best = best_lrs(sweep)
    print_sweep(sweep, best, sweep_seed, runner.base["train"]["val_rows"])
    runs = {plan: {sweep_seed: sweep_runs[plan][best[plan]]} for plan in plans}
    for seed in args.seeds[1:]:
        for plan, (stages, _) in plans.items():
            run = runner.attempt(plan, stages, best[plan], seed)
            if run:
                runs[plan][seed] = run
    by_seed = seed_results(runs, {plan: how for plan, (_, how) in plans.items()})
    for results in by_seed.values():
        for result in results:
            result["lr"] = best[result["plan"]]
            result["heldout"] = runs[result["plan"]][result["seed"]]["heldout"]
        if args.eval_limit > 0:
            score_iq(results, args.eval_limit)
    for seed, results in by_seed.items():
        print(f"\n-- seed {seed}, each plan at its chosen LR --", end="")
        print_table(results, results[0]["final_val_loss"])
    summary = summarize(by_seed)
    if args.eval_limit > 0:
        grouped = {plan: [r for rs in by_seed.values() for r in rs if r["plan"] == plan]
                   for plan in summary}
        print_iq({plan: mean_iq(results) for plan, results in grouped.items()}, args.eval_limit,
                 "each plan's final exports, mean over seeds")
    heldout = next(iter(by_seed.values()))[0]["heldout"] if by_seed else None
    print_summary(summary, best, args.seeds, heldout)
    outcome = verdict(by_seed, summary)
    print_verdict(outcome)
    sweep_json = {plan: {f"{lr:g}": {"final_val_loss": sweep[plan][lr],
                                      "heldout": run["heldout"] if run else None,
                                      "run_dir": run["config"].run_dir if run else None}
                         for lr, run in by_lr.items()} for plan, by_lr in sweep_runs.items()}
    (out / "results.json").write_text(json.dumps(
        {"settings": settings, "sweep_seed": sweep_seed, "sweep": sweep_json,
         "best_lrs": {plan: lr for plan, lr in best.items()},
         "target_val_loss": {seed: rs[0]["final_val_loss"] for seed, rs in by_seed.items()},
         "seeds": by_seed, "summary": summary, "verdict": outcome}, indent=1, default=str))
    first = by_seed[min(by_seed)]
    plot(first, first[0]["final_val_loss"], out / "growth_speedup.png")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        base, sizing, plans = build(args)
        describe(sizing, plans)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        driver.ensure_ray()
        probe = run_config(base, "probe", plans["scratch"][0], args.lrs[0], args.seeds[0])
        manifest = prepare(probe, show_progress=not args.quiet)  # once, outside every timed run
        if args.tune:
            plans[TUNED] = tune_plan(args, base, sizing)
            describe_plan(TUNED, *plans[TUNED])
        describe_corpus(manifest, plans)
        settings = {"scale": args.scale, "hidden": args.hidden, "corpus": args.corpus,
                    "source": base["data"]["source"], "cpus": os.cpu_count(), "base": base,
                    "budget_flops": sizing.budget, "scratch_tokens": sizing.scratch_tokens,
                    "growth_timing_rule_tokens": sizing.rule_tokens,
                    "small_fraction": SMALL_FRACTION, "lrs": args.lrs, "seeds": args.seeds,
                    "plans": list(plans), "eval_limit": args.eval_limit,
                    "tune": {"d": TUNE_D, "g": TUNE_G, "lr": DEFAULT_LR} if args.tune else None}
        runner = Runner(args, base, dataset_dir(probe))
        if quick(args):
            quick_mode(args, runner, plans, out, settings)
        else:
            settings["heldout_rows"] = HELDOUT_ROWS
            protocol_mode(args, runner, plans, out, settings)
    except RaygrowError as error:
        sys.exit(f"growth_speedup: error: {error}")
    except Stopped as stopped:
        sys.exit(f"growth_speedup: {stopped}")
    print(f"wrote {out / 'results.json'} and {out / 'growth_speedup.png'}")


if __name__ == "__main__":
    main()
