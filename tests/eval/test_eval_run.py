"""A plan with `eval:` on a real local Ray cluster: every stage's export (and the grown init) is
scored by Ray tasks, recorded in eval.jsonl and summary.json, drawn in report.png, and a rerun's
evaluations skip what is recorded."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from raygrow import driver
from raygrow.coordinator.evaluation import Evaluations, _key_text
from raygrow.coordinator.spec import plan_specs
from raygrow.eval.config import EvalConfig
from raygrow.eval.results import read_records

pytestmark = pytest.mark.ray

SMALL = {"layers": 2, "hidden": 32, "heads": 4, "kv_heads": 2, "ffn": 64}
TASKS = ["counting", "full_repeating", "supporting_facts_1"]


@pytest.fixture(scope="module")
def evaluated(ray_local, tiny_config):
    stages = [{"shape": SMALL, "tokens": 3 * 512},
              {"growth": {"depth_op": "stack"}, "shape": {**SMALL, "layers": 4}, "tokens": 3 * 512}]
    config = tiny_config("evaluated", model=None, stages=stages)
    config = dataclasses.replace(config, eval=EvalConfig(tasks=TASKS, limit=3, grown=True,
                                                         max_new_tokens=8))
    return config, driver.train(config, show_progress=False)


def test_each_stage_export_and_the_grown_init_are_scored(evaluated):
    config, summary = evaluated
    run_dir = Path(config.run_dir)
    records = read_records(str(run_dir))
    assert sorted((r.spec, r.point) for r in records) == [
        ("stage-0", "export"), ("stage-1", "export"), ("stage-1", "grown")]
    for record in records:
        assert set(record.scores) == set(TASKS) and record.key["limit"] == 3
        assert all(s["items"] == 3 and 0.0 <= s["exact_match"] <= 1.0
                   for s in record.scores.values())
    assert (run_dir / "stage-1" / "init-export" / "config.json").is_file()
    on_disk = json.loads((run_dir / "summary.json").read_text())
    for index in range(2):
        assert on_disk["stages"][index]["eval"] == next(
            r.scores for r in records if r.spec == f"stage-{index}" and r.point == "export")
    assert "eval_grown" in on_disk["stages"][1] and "eval_grown" not in on_disk["stages"][0]
    assert summary["stages"][1]["eval"] == on_disk["stages"][1]["eval"]
    assert (run_dir / "report.png").stat().st_size > 10_000  # three panels


def test_a_rerun_skips_recorded_evaluations(evaluated):
    config, _ = evaluated
    run_dir = str(Path(config.run_dir).resolve())
    specs = plan_specs(config, driver.check(config).directory)
    evaluations = Evaluations(specs, run_dir, config.s3)
    for spec in specs:
        evaluations.after_export(spec)
    assert evaluations.running == [] and evaluations.waiting == []
    other = dataclasses.replace(config.eval, seed=5)  # another seed is another evaluation
    assert (specs[0].name, "export", _key_text(config.eval.key())) in evaluations.recorded
    assert (specs[0].name, "export", _key_text(other.key())) not in evaluations.recorded
