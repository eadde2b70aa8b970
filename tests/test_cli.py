"""The `raygrow` command refuses bad input with one line, before any cluster work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

PLAN = {
    "name": "bad",
    "data": {"source": "stdlib", "seq_len": 32, "max_documents": 5},
    "model": {"layers": 1, "hidden": 32, "heads": 4},
    "train": {"tokens": 4096, "batch_tokens": 512, "micro_batch": 4},
}


def raygrow(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "RAY_ADDRESS": ""}  # never join a cluster from these tests
    return subprocess.run([sys.executable, "-m", "raygrow.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def write_plan(tmp_path: Path, **sections) -> Path:
    plan = {key: dict(value) if isinstance(value, dict) else value for key, value in PLAN.items()}
    for section, values in sections.items():
        plan[section] = {**plan.get(section, {}), **values} if isinstance(values, dict) else values
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def assert_refused(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("raygrow: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def bad_tokenizer_dir(tmp_path: Path) -> str:
    directory = tmp_path / "tok"
    directory.mkdir()
    (directory / "tokenizer.json").write_text("{ this is not json")
    return str(directory)


def empty_corpus(tmp_path: Path) -> str:
    directory = tmp_path / "empty"
    directory.mkdir()
    (directory / "blank.txt").write_text("   \n\n")
    return str(directory)


CASES = {
    "unknown key": (lambda tmp: {"train": {"wrkers": 2}}, ["train.wrkers", "unknown key"]),
    "hidden vs heads": (lambda tmp: {"model": {"layers": 1, "hidden": 30, "heads": 4}},
                        ["model.hidden", "divisible by heads"]),
    "seq_len over positions": (lambda tmp: {"model": {"layers": 1, "hidden": 32, "heads": 4,
                                                      "max_positions": 16}},
                               ["data.seq_len", "max_positions"]),
    "missing path": (lambda tmp: {"data": {"source": str(tmp / "nowhere")}}, ["nowhere"]),
    "empty corpus": (lambda tmp: {"data": {"source": empty_corpus(tmp)}}, ["empty"]),
    "bad tokenizer": (lambda tmp: {"data": {"source": "stdlib",
                                            "tokenizer": bad_tokenizer_dir(tmp)}}, ["tok"]),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_train_refuses_bad_input_before_any_work(tmp_path, case):
    sections, fragments = CASES[case]
    plan = write_plan(tmp_path, **sections(tmp_path))
    storage = tmp_path / "storage"
    result = raygrow("train", str(plan), "--storage", str(storage), cwd=tmp_path)
    assert_refused(result, *fragments)
    assert not storage.exists()  # nothing half-written


def test_validate_accepts_a_good_plan_and_names_the_bad_field(tmp_path):
    plan = write_plan(tmp_path)
    good = raygrow("validate", str(plan), cwd=tmp_path)
    assert good.returncode == 0 and "ok" in good.stdout, good.stderr
    bad = raygrow("validate", str(plan), "--set", "train.zero_stage=5", cwd=tmp_path)
    assert_refused(bad, "train.zero_stage: must be 0..3, got 5")
