"""Config parsing, overrides and refusal messages (no Ray)."""

from pathlib import Path

import pytest
import yaml

from raygrow.config import RunConfig, apply_override, from_dict, load_config
from raygrow.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
BASE = {"model": {"layers": 2, "hidden": 64, "heads": 4}}


def refuse(raw: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        from_dict(RunConfig, raw)
    return str(caught.value)


def test_defaults_and_derived_values():
    config = from_dict(RunConfig, BASE)
    assert config.model.kv_heads == 4
    assert config.model.ffn == 176  # 8/3·64 = 170.7, rounded up to a multiple of 8
    assert config.batch_rows == config.train.batch_tokens // config.data.seq_len
    assert config.grad_accum(1) == config.batch_rows // config.train.micro_batch
    assert (config.plan_stages[0].shape == config.model
            and config.plan_stages[0].tokens == config.train.tokens)


@pytest.mark.parametrize("raw, message", [
    ({**BASE, "train": {"zero_stage": 5}}, "train.zero_stage: must be 0..3, got 5"),
    ({**BASE, "trian": {}}, "trian: unknown key"),
    ({**BASE, "train": {"wrkers": 2}}, "train.wrkers: unknown key"),
    ({"model": {"layers": 2, "hidden": 65, "heads": 4}},
     "model.hidden: must be divisible by heads (4), got 65"),
    ({"model": {"layers": 2, "hidden": 64, "heads": 4, "kv_heads": 3}},
     "model.kv_heads: must divide heads"),
    ({**BASE, "data": {"seq_len": 4096}}, "data.seq_len: 4096 is over model.max_positions (2048)"),
    ({**BASE, "train": {"workers": 0}}, "train.workers: must be ≥ 1, got 0"),
    ({**BASE, "train": {"lr": "fast"}}, "train.lr: must be a number, got 'fast'"),
    ({**BASE, "train": {"precision": "fp8"}}, "train.precision: must be one of fp32, bf16"),
    ({**BASE, "train": {"micro_batch": 7}}, "train.micro_batch:"),
    ({**BASE, "train": {"tokens": 10}}, "train.tokens: 10 is less than one batch"),
    ({}, "model: give either model (one stage) or stages"),
    ({**BASE, "data": {"ingest": "dataloader"}}, "data.ingest: must be one of ray_data, direct"),
    ({**BASE, "data": {"ingest_cpus": 0}}, "data.ingest_cpus: must be > 0, got 0"),
    ({**BASE, "data": {"prefetch_steps": 0}}, "data.prefetch_steps: must be ≥ 1, got 0"),
    ({**BASE, "data": {"ingest_timeout_s": -1}}, "data.ingest_timeout_s: must be > 0, got -1"),
])
def test_bad_values_name_the_field(raw, message):
    text = refuse(raw)
    assert text.startswith(message), text
    assert "\n" not in text


def test_numbers_written_as_yaml_strings_are_numbers():
    config = from_dict(RunConfig, {**BASE, "train": {"lr": "3e-3", "tokens": "2_000_000"}})
    assert config.train.lr == pytest.approx(3e-3)
    assert config.train.tokens == 2_000_000


def test_overrides_are_typed_and_nested(tmp_path):
    plan = tmp_path / "plan.yaml"
    plan.write_text(yaml.safe_dump(BASE))
    config = load_config(plan, ["train.workers=2", "train.zero_stage=3",
                                "data.max_documents=9", "name=r1"])
    assert (config.train.workers, config.train.zero_stage, config.data.max_documents,
            config.name) == (2, 3, 9, "r1")
    with pytest.raises(ConfigError, match="train.zero_stage: must be 0..3"):
        load_config(plan, ["train.zero_stage=7"])
    raw = {}
    with pytest.raises(ConfigError, match="override must look like"):
        apply_override(raw, "train.workers")


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


@pytest.mark.parametrize("plan", sorted((REPO / "jobs" / "plans").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_shipped_plan_parses(plan, shipped_plan):
    config = shipped_plan(plan)
    assert all(stage.tokens >= config.train.batch_tokens or (stage.init and stage.tokens == 0)
               for stage in config.plan_stages)


def test_growth_plans_name_the_stage_and_field():
    plan = REPO / "jobs" / "plans" / "grow_tiny.yaml"
    config = load_config(plan, ["stages.1.tokens=1000000"])
    assert config.stages[1].tokens == 1_000_000 and config.stages[1].workers.max == 2
    for override, message in [
        ("stages.1.shape.layers=1", "stages[1].shape.layers: must be ≥ 2 (stage 0's)"),
        ("stages.1.growth.depth_op=grow", "stages[1].growth.depth_op: must be one of stack"),
        ("stages.1.workers.min=0", "stages[1].workers.min: must be ≥ 1, got 0"),
        ("stages.1.tokens=0", "stages[1].tokens: must be ≥ 1, got 0"),
        ("stages.1.growth.depth_op=null", "stages[1].growth.depth_op: layers grow 2 → 8"),
    ]:
        with pytest.raises(ConfigError) as caught:
            load_config(plan, [override])
        assert str(caught.value).startswith(message), str(caught.value)
