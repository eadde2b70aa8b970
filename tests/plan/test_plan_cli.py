"""`raygrow plan`: one JSON object with --json, one-line refusals with exit 2."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from raygrow.plan.cli import add_arguments, run

PLAN = {
    "name": "cli",
    "data": {"source": "stdlib", "tokenizer": "byte", "seq_len": 4},
    "model": {"layers": 1, "hidden": 8, "heads": 2, "ffn": 16, "vocab": 10},
    "train": {"tokens": 64, "batch_tokens": 16, "micro_batch": 4},
}
JSON_KEYS = {"stages", "total_flops", "baseline", "speedup", "chinchilla_tokens", "growth_timing"}


def write_plan(tmp_path: Path, **sections) -> str:
    plan = {key: dict(value) if isinstance(value, dict) else value for key, value in PLAN.items()}
    for section, values in sections.items():
        plan[section] = {**plan.get(section, {}), **values}
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    return str(path)


def plan(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="raygrow plan")
    add_arguments(parser)
    return run(parser.parse_args(list(argv)))


def test_json_schema(tmp_path, capsys):
    assert plan(write_plan(tmp_path), "--json", "--hardware", "a100", "--mfu", "0.5") == 0
    report = json.loads(capsys.readouterr().out)  # exactly one object: extra text would not parse
    assert JSON_KEYS <= report.keys()
    assert set(report["stages"][0]) >= {"params", "non_embedding_params", "tokens", "flops",
                                        "gpu_hours", "cost"}
    assert set(report["baseline"]) >= {"params", "tokens", "flops", "gpu_hours", "cost"}
    assert set(report["growth_timing"]) >= {"tokens", "factor"}
    # 1 layer, d=8, ffn 16, vocab 10 untied, T=4: 6·664 + 12·1·8·4 = 4368 FLOPs per token, 64
    # tokens.
    assert report["total_flops"] == 4368 * 64
    assert report["stages"][0]["gpu_hours"] == pytest.approx(4368 * 64 / (312e12 * 0.5) / 3600)
    assert report["hardware"] == "a100" and report["mfu"] == 0.5


def test_table_and_overrides(tmp_path, capsys):
    assert plan(write_plan(tmp_path), "--set", "data.seq_len=8", "--set", "train.batch_tokens=32",
                "--set", "train.tokens=64", "--hardware", "cpu", "--cpu-peak", "1e10") == 0
    out = capsys.readouterr().out
    assert out.startswith("plan cli: 1 stage(s) on cpu (peak 10.0 GFLOP/s, --cpu-peak)")
    assert "T = data.seq_len = 8" in out
    # 6·664 + 12·1·8·8 = 4752 FLOPs per token × 64 tokens = 304128 ≈ 3.04e5
    assert "3.04e5" in out


@pytest.mark.parametrize("argv, fragment", [
    (["--mfu", "0"], "--mfu: must be in (0, 1]"),
    (["--mfu", "1.2"], "--mfu: must be in (0, 1]"),
    (["--gpu-hour-price", "-1"], "--gpu-hour-price: must be ≥ 0"),
    (["--hardware", "tpu"], "--hardware: unknown hardware 'tpu'"),
    (["--hardware", "h100", "--cpu-peak", "1e11"], "--cpu-peak: only applies to --hardware cpu"),
    (["--hardware", "cpu", "--cpu-peak", "-5"], "--cpu-peak: must be > 0"),
    (["--set", "train.zero_stage=7"], "train.zero_stage: must be 0..3"),
    (["--set", "data.tokenizer=/nonexistent/tok", "--set", "model.vocab=null"], "data.tokenizer"),
])
def test_refusals_are_one_line(tmp_path, capsys, argv, fragment):
    assert plan(write_plan(tmp_path), *argv) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("raygrow: error: "), captured.err
    assert fragment in lines[0]
    assert captured.out == ""


def test_missing_plan_file(tmp_path, capsys):
    assert plan(str(tmp_path / "nope.yaml")) == 2
    assert "does not exist" in capsys.readouterr().err


def test_shrinking_plan_refused(tmp_path, capsys):
    path = tmp_path / "shrink.yaml"
    stages = [{"shape": {"layers": 2, "hidden": 8, "heads": 2, "ffn": 16, "vocab": 10},
               "tokens": 64},
              {"shape": {"layers": 1, "hidden": 8, "heads": 2, "ffn": 16, "vocab": 10},
               "tokens": 64,
               "growth": {"depth_op": "stack"}}]
    raw = {key: value for key, value in PLAN.items() if key != "model"}
    path.write_text(yaml.safe_dump({**raw, "stages": stages}))
    assert plan(str(path)) == 2
    assert "raygrow: error: stages[1].shape.layers: must be ≥ 2" in capsys.readouterr().err


def test_module_entry_point_refuses_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "raygrow.plan.cli", write_plan(tmp_path),
                             "--mfu", "2"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["raygrow: error: --mfu: must be in (0, 1] (a "
                                                  "fraction of peak, e.g. 0.4), got 2.0"]
