"""`raygrow eval` through the real command: tables and JSON on an export and on a run's stages,
the IQ suite written as lm-eval tasks, and every refusal as one line, exit 2, nothing written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from raygrow.cli import main
from raygrow.config import Shape
from raygrow.data.tokenizer import ByteTokenizer
from raygrow.model import build_model


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("export")
    tokenizer = ByteTokenizer()
    build_model(Shape(layers=1, hidden=32, heads=2, ffn=64), tokenizer.vocab_size,
                eos_id=tokenizer.eos_id).save_pretrained(directory)
    tokenizer.save_pretrained(str(directory))
    return directory


@pytest.fixture
def run_dir(export, tmp_path) -> Path:
    """A run directory as a plan leaves it: stage-K/export and a summary with stage FLOPs."""
    for index in range(2):
        shutil.copytree(export, tmp_path / f"stage-{index}" / "export")
    (tmp_path / "summary.json").write_text(json.dumps({"stages": [{"flops": 1e9}, {"flops": 3e9}]}))
    return tmp_path


def refused(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("raygrow: error: ") and "\n" not in error and "Traceback" not in error
    return error


def test_an_export_gives_a_table_and_json(export, capsys):
    assert main(["eval", str(export), "--tasks", "counting,symbolic_mapping", "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "counting" in out and "symbolic_mapping" in out and "0.417" in out  # chance column
    result = json.loads((export / "eval.json").read_text())
    assert set(result["scores"]) == {"counting", "symbolic_mapping"} and result["key"]["limit"] == 2
    assert main(["eval", str(export), "--tasks", "head_tail", "--limit", "1", "--shots",
                 "0", "--json",
                 "--out", str(export / "other.json")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["scores"]["head_tail"]["shots"] == 0
    assert json.loads((export / "other.json").read_text()) == printed


def test_stages_all_gives_the_inheritance_table_and_plot(run_dir, capsys):
    assert main(["eval", str(run_dir), "--stages", "all", "--tasks", "full_repeating",
                 "--limit", "2"]) == 0
    out = capsys.readouterr().out
    assert "stage 0" in out and "stage 1" in out
    results = json.loads((run_dir / "eval_stages.json").read_text())
    assert [(r["stage"], r["flops"]) for r in results] == [(0, 1e9), (1, 4e9)]  # cumulative FLOPs
    assert (run_dir / "eval_stages.png").stat().st_size > 1000
    assert main(["eval", str(run_dir), "--stages", "1", "--tasks", "counting", "--limit", "1",
                 "--json"]) == 0
    assert [r["stage"] for r in json.loads(capsys.readouterr().out)] == [1]


def test_write_lm_eval_tasks(tmp_path, capsys):
    out = tmp_path / "tasks"
    assert main(["eval", "--write-lm-eval-tasks", str(out), "--tasks", "counting,head_slicing",
                 "--limit", "3"]) == 0
    assert "raygrow_iq" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == [
        "raygrow_iq.yaml", "raygrow_iq_counting.jsonl", "raygrow_iq_counting.yaml",
        "raygrow_iq_head_slicing.jsonl", "raygrow_iq_head_slicing.yaml"]
    assert len((out / "raygrow_iq_counting.jsonl").read_text().splitlines()) == 3
    from raygrow.eval.harness import task_manager

    manager = task_manager(str(out))  # lm-eval itself finds the tasks and the group
    assert {"raygrow_iq", "raygrow_iq_counting",
            "raygrow_iq_head_slicing"} <= set(manager.all_tasks)


def test_bad_input_is_one_line_exit_2_and_nothing_written(export, run_dir, tmp_path, capsys):
    before = sorted(p.name for p in export.iterdir())
    assert "'nope'" in refused(["eval", str(export), "--tasks", "counting,nope"], capsys)
    assert "--shots: 9 is more than task counting" in refused(["eval", str(export),
                                                               "--shots", "9"], capsys)
    assert "is not a model directory" in refused(["eval", str(tmp_path)], capsys)
    assert "no such directory" in refused(["eval", str(tmp_path / "missing")], capsys)
    (tmp_path / "config.json").write_text("{}")
    assert "no weights" in refused(["eval", str(tmp_path)], capsys)
    assert "stage-5: no such stage" in refused(["eval", str(run_dir), "--stages", "0,5"], capsys)
    assert "no stage-K" in refused(["eval", str(export), "--stages", "all"], capsys)
    assert "lm-eval:no_such_task_anywhere: no such lm-eval task" in refused(
        ["eval", str(export), "--tasks", "lm-eval:no_such_task_anywhere"], capsys)
    # an installed lm-eval task whose dataset is not on this machine (no hub here)
    assert "lm-eval:arc_easy: its dataset is not on this machine" in refused(
        ["eval", str(export), "--tasks", "counting,lm-eval:arc_easy"], capsys)
    assert "writes IQ tasks only" in refused(
        ["eval", "--write-lm-eval-tasks", str(tmp_path / "t"), "--tasks", "lm-eval:arc_easy"],
        capsys)
    assert sorted(p.name for p in export.iterdir()) == before
    assert not (run_dir / "eval_stages.json").exists() and not (tmp_path / "t").exists()
