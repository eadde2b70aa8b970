"""The fair protocol's pure logic in jobs/bench/growth_speedup.py: LR choice, pairing by seed,
spreads over seeds, fixed-size plans, the pydoc corpus and flag parsing (no Ray)."""

from __future__ import annotations

import importlib.util
import json
import math
import platform
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from raygrow.errors import RaygrowError

SCRIPT = Path(__file__).resolve().parents[1] / "jobs" / "bench" / "growth_speedup.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("growth_speedup_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# ---- LR choice ----------------------------------------------------------------------------------


def test_best_lr_is_the_lowest_finite_loss_per_plan(bench) -> None:
    sweep = {"scratch": {7.5e-4: 2.1, 1.5e-3: 1.9, 3e-3: 2.0, 6e-3: None},
             "stack": {7.5e-4: 1.8, 1.5e-3: math.nan, 3e-3: 1.7, 6e-3: 1.75}}
    assert bench.best_lrs(sweep) == {"scratch": 1.5e-3, "stack": 3e-3}


def test_best_lr_tie_takes_the_smaller_lr(bench) -> None:
    assert bench.best_lrs({"scratch": {3e-3: 1.5, 1.5e-3: 1.5}}) == {"scratch": 1.5e-3}


def test_best_lr_refuses_a_plan_with_no_finished_run(bench) -> None:
    with pytest.raises(RaygrowError, match="plan stack: no run"):
        bench.best_lrs({"scratch": {1e-3: 2.0}, "stack": {1e-3: None, 2e-3: math.inf}})


# ---- pairing by seed and spreads ----------------------------------------------------------------


def fake_run(losses: list[float], flops_per_point: float = 10.0) -> dict:
    """A run as run_plan returns it, with validation points every `flops_per_point` FLOPs."""
    curve = [{"flops": flops_per_point * (i + 1), "seconds": float(i + 1), "val_loss": loss,
              "growth": False} for i, loss in enumerate(losses)]
    total = curve[-1]["flops"]
    stage = {"shape": {}, "tokens": 1, "flops": total, "tokens_per_s": 1.0,
             "final_val_loss": losses[-1]}
    return {"config": SimpleNamespace(run_dir="/nowhere"), "wall_s": 1.0, "curve": curve,
            "summary": {"stages": [stage], "transitions": [], "total_flops": total,
                        "total_tokens": 1}}


def test_ratios_pair_each_plan_with_the_scratch_run_of_the_same_seed(bench) -> None:
    runs = {"scratch": {0: fake_run([3.0, 2.5, 2.0, 1.6]), 1: fake_run([3.0, 2.5, 2.2, 2.0])},
            "stack": {0: fake_run([2.0, 1.6, 1.2, 1.0]), 1: fake_run([2.5, 2.0, 1.5, 1.4])}}
    by_seed = bench.seed_results(runs, {"scratch": "-", "stack": "30%"})
    assert sorted(by_seed) == [0, 1]
    ratio = {seed: {r["plan"]: r["flops_ratio"] for r in results}
             for seed, results in by_seed.items()}
    # seed 0: target 1.6, reached at the 2nd point (20 FLOPs) of 40; seed 1: target 2.0 at 20
    assert ratio[0] == {"scratch": 1.0, "stack": pytest.approx(0.5)}
    assert ratio[1] == {"scratch": 1.0, "stack": pytest.approx(0.5)}
    assert all(r["seed"] == seed for seed, results in by_seed.items() for r in results)
    # paired with the other seed's scratch (target 1.6), seed 1's stack would reach it later
    crossed = bench.reach(runs["stack"][1]["curve"], 1.6)["flops"]
    assert crossed / 40 == pytest.approx(0.7)


def test_a_plan_missing_at_a_seed_is_left_out_of_that_seed_only(bench) -> None:
    runs = {"scratch": {0: fake_run([3.0, 2.0]), 1: fake_run([3.0, 2.1])},
            "stack": {0: fake_run([2.5, 1.5])}}
    by_seed = bench.seed_results(runs, {"scratch": "-", "stack": "30%"})
    assert [r["plan"] for r in by_seed[0]] == ["scratch", "stack"]
    assert [r["plan"] for r in by_seed[1]] == ["scratch"]


def test_summary_gives_mean_and_min_max_over_seeds(bench) -> None:
    def result(plan: str, seed: int, loss: float, ratio: float | None, held: float) -> dict:
        iq = {"t1": {"exact_match": 0.5, "loglik_per_byte": -2.0, "chance": 0.1},
              "t2": {"exact_match": 0.0, "loglik_per_byte": -4.0, "chance": 0.0}}
        return {"plan": plan, "seed": seed, "final_val_loss": loss, "flops_ratio": ratio,
                "heldout": {"loss": held}, "iq": iq}

    by_seed = {0: [result("scratch", 0, 2.0, 1.0, 2.1), result("stack", 0, 1.5, 0.4, 1.6)],
               1: [result("scratch", 1, 2.2, 1.0, 2.3), result("stack", 1, 1.7, 0.6, 1.8)],
               2: [result("scratch", 2, 2.1, 1.0, 2.2), result("stack", 2, 2.3, None, 2.4)]}
    summary = bench.summarize(by_seed)
    stack = summary["stack"]
    assert stack["flops_ratio"] == {"mean": pytest.approx(0.5), "min": 0.4, "max": 0.6, "n": 2}
    assert stack["reached"] == "2/3"
    assert stack["final_val_loss"]["mean"] == pytest.approx(1.8333333)
    assert (stack["heldout_loss"]["min"], stack["heldout_loss"]["max"]) == (1.6, 2.4)
    assert stack["iq_exact_match"]["mean"] == pytest.approx(0.25)
    assert stack["iq_loglik_per_byte"]["mean"] == pytest.approx(-3.0)
    outcome = bench.verdict(by_seed, summary)
    assert outcome["best_growth"] == "stack" and outcome["best_fixed"] == "scratch"
    assert outcome["beats_on_loss"] and outcome["seeds_won"] == "2/3"
    assert outcome["loss"] == "heldout_loss"


def test_spread_of_nothing_is_none(bench) -> None:
    assert bench.spread([]) is None


# ---- fixed-size plans ---------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [0.02, 0.15, 1.0])
def test_fixed_size_plans_spend_the_budget_within_a_step(bench, scale, tmp_path) -> None:
    args = bench.parse_args(["--protocol", "--scale", str(scale), "--storage", str(tmp_path)])
    base, sizing, plans = bench.build(args)
    table = bench.shapes(128)
    small_stages, _ = plans["small_fixed"]
    mid_stages, _ = plans["mid_fixed"]
    # small_fixed is clone_zero's first stage; mid_fixed half the target's depth at full width
    assert small_stages[0]["shape"] == plans["clone_zero"][0][0]["shape"] == table["half"]
    assert mid_stages[0]["shape"] == {**table["target"], "layers": 4}
    for plan, shape in bench.FIXED.items():
        stages, how = plans[plan]
        assert len(stages) == 1 and "growth" not in stages[0] and how == "fixed size"
        per_token = sizing.per_token(shape)
        spent = per_token * stages[0]["tokens"]
        assert abs(spent - sizing.budget) <= per_token * sizing.batch_tokens
        assert stages[0]["tokens"] % sizing.batch_tokens == 0
    assert (plans["small_fixed"][0][0]["tokens"] > plans["mid_fixed"][0][0]["tokens"]
            > plans["scratch"][0][0]["tokens"])


# ---- the pydoc corpus ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pydoc_storage(bench, tmp_path_factory) -> Path:
    """A storage folder holding the pydoc corpus (written once: parsing the stdlib takes s)."""
    storage = tmp_path_factory.mktemp("pydoc")
    bench.pydoc_corpus(str(storage))
    return storage


def test_pydoc_corpus_is_written_once_and_is_english_prose(bench, pydoc_storage) -> None:
    [path] = (pydoc_storage / "corpora").iterdir()
    assert path.name == f"pydoc-{platform.python_version()}.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    documents = [json.loads(line)["text"] for line in lines]
    assert len(documents) >= 300  # enough for the 2% validation share to hold several
    assert path.stat().st_size > 1_000_000
    assert any(text.startswith("assert\n") for text in documents)  # a pydoc topic
    mtime = path.stat().st_mtime_ns
    assert bench.pydoc_corpus(str(pydoc_storage)) == str(path)
    assert path.stat().st_mtime_ns == mtime  # untouched: the packed dataset's key stays


def test_corpus_pydoc_becomes_a_file_source(bench, pydoc_storage) -> None:
    args = bench.parse_args(["--corpus", "pydoc", "--storage", str(pydoc_storage),
                             "--scale", "0.02"])
    base, _, _ = bench.build(args)
    [path] = (pydoc_storage / "corpora").iterdir()
    assert base["data"]["source"] == str(path)
    from raygrow.data.sources import resolve_source

    assert [file.kind for file in resolve_source(base["data"]["source"])] == ["jsonl"]


# ---- flags --------------------------------------------------------------------------------------


def test_default_is_the_quick_mode(bench) -> None:
    args = bench.parse_args([])
    assert bench.quick(args)
    assert (args.lrs, args.seeds, args.scale, args.eval_limit) == ([3e-3], [0], 1.0, 30)
    assert args.plans == list(bench.DEFAULT_PLANS)


def test_protocol_turns_on_the_sweep_seeds_and_baselines(bench) -> None:
    args = bench.parse_args(["--protocol"])
    assert not bench.quick(args)
    assert len(args.lrs) >= 4 and max(args.lrs) / min(args.lrs) >= 8
    assert len(args.seeds) >= 3 and args.scale == bench.PROTOCOL_SCALE
    assert args.eval_limit == bench.PROTOCOL_EVAL_LIMIT
    assert {"scratch", "small_fixed", "mid_fixed"} <= set(args.plans)
    explicit = bench.parse_args(["--protocol", "--lrs", "1e-3,2e-3", "--scale", "0.5"])
    assert (explicit.lrs, explicit.scale) == ([1e-3, 2e-3], 0.5)


@pytest.mark.parametrize("argv, message", [
    (["--lrs", ""], "--lrs: every value must be > 0"),
    (["--lrs", "1e-3,0"], "--lrs: every value must be > 0"),
    (["--lrs=-1e-3"], "--lrs: every value must be > 0"),
    (["--lrs", "nan"], "--lrs: every value must be > 0"),
    (["--lrs", "fast"], "--lrs: expected comma-separated floats"),
    (["--lrs", "1e-3,1e-3"], "--lrs: values must be distinct"),
    (["--seeds", "0,-1"], "--seeds: every value must be ≥ 0"),
    (["--seeds", "0.5"], "--seeds: expected comma-separated ints"),
    (["--set", "train.lr=1e-3"], "--set train.lr: set by --lrs"),
    (["--set", "data.shuffle_seed=3"], "--set data.shuffle_seed: set by --seeds"),
    (["--plans", "scratch,tiny"], "--plans: unknown 'tiny'"),
    (["--scale", "0"], "--scale: must be > 0"),
    (["--eval-limit=-1"], "--eval-limit: must be ≥ 0"),
])
def test_bad_flags_stop_with_one_line(bench, capsys, argv, message) -> None:
    with pytest.raises(SystemExit) as stopped:
        bench.parse_args(argv)
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in error


def test_protocol_runs_keep_their_names_so_a_stopped_protocol_continues(bench) -> None:
    protocol = bench.parse_args(["--protocol", "--corpus", "pydoc"])
    first, later = bench.Runner(protocol, {}, "dataset"), bench.Runner(protocol, {}, "dataset")
    later.stamp = "another-invocation"
    assert first.name("stack", 3e-3, 1) == later.name("stack", 3e-3, 1) \
        == "protocol-pydoc-x0.1-h128-stack-lr0.003-s1"
    assert first.name("stack", 3e-3, 2) != first.name("stack", 3e-3, 1)
    quick = bench.parse_args([])  # the quick mode: a fresh run per invocation, as before
    first, later = bench.Runner(quick, {}, "dataset"), bench.Runner(quick, {}, "dataset")
    later.stamp = "another-invocation"
    assert first.name("stack", 3e-3, 0) != later.name("stack", 3e-3, 0)


def test_two_corpus_paths_never_share_a_protocol_run_name(bench) -> None:
    names = {bench.Runner(bench.parse_args(["--protocol", "--corpus", corpus]), {}, "d").name(
        "stack", 3e-3, 0) for corpus in ("/data/a.txt", "/data/b.txt")}
    assert len(names) == 2 and all(name.startswith("protocol-corpus-") for name in names)


# ---- --tune -------------------------------------------------------------------------------------


def test_tuned_plan_is_the_sweep_trial_raygrow_tune_ran(bench, tmp_path) -> None:
    """The plan `tuned` is built from a sweep's best row: the same stages raygrow.tune's trial
    trained (shape, tokens, G_stack), so the protocol measures what the sweep chose."""
    from raygrow.model import flops_per_token
    from raygrow.tune.budget import make_trial
    from raygrow.tune.config import sweep_config

    args = bench.parse_args(["--protocol", "--tune", "--storage", str(tmp_path)])
    base, sizing, plans = bench.build(args)
    scratch, _ = plans["scratch"]
    plan = bench.run_config(base, "tune-base", scratch, bench.DEFAULT_LR, 0)
    sweep = sweep_config({"plan": plan.to_dict(), "flop_budget": sizing.budget, "name": "t",
                          "space": {"d": list(bench.TUNE_D), "g": list(bench.TUNE_G)}})
    for d in bench.TUNE_D:
        for g in bench.TUNE_G:
            trial = make_trial(sweep, plan, d, g, "d", "g")
            stages = bench.tuned_stages(sizing, trial.plan.stages[0].shape.layers,
                                        trial.small_tokens, trial.final_tokens)
            tuned = bench.run_config(base, "tuned", stages, 3e-3, 0)
            assert [(s.shape, s.tokens) for s in tuned.stages] == \
                [(s.shape, s.tokens) for s in trial.plan.stages]
            assert tuned.stages[1].growth.depth_op == "stack"
            spent = sum(flops_per_token(s.shape, sizing.vocab, sizing.seq_len) * s.tokens
                        for s in tuned.stages)
            assert abs(spent - sizing.budget) <= sizing.per_token("target") * sizing.batch_tokens


def test_the_tuned_plan_counts_as_growth_in_the_verdict(bench) -> None:
    def result(plan: str, seed: int, loss: float) -> dict:
        return {"plan": plan, "seed": seed, "final_val_loss": loss, "flops_ratio": None,
                "heldout": {"loss": loss}}

    by_seed = {seed: [result("scratch", seed, 2.0), result("tuned", seed, 1.8 + seed / 100),
                      result("small_fixed", seed, 1.9)] for seed in (0, 1)}
    outcome = bench.verdict(by_seed, bench.summarize(by_seed))
    assert outcome["best_growth"] == "tuned" and outcome["best_fixed"] == "small_fixed"
    assert outcome["beats_on_loss"] and outcome["seeds_won"] == "2/2"


def test_a_runs_wall_clock_starts_at_its_first_stage_also_when_read_again(bench, tmp_path) -> None:
    """A finished run read by a later invocation (a continued protocol, --tune added) keeps the
    seconds of its own first invocation, not the new call's."""
    state = {"specs": {"stage-1": {"times": {"prepare_start": 1300.0, "train_start": 1301.0}},
                       "stage-0": {"times": {"prepare_start": 1000.0, "export_end": 1200.0}}}}
    (tmp_path / "coordinator.json").write_text(json.dumps(state))
    assert bench.run_started(str(tmp_path), fallback=5000.0) == 1000.0
    records = [{"time": 1100.0, "flops": 2.0, "val_loss": 3.0}]
    assert bench.val_curve(records, bench.run_started(str(tmp_path), 5000.0))[0]["seconds"] == 100
    assert bench.run_started(str(tmp_path / "missing"), fallback=5000.0) == 5000.0
    (tmp_path / "coordinator.json").write_text(json.dumps({"specs": {"stage-0": {"times": {}}}}))
    assert bench.run_started(str(tmp_path), fallback=5000.0) == 5000.0


def test_an_exports_measurement_is_kept_until_the_export_changes(bench, tmp_path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    (export / "model.safetensors").write_bytes(b"weights")
    calls = []

    def measure() -> dict:
        calls.append(1)
        return {"loss": 1.5 + len(calls)}

    assert bench.kept(export, "heldout", measure) == {"loss": 2.5}
    assert bench.kept(export, "heldout", measure) == {"loss": 2.5} and len(calls) == 1
    assert bench.kept(export, "iq-10", measure) == {"loss": 3.5}  # another measurement
    (export / "model.safetensors").write_bytes(b"other weights")  # a new export
    assert bench.kept(export, "heldout", measure) == {"loss": 4.5} and len(calls) == 3


def test_a_best_lr_at_the_grid_edge_asks_for_one_beyond_it(bench) -> None:
    grid = {7.5e-4: 3.2, 1.5e-3: 3.0, 3e-3: 2.9, 6e-3: 2.8}
    assert bench.beyond_edge(grid, 6e-3) == pytest.approx(1.2e-2)
    assert bench.beyond_edge({**grid, 7.5e-4: 2.0}, 7.5e-4) == pytest.approx(3.75e-4)
    assert bench.beyond_edge(grid, 3e-3) is None  # bracketed
    assert bench.beyond_edge({**grid, 1.2e-2: None}, 6e-3) is None  # the next one failed: stop
    assert bench.beyond_edge({3e-3: 2.0, 6e-3: 1.9}, 6e-3) is None  # too few to call an edge


def test_the_sweep_table_marks_lrs_a_plan_did_not_run(bench, capsys) -> None:
    sweep = {"scratch": {7.5e-4: 3.2, 1.5e-3: 3.0, 3e-3: 2.9, 6e-3: 2.8, 1.2e-2: 2.7},
             "stack": {7.5e-4: 3.1, 1.5e-3: 2.6, 3e-3: 2.7, 6e-3: None}}
    bench.print_sweep(sweep, bench.best_lrs(sweep), seed=0, val_rows=64)
    lines = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    assert lines["scratch"][1:7] == ["3.2000", "3.0000", "2.9000", "2.8000", "2.7000*", "1.20e-02"]
    assert lines["stack"][1:7] == ["3.1000", "2.6000*", "2.7000", "failed", "-", "1.50e-03"]
    assert "edge:" in lines["scratch"] and "edge:" not in lines["stack"]


def test_the_lr_sweep_runs_beyond_an_edge_until_the_optimum_is_inside(bench) -> None:
    """scratch's loss falls up to 1.2e-2 (one step beyond the grid: bracketed after it),
    stack's optimum is inside, small_fixed keeps falling (stops after EDGE_EXTENSIONS), and
    mid_fixed diverges beyond its edge (the failed LR ends its extension)."""
    optimum = {"scratch": 1.2e-2, "stack": 1.5e-3, "small_fixed": 1.0, "mid_fixed": 1.0}
    asked = []

    def attempt(plan: str, lr: float) -> dict | None:
        asked.append((plan, lr))
        if plan == "mid_fixed" and lr > 6.1e-3:
            return None
        return {"curve": [{"val_loss": 2.0 + abs(math.log(lr / optimum[plan]))}]}

    runs = bench.lr_sweep(list(optimum), [7.5e-4, 1.5e-3, 3e-3, 6e-3], attempt)
    assert sorted(runs["scratch"]) == pytest.approx([7.5e-4, 1.5e-3, 3e-3, 6e-3, 1.2e-2, 2.4e-2])
    assert sorted(runs["stack"]) == [7.5e-4, 1.5e-3, 3e-3, 6e-3]
    assert len(runs["small_fixed"]) == 4 + bench.EDGE_EXTENSIONS
    assert sorted(runs["mid_fixed"]) == pytest.approx([7.5e-4, 1.5e-3, 3e-3, 6e-3, 1.2e-2])
    assert bench.best_lrs(bench.final_losses(runs))["scratch"] == pytest.approx(1.2e-2)
    assert len(asked) == len(set(asked))  # no LR runs twice
