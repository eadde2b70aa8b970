"""Sweeps: the FLOP-budget arithmetic and refusals (no Ray), and a real 4-trial sweep on a local
Ray cluster that is interrupted, resumed, and ends with a best plan `raygrow train` accepts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray
import yaml

from raygrow.config import DataConfig, RunConfig, Shape, TrainConfig, load_config
from raygrow.errors import ConfigError
from raygrow.plan import Hardware, plan_report
from raygrow.tune import load_sweep, make_trials, sweep, sweep_config
from raygrow.tune.config import base_plan
from raygrow.tune.results import read_csv

H100 = Hardware("h100", 989e12, "table")
REPO = Path(__file__).resolve().parents[1]


def hand_base(**train) -> RunConfig:
    """One stage: 4 layers, d=8, 2 heads, ffn 16, vocab 10 untied, T = 4, 16-token steps.
    FLOPs per token (6·N_non-embedding + 12·L·d·T; one block has 656 parameters, see
    tests/plan/test_accounting.py): 1 layer 4368, 2 layers 8688, 4 layers 17328."""
    return RunConfig(name="hand", model=Shape(layers=4, hidden=8, heads=2, ffn=16, vocab=10),
                     data=DataConfig(seq_len=4),
                     train=TrainConfig(**{"batch_tokens": 16, "micro_batch": 4, **train}))


BUDGET = 17328 * 16 * 10  # ten steps of the final model


def hand_sweep(**fields):
    return sweep_config({"plan": hand_base().to_dict(), "flop_budget": BUDGET,
                         "space": {"d": [0.25], "g": [4]}, **fields})


def test_trial_budget_matches_hand_count_and_the_planner():
    config = hand_sweep(space={"d": [0.25, 32], "g": [4, 2]})
    trials = make_trials(config, hand_base())
    assert [(t.d, t.g) for t in trials] == [(0.25, 4), (32, 4), (0.25, 2), (32, 2)]
    share = trials[0]
    # d = 0.25 of the budget on the 1-layer model: 693,120 / 4368 = 158.7 tokens → 9 steps (144).
    assert share.plan.stages[0].shape.layers == 1 and share.plan.stages[1].shape.layers == 4
    assert (share.small_tokens, share.small_flops) == (144, 4368 * 144)
    # The rest, 2,143,488 FLOPs, is 7.73 final-model steps of 277,248: rounded to 8 (128 tokens).
    assert (share.final_tokens, share.final_flops) == (128, 17328 * 128)
    tokens = trials[1]
    assert (tokens.small_tokens, tokens.final_tokens) == (
        32, 16 * round((BUDGET - 4368 * 32) / (17328 * 16)))
    assert (trials[2].plan.stages[0].shape.layers == 2
            and trials[2].small_tokens == 16 * (693_120 // 8688 // 16))
    for trial in trials:
        assert abs(trial.flops - BUDGET) <= 17328 * 16 / 2  # within half a final-model step
        assert plan_report(trial.plan, H100).total_flops == trial.flops  # the planner agrees
        assert trial.plan.stages[1].growth.depth_op == "stack"
    assert len({t.run_name for t in trials}) == 4


def test_trial_keeps_the_base_plans_growth_workers_and_zero_stages():
    raw = hand_base(micro_batch=2).to_dict()
    raw.update(model=None, stages=[
        {"shape": {**raw["model"], "layers": 2}, "tokens": 64, "workers": 1, "zero_stage": 2},
        {"shape": raw["model"], "tokens": 64, "workers": {"min": 1, "max": 2}, "zero_stage": 3,
         "growth": {"depth_op": "stack", "optimizer": "reset", "lr": "restart",
                    "layer_order": [0, 0, 1, 1]}}])
    config = hand_sweep(plan=raw, space={"d": [0.5], "g": [4]})
    base = base_plan(config, Path.cwd())
    (trial,) = make_trials(config, base)
    small, final = trial.plan.stages
    assert (small.workers, small.zero_stage, small.shape.layers) == (1, 2, 1)
    assert (final.workers.max, final.zero_stage, final.growth.depth_op) == (2, 3, "stack")
    assert final.growth.layer_order is None and final.growth.lr == "restart"  # g decides the layers


def test_overrides_change_the_base_plan_like_set(tmp_path):
    path = tmp_path / "base.yaml"
    path.write_text(yaml.safe_dump(hand_base().to_dict()))
    for plan in (str(path), hand_base().to_dict()):
        config = hand_sweep(plan=plan, overrides=["train.val_every=4", "model.ffn=32"])
        base = base_plan(config, tmp_path)
        assert (base.train.val_every, base.model.ffn) == (4, 32)
    with pytest.raises(ConfigError, match="plan.train.val_every: must be an integer"):
        base_plan(hand_sweep(overrides=["train.val_every=often"]), tmp_path)


def test_trial_reads_validations_of_both_stages_and_skips_a_half_written_line(tmp_path):
    from raygrow.tune.trial import validations

    (tmp_path / "stage-0").mkdir()
    (tmp_path / "stage-1").mkdir()
    (tmp_path / "stage-0" / "metrics.jsonl").write_text(
        '{"step": 1, "lr": 0.1, "grad_norm": 1.0, "flops": 10, "tokens": 4, "loss": 5.0}\n'
        '{"step": 2, "lr": 0.1, "grad_norm": 1.0, "flops": 20, "tokens": 8, "val_loss": 4.0}\n')
    (tmp_path / "stage-1" / "metrics.jsonl").write_text(
        '{"event": "growth", "step": 0, "flops": 20, "tokens": 8, "val_loss": 4.5}\n'
        '{"step": 1, "lr": 0.1, "grad_norm": 1.0, "flops": 40, "tokens": 12, "val_loss": '
        '3.5}\n{"step": 2, "flops": 60, "val')
    assert ([(r.stage, r.step, r.val_loss) for r in validations(str(tmp_path), 2)]
            == [(0, 2, 4.0), (1, 1, 3.5)])


REFUSALS = {
    "g does not divide": ({"space": {"d": [0.25], "g": [4, 3]}},
                          "space.g[1]: 3 does not divide the final model's 4"),
    "g not above 1": ({"space": {"d": [0.25], "g": [1]}}, "space.g[0]: must be > 1"),
    "d eats the budget": ({"space": {"d": [0.99], "g": [2]}}, "space.d[0]: 0.99 (g=2) leaves"),
    "d below a batch": ({"space": {"d": [8], "g": [2]}},
                        "space.d[0]: 8 gives 8 small-model tokens"),
    "d twice": ({"space": {"d": [0.1, 0.1], "g": [2]}}, "space.d[1]: 0.1 is listed twice"),
    "empty grid": ({"space": {"d": [], "g": [2]}}, "space.d: must list at least one value"),
    "no budget": ({"flop_budget": 0}, "flop_budget: must be > 0"),
    "unknown key": ({"asha": {"grace_period": 3}}, "asha.grace_period: unknown key"),
    "grace past the budget": ({"asha": {"grace": 2 * BUDGET}}, "asha.grace: the first rung"),
    "bad base plan": ({"plan": {**hand_base().to_dict(), "train": {"zero_stage": 5}}},
                      "plan.train.zero_stage: must be 0..3, got 5"),
    "missing plan file": ({"plan": "nowhere.yaml"}, "plan: config file"),
}


@pytest.mark.parametrize("case", REFUSALS, ids=list(REFUSALS))
def test_bad_sweep_input_is_refused_naming_the_field(case, tmp_path):
    fields, message = REFUSALS[case]
    with pytest.raises(ConfigError) as caught:
        config = hand_sweep(**fields)
        make_trials(config, base_plan(config, tmp_path))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_three_stage_base_plan_is_refused():
    raw = hand_base().to_dict()
    shape = raw["model"]
    raw.update(model=None, stages=[{"shape": {**shape, "layers": 1}, "tokens": 64},
                                   {"shape": {**shape, "layers": 2}, "tokens": 64,
                                    "growth": {"depth_op": "stack"}},
                                   {"shape": shape, "tokens": 64, "growth": {"depth_op": "stack"}}])
    config = hand_sweep(plan=raw)
    with pytest.raises(ConfigError,
                       match="plan.stages: a sweep grows one small model into the final one"):
        make_trials(config, base_plan(config, Path.cwd()))


def test_cli_refuses_a_bad_sweep_with_one_line_before_any_work(tmp_path):
    storage = tmp_path / "sweeps"
    bad = {"plan": str(REPO / "jobs/plans/tiny.yaml"), "flop_budget": 2e12, "storage": str(storage),
           "space": {"d": [0.1], "g": [3]}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    result = subprocess.run([sys.executable, "-m", "raygrow.cli", "tune", str(path)], cwd=tmp_path,
                            env={**os.environ, "RAY_ADDRESS": ""}, capture_output=True, text=True,
                            timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith("raygrow: error: space.g[0]: 3 does not divide the final "
                               "model's 4 layers")
    assert not storage.exists()  # nothing written


def test_shipped_sweep_files_parse_and_fit_their_budget():
    files = sorted((REPO / "jobs" / "sweeps").glob("*.yaml"))
    assert files
    for path in files:
        config, relative_to = load_sweep(path)
        trials = make_trials(config, base_plan(config, relative_to))
        assert len(trials) == len(config.space.d) * len(config.space.g)


def test_a_rerun_with_another_grid_is_refused(tmp_path):
    sweep_dir = tmp_path / "s"
    sweep_dir.mkdir()
    (sweep_dir / "sweep.json").write_text(json.dumps({"plan": {}, "flop_budget": 1.0}))
    base = hand_base().to_dict()
    base["data"]["source"] = "stdlib"
    with pytest.raises(ConfigError, match="name: sweep s in .* was started with another plan"):
        sweep(base, space={"d": [0.25], "g": [4]}, flop_budget=BUDGET, name="s",
              storage=str(tmp_path))


# ---- a real sweep
# ---------------------------------------------------------------------------------

FINAL = {"layers": 4, "hidden": 32, "heads": 4, "kv_heads": 2, "ffn": 64}
FINAL_STEP_FLOPS = 272_064 * 512  # FLOPs per token of FINAL at seq 32 × a 512-token step


def _wait_for_idle_cluster(sweep_dir: Path, timeout_s: float = 90) -> None:
    """Every CPU back and no coordinator of this sweep alive: stopped trials cleaned up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        coordinators = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                        if str(sweep_dir) in a["name"]]
        if (not coordinators
                and ray.available_resources().get("CPU", 0) == ray.cluster_resources()["CPU"]):
            return
        time.sleep(1)
    raise AssertionError(f"cluster not idle: {coordinators}, {ray.available_resources()}")


def _fingerprint(run_dir: Path) -> dict:
    files = [run_dir / "summary.json", *sorted(run_dir.glob("stage-*/metrics.jsonl"))]
    return {str(path): (path.stat().st_mtime_ns, path.read_text()) for path in files}


@pytest.mark.slow
@pytest.mark.ray
def test_sweep_is_interrupted_resumes_and_writes_the_best_plan(ray_local, tiny_config,
                                                               tmp_path, monkeypatch):
    base = tiny_config("sweep-base", model=FINAL,
                       train={"val_every": 2, "warmup_steps": 1, "deterministic": False},
                       checkpoint={"every_steps": 2, "keep": 2})
    budget = 8 * FINAL_STEP_FLOPS
    kwargs = dict(space={"d": [0.2, 0.45], "g": [2, 4]}, flop_budget=budget, name="tiny",
                  storage=str(tmp_path),
                  concurrency=2, asha={"grace": 0.3, "reduction_factor": 2}, show_progress=False)

    monkeypatch.setenv("RAYGROW_FAULT", "sweep_interrupt:2")  # Ctrl-C once two trials have ended
    first = sweep(base, **kwargs)
    sweep_dir = Path(first.sweep_dir)
    assert first.interrupted
    ended = {row.run: row for row in first.rows if row.status in ("complete", "stopped")}
    assert len(ended) >= 2 and all(row.status != "error" for row in first.rows), first.table
    _wait_for_idle_cluster(sweep_dir)  # the trials cut off by the interrupt left nothing running
    finished = {run: _fingerprint(sweep_dir / "runs" / run) for run, row in ended.items()
                if row.status == "complete"}

    monkeypatch.delenv("RAYGROW_FAULT")
    result = sweep(base, **kwargs)
    assert not result.interrupted, result.table
    assert all(row.status in ("complete", "stopped") for row in result.rows), result.table
    assert len(read_csv(sweep_dir / "trials.csv")) == 4
    for row in result.rows:
        if row.run in ended:  # ended before the interrupt: kept, not rerun
            assert (row.status, row.val_loss) == (ended[row.run].status, ended[row.run].val_loss)
    for run, fingerprint in finished.items():
        assert _fingerprint(sweep_dir / "runs" / run) == fingerprint
    for row in result.rows:
        if row.status == "complete":
            assert abs(row.flops - budget) <= FINAL_STEP_FLOPS / 2
        else:  # stopped by ASHA at a rung, before the budget
            assert row.flops < budget
    _wait_for_idle_cluster(sweep_dir)

    # Intermediate results reached Tune as validation loss against cumulative FLOPs.
    from ray import tune

    frames = tune.ExperimentAnalysis(str(sweep_dir)).trial_dataframes.values()
    assert all(frame["flops"].is_monotonic_increasing for frame in frames)
    assert max(len(frame) for frame in frames) >= 3

    best = result.best
    assert best is not None and best.val_loss == min(r.val_loss for r in result.rows
                                                     if r.status == "complete")
    plan = load_config(result.best_plan)
    assert plan.name == "tiny-best" and [s.shape.layers for s in plan.stages] == [4 / best.g, 4]
    assert abs(plan_report(plan, H100).total_flops - budget) <= FINAL_STEP_FLOPS / 2
    assert (sweep_dir / "sweep.png").stat().st_size > 0 and (sweep_dir / "trials.md").exists()
    assert f"| {best.run} * |" in result.table
