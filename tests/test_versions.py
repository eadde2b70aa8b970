"""Version updates (raygrow.versions): segment plans and cost accounting (pure), refusal of bad
input, and a real LR path switching run on local Ray with growth at a version boundary."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from raygrow.config import from_dict, load_config
from raygrow.errors import ConfigError
from raygrow.versions import (PAPER_DECAY_FRACTION, VersionsConfig, decay_steps, plan_cost,
                              plan_segments)

REPO = Path(__file__).resolve().parents[1]
SMALL = {"layers": 2, "hidden": 32, "heads": 4, "kv_heads": 2, "ffn": 64}
LARGE = {**SMALL, "layers": 4}
BATCH = 512  # tokens per step in the integration runs (tiny_config's train.batch_tokens)
# steps per version in the integration runs; decay fraction 0.5: 2 main-path steps, 2 branch steps
STEPS = 4


# ---- segment plans and cost accounting (pure) ---------------------------------------------------


def costs(mode: str, steps: list[int], flops_per_token: list[float], batch_tokens: int = 2,
          decay: float = 0.6):
    segments = plan_segments(mode, steps, decay)
    return segments, plan_cost(segments, len(steps), flops_per_token, batch_tokens)


def test_path_switching_cost_by_hand():
    # Two versions of 10 steps, decay over 6: v1 = head 4 + branch 6; v2 = v1's tail 6 + head 4 +
    # branch 6. Version 2's shape costs 300 FLOPs/token, version 1's 100; 2 tokens a step.
    segments, rows = costs("path_switching", [10, 10], [100, 300])
    assert [(s.name, s.start, s.end, s.init, s.rebase) for s in segments] == [
        ("main/v1-head", 0, 4, None, False), ("release/v1", 4, 10, "main/v1-head", False),
        ("main/v1-tail", 4, 10, "main/v1-head", False),
        ("main/v2-head", 0, 4, "main/v1-tail", True),
        ("release/v2", 4, 10, "main/v2-head", False)]
    assert rows[0] == {"steps": 10, "tokens": 20, "flops": 2000.0,
                       "cumulative": {"steps": 10, "tokens": 20, "flops": 2000.0}}
    assert rows[1] == {"steps": 16, "tokens": 32, "flops": 6 * 2 * 100 + 10 * 2 * 300.0,
                       "cumulative": {"steps": 26, "tokens": 52, "flops": 9200.0}}


def test_from_scratch_and_continual_cost_by_hand():
    _, scratch = costs("from_scratch", [10, 10], [100, 300])
    assert [(r["steps"], r["flops"], r["cumulative"]["flops"]) for r in scratch] == [
        (10, 2000.0, 2000.0), (20, 12000.0, 14000.0)]  # v2 retrains 20 steps at the new shape
    segments, continual = costs("continual", [10, 10], [100, 300])
    assert [(r["steps"], r["flops"], r["cumulative"]["flops"]) for r in continual] == [
        (10, 2000.0, 2000.0), (10, 6000.0, 8000.0)]
    assert [(s.init, s.rebase) for s in segments] == [(None, False), ("release/v1", True)]


def test_paper_cost_figure_four_equal_versions():
    """arXiv 2410.04103: four versions at 58% of retraining each from scratch."""
    _, switching = costs("path_switching", [50] * 4, [1.0] * 4, decay=PAPER_DECAY_FRACTION)
    _, scratch = costs("from_scratch", [50] * 4, [1.0] * 4)
    assert (switching[-1]["cumulative"]["flops"] / scratch[-1]["cumulative"]["flops"]
            == pytest.approx(0.58))


def test_decay_steps_and_full_decay_has_no_head():
    assert [decay_steps(10, f) for f in (0.01, 0.5, 1.0)] == [1, 5, 10]
    segments = plan_segments("path_switching", [3, 3], 1.0)
    assert [s.name for s in segments] == ["release/v1", "main/v1-tail", "release/v2"]
    # branches off the boundary itself
    assert segments[2].init == "main/v1-tail" and segments[2].rebase


def test_lr_segments_main_at_peak_and_branch_decays():
    from raygrow.config import TrainConfig

    train = TrainConfig(lr=1.0, min_lr_ratio=0.1, warmup_steps=2)
    for segment in plan_segments("path_switching", [8, 8], 0.5, train=train):
        trace = [segment.lr.lr(step) for step in range(segment.start, segment.end)]
        if segment.role == "main":
            after_warmup = trace[2:] if segment.name == "main/v1-head" else trace
            assert after_warmup == [1.0] * len(after_warmup), segment.name
        else:
            assert (trace[-1] == pytest.approx(0.1) and trace == sorted(trace, reverse=True)
                    and trace[0] < 1.0)


# ---- bad input ---------------------------------------------------------------------------------


def versions_plan(**versions) -> dict:
    return {"name": "versions", "data": {"source": "stdlib", "seq_len": 32},
            "train": {"batch_tokens": BATCH, "micro_batch": 4}, "model": SMALL,
            "versions": {"data": [{"documents": {"start": 0, "end": 4}},
                                  {"documents": {"start": 4, "end": 8}}],
                         **versions}}


BAD = {
    "out of order (slices)": ({"data": [{"documents": {"start": 4, "end": 8}},
                                        {"documents": {"start": 0, "end": 4}}]},
                              "versions.data[1].documents: starts at document 0, inside or before "
                              "data[0]'s [4, 8)"),
    "out of order (names)": ({"data": [{"name": "v2", "source": "stdlib"},
                                       {"name": "v1", "source": "/tmp"}]},
                             "versions.data[1].name: v1 comes after v2; "
                             "list versions oldest first"),
    "empty version": ({"data": [{"documents": {"start": 0, "end": 4}},
                                {"documents": {"start": 4, "end": 4}}]},
                      "versions.data[1].documents: empty slice [4, 4)"),
    "no versions": ({"data": []}, "versions.data: list at least one version"),
    "decay fraction 0": ({"decay_fraction": 0},
                         "versions.decay_fraction: must be in (0, 1], got 0"),
    "decay fraction > 1": ({"decay_fraction": 1.5},
                           "versions.decay_fraction: must be in (0, 1], got 1.5"),
    "growth without ops": ({"data": [{"documents": {"start": 0, "end": 4}},
                                     {"documents": {"start": 4, "end": 8}, "shape": LARGE,
                                      "growth": {}}]},
                           "versions.data[1].growth.depth_op: layers grow 2 → 4"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_versions_are_refused_naming_the_field(case, tmp_path):
    versions, message = BAD[case]
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(versions_plan(**versions)))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value).startswith(message), str(caught.value)


def test_a_slice_past_the_end_of_its_source_is_refused_before_any_work(tmp_path):
    from raygrow.versions.runner import check

    config = load_config(_write(tmp_path, versions_plan(data=[{"documents": {"start": 0, "end": 4}},
                                                               {"documents": {"start": 10**7}}])))
    with pytest.raises(ConfigError,
                       match=r"versions.data\[1\].documents: starts at document 10000000, past"):
        check(config)


def _write(tmp_path: Path, plan: dict) -> Path:
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump({**plan, "storage": str(tmp_path / "runs")}))
    return path


@pytest.mark.parametrize("case", ["out of order (slices)", "empty version", "decay fraction 0"])
def test_cli_refuses_with_one_line_and_writes_nothing(case, tmp_path):
    versions, message = BAD[case]
    path = _write(tmp_path, versions_plan(**versions))
    env = {**os.environ, "RAY_ADDRESS": ""}
    result = subprocess.run([sys.executable, "-m", "raygrow.cli", "versions", str(path)],
                            cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"raygrow: error: {message}"), lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.yaml"]


def test_shipped_versions_plans_parse():
    plans = sorted((REPO / "jobs" / "plans").glob("versions*.yaml"))
    assert plans
    for plan in plans:
        config = load_config(plan)
        assert config.versions is not None and len(config.versions.data) >= 2


# ---- a real run: LR path switching with growth at the second version ----------------------------


def switching_config(tiny_config, name: str):
    versions = {"mode": "path_switching", "decay_fraction": 0.5, "data": [
        {"documents": {"start": 0, "end": 20}, "tokens": STEPS * BATCH},
        {"documents": {"start": 20, "end": 40}, "tokens": STEPS * BATCH, "shape": LARGE,
         "growth": {"depth_op": "stack"}}]}
    config = tiny_config(name, train={"log_rows": True})
    return dataclasses.replace(config, versions=from_dict(VersionsConfig, versions))


@pytest.fixture(scope="module")
def switched(ray_local, tiny_config):
    from raygrow.versions.runner import run_versions

    config = switching_config(tiny_config, "switched")
    return config, run_versions(config, show_progress=False)


def records(run_dir: Path, segment: str) -> list[dict]:
    lines = (run_dir / segment / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "lr" in r and "event" not in r]


def rows(run_dir: Path, segment: str) -> list[int]:
    lines = (run_dir / segment / "rows" / "rank-0.jsonl").read_text().splitlines()
    return [row for line in lines for row in json.loads(line)["rows"]]


def final_params(run_dir: Path, segment: str) -> dict[str, torch.Tensor]:
    from raygrow.train import checkpoint

    return load_file(Path(checkpoint.latest_valid(run_dir / segment)) / "model.safetensors")


@pytest.mark.slow
@pytest.mark.ray
def test_branch_lr_ends_at_minimum_and_main_path_stays_at_peak(switched):
    config, summary = switched
    run_dir, peak = Path(config.run_dir), config.train.lr
    assert summary["complete"]
    main = (records(run_dir, "main/v1-head") + records(run_dir, "main/v1-tail")
            + records(run_dir, "main/v2-head"))
    assert ([r["lr"] for r in main[config.train.warmup_steps:]]
            == [peak] * (len(main) - config.train.warmup_steps))
    assert main[0]["lr"] < peak  # the warm-up happened
    for branch in ("release/v1", "release/v2"):
        trace = [r["lr"] for r in records(run_dir, branch)]
        assert len(trace) == STEPS // 2 and trace[0] < peak
        assert trace[-1] == pytest.approx(peak * config.train.min_lr_ratio)


@pytest.mark.slow
@pytest.mark.ray
def test_branches_never_disturb_the_main_path(switched, tiny_config):
    from raygrow.versions.runner import run_versions

    reference, _ = switched
    config = switching_config(tiny_config, "main-only")
    summary = run_versions(config, show_progress=False, branches=False)
    assert summary["complete"] and not (Path(config.run_dir) / "release").exists()
    for segment in ("main/v1-head", "main/v1-tail", "main/v2-head"):
        ours, theirs = (final_params(Path(config.run_dir), segment),
                        final_params(Path(reference.run_dir), segment))
        assert ours.keys() == theirs.keys()
        assert all(torch.equal(ours[name], theirs[name]) for name in ours), segment


@pytest.mark.slow
@pytest.mark.ray
def test_each_path_takes_each_row_of_a_version_once(switched):
    config, _ = switched
    run_dir = Path(config.run_dir)
    for version in (1, 2):
        head, tail_or_branch = rows(run_dir, f"main/v{version}-head"), rows(run_dir,
                                                                            f"release/v{version}")
        main = head + tail_or_branch
        assert len(main) == len(set(main)) == STEPS * config.batch_rows
    assert rows(run_dir, "main/v1-tail") == rows(run_dir, "release/v1")  # same rows, other LR


@pytest.mark.slow
@pytest.mark.ray
def test_growth_at_the_boundary_releases_and_cost(switched):
    from transformers import AutoModelForCausalLM

    config, summary = switched
    run_dir = Path(config.run_dir)
    first, second = summary["versions"]
    assert second["growth"]["depth_op"] == "stack"
    assert len(final_params(run_dir, "main/v2-head").keys()
               - final_params(run_dir, "main/v1-tail").keys()) > 0
    # the second release branches off the grown model
    for version, layers in ((first, 2), (second, 4)):
        model = AutoModelForCausalLM.from_pretrained(version["release"])
        assert model.config.num_hidden_layers == layers
        assert 0 < version["release_val_loss"] < 10
        assert version["cost"]["steps"] == version["planned"]["steps"]
        assert version["cost"]["flops"] == pytest.approx(version["planned"]["flops"])
    # v1's tail is v2's
    assert (first["cost"]["steps"], second["cost"]["steps"]) == (STEPS, STEPS + STEPS // 2)
    assert summary["total"]["flops"] == pytest.approx(first["cost"]["flops"]
                                                      + second["cost"]["flops"])
    assert json.loads((run_dir / "summary.json").read_text())["total"] == summary["total"]
    assert (run_dir / "report.png").exists()
