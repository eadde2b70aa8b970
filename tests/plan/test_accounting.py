"""Planner figures against hand-computed values (no Ray, no model built)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raygrow.config import DataConfig, GrowthConfig, RunConfig, Shape, StageConfig, TrainConfig
from raygrow.errors import ConfigError
from raygrow.hardware import measure_cpu_peak
from raygrow.plan import (Hardware, format_report, growth_timing_tokens, plan_report,
                          resolve_hardware, vocab_size)

PLANS = sorted((Path(__file__).resolve().parents[2] / "jobs" / "plans").glob("*.yaml"))
H100 = Hardware("h100", 989e12, "table")


def two_stage_plan(**stage1) -> RunConfig:
    """1 layer → 2 layers (stack), d=8, 2 heads, ffn 16, vocab 10 untied, T = 4, 16-token steps."""
    small = Shape(layers=1, hidden=8, heads=2, ffn=16, vocab=10)
    large = Shape(layers=2, hidden=8, heads=2, ffn=16, vocab=10)
    return RunConfig(
        name="hand", data=DataConfig(seq_len=4), train=TrainConfig(batch_tokens=16, micro_batch=4),
        stages=[StageConfig(tokens=64, shape=small),
                StageConfig(tokens=128, shape=large,
                            growth=GrowthConfig(depth_op="stack"), **stage1)])


def test_two_stage_plan_matches_hand_count():
    report = plan_report(two_stage_plan(), H100, mfu=0.5, price_per_hour=3.0)
    small, large = report.stages
    # One block: q,k,v,o 4·8·8 = 256; SwiGLU 3·8·16 = 384; two RMSNorms 2·8 = 16 → 656.
    # Non-embedding = layers·656 + 8 (final norm); embedding and untied head 10·8 each.
    assert (small.non_embedding_params, small.params) == (656 + 8, 664 + 80 + 80)
    assert (large.non_embedding_params, large.params) == (2 * 656 + 8, 1320 + 80 + 80)
    # FLOPs per token: 6·N_non-emb + 12·L·d·T with T = 4.
    assert small.flops_per_token == 6 * 664 + 12 * 1 * 8 * 4 == 4368
    assert large.flops_per_token == 6 * 1320 + 12 * 2 * 8 * 4 == 8688
    assert (small.flops, large.flops) == (4368 * 64, 8688 * 128) == (279_552, 1_112_064)
    assert report.total_tokens == 192
    assert report.total_flops == 1_391_616
    # Device-hours: FLOPs / (peak · MFU) / 3600 s; cost at $3 per hour.
    assert small.gpu_hours == pytest.approx(279_552 / (989e12 * 0.5) / 3600)
    assert large.cost == pytest.approx(1_112_064 / (989e12 * 0.5) / 3600 * 3.0)
    assert report.total_cost == pytest.approx(small.cost + large.cost)
    # Baseline: the 2-layer model from scratch on all 192 tokens.
    assert (report.baseline.params, report.baseline.tokens) == (1480, 192)
    assert report.baseline.flops == 8688 * 192 == 1_668_096
    assert report.speedup == pytest.approx(1_668_096 / 1_391_616)  # ≈ 1.1987
    assert report.chinchilla_tokens == 20 * 1480
    assert report.chinchilla_ratio == pytest.approx(192 / 29_600)
    assert report.growth_timing.factor == 4
    assert report.growth_timing.target_params == 1480
    assert report.growth_timing.budget_flops == 6 * 1480 * 192
    assert (report.growth_timing.plan_small_tokens, report.growth_timing.plan_factor) == (64, 2.0)
    assert report.attention_term_included


def test_gqa_tied_shape():
    shape = Shape(layers=2, hidden=16, heads=4, kv_heads=2, ffn=32, vocab=20, tie_embeddings=True)
    config = RunConfig(model=shape, data=DataConfig(seq_len=4),
                       train=TrainConfig(tokens=64, batch_tokens=16, micro_batch=4))
    (stage,) = plan_report(config, H100).stages
    # head_dim 4, kv dim 2·4 = 8: q 16·16 + k 16·8 + v 16·8 + o 16·16 = 768; SwiGLU 3·16·32 = 1536;
    # norms 32 → 2336 per block; 2 blocks + final norm 16 = 4688; one tied 20·16 embedding.
    assert (stage.non_embedding_params, stage.params) == (4688, 4688 + 320)
    assert stage.flops_per_token == 6 * 4688 + 12 * 2 * 16 * 4 == 29_664


def test_tokens_are_whole_steps():
    report = plan_report(two_stage_plan(), H100)
    config = two_stage_plan()
    config.stages[1].tokens = 130  # 8 steps of 16 tokens and 2 left over
    rounded = plan_report(config, H100)
    assert (rounded.stages[1].configured_tokens, rounded.stages[1].tokens) == (130, 128)
    assert rounded.total_flops == report.total_flops
    assert any("rounded down" in note for note in rounded.notes)


def test_params_only_plan_counts_6nd():
    config = RunConfig(
        name="paper", data=DataConfig(seq_len=2048),
        train=TrainConfig(batch_tokens=2048, micro_batch=1),
        stages=[StageConfig(tokens=2048 * 1000, params=1e9),
                StageConfig(tokens=2048 * 500, params=4e9, growth=GrowthConfig(depth_op="masked"))])
    report = plan_report(config, H100, mfu=0.4, price_per_hour=2.0)
    first, second = report.stages
    assert (first.params, first.non_embedding_params) == (10**9, 10**9)
    assert first.flops == 6 * 10**9 * 2_048_000 == 12_288_000_000_000_000
    assert second.flops == 6 * 4 * 10**9 * 1_024_000 == 24_576_000_000_000_000
    assert report.baseline.flops == 6 * 4 * 10**9 * 3_072_000
    assert report.speedup == pytest.approx(2.0)
    assert not first.attention_term_included and not report.attention_term_included
    assert report.growth_timing.plan_factor is None  # no layer counts to compare
    assert any("params-only" in note and "6·N·D" in note for note in report.notes)
    assert any("masked" in note for note in report.notes)
    assert "params-only" in format_report(report)


def test_growth_timing_rule_known_value():
    # N = 7e9, D = 300e9 → C = 6·7e9·3e11 = 1.26e22.
    # log10 N = 9.845098 → 0.88·log10 N = 8.663686; log10 C = 22.100371 → 163.27 / 22.100371 =
    # 7.387659;
    # 8.663686 + 7.387659 − 5.74 = 10.311345 → d = 10^10.311345 ≈ 2.0481e10 tokens.
    assert growth_timing_tokens(7e9, 1.26e22) == pytest.approx(2.0481e10, rel=1e-4)


def test_vocab_from_shape_byte_and_hf_directory(tmp_path):
    from raygrow.data.tokenizer import ByteTokenizer

    assert vocab_size(RunConfig(model=Shape(1, 8, 2, vocab=33)), Shape(1, 8, 2, vocab=33)) == 33
    shape = Shape(layers=1, hidden=8, heads=2)
    assert vocab_size(RunConfig(model=shape), shape) == 258  # 256 bytes + EOS + BOS
    ByteTokenizer().save_pretrained(str(tmp_path))
    config = RunConfig(model=shape, data=DataConfig(tokenizer=str(tmp_path)))
    assert vocab_size(config, shape) == 258


@pytest.mark.parametrize("mfu, price, field", [(0.0, 2.0, "--mfu"), (1.5, 2.0, "--mfu"),
                                               (0.4, -1.0, "--gpu-hour-price")])
def test_knobs_refused(mfu, price, field):
    with pytest.raises(ConfigError) as error:
        plan_report(two_stage_plan(), H100, mfu=mfu, price_per_hour=price)
    assert error.value.field == field


def test_hardware_table_and_cpu():
    assert resolve_hardware("h100").peak_flops == resolve_hardware("h200").peak_flops == 989e12
    assert resolve_hardware("a100").peak_flops == 312e12
    assert resolve_hardware("cpu", cpu_peak=5e10) == Hardware("cpu", 5e10, "--cpu-peak")
    assert measure_cpu_peak(size=64, trials=1, repeats=1) > 0
    for name, peak in (("tpu", None), ("h100", 1e11), ("cpu", 0.0)):
        with pytest.raises(ConfigError):
            resolve_hardware(name, peak)


def test_json_is_serialisable():
    json.dumps(plan_report(two_stage_plan(), H100).to_json())


@pytest.mark.parametrize("path", PLANS, ids=[path.name for path in PLANS])
def test_shipped_plans_are_accepted(path, shipped_plan):
    report = plan_report(shipped_plan(path), Hardware("cpu", 1e11, "--cpu-peak"))
    assert report.total_flops > 0 and report.speedup >= 1.0
    assert format_report(report)


def test_shipped_plans_include_the_examples():
    assert {"grow_tiny.yaml", "paper_101b.yaml"} <= {path.name for path in PLANS}


def test_a_stage_that_freezes_blocks_counts_the_backward_the_trainer_runs(shipped_plan):
    from raygrow.coordinator.spec import trainable_params
    from raygrow.model import flops_per_token

    config = shipped_plan(PLANS[0].parent / "llama_pro_tiny.yaml")
    grown = plan_report(config, H100).stages[1]
    shape, seq_len = config.plan_stages[1].shape, config.data.seq_len
    vocab = vocab_size(config, shape)
    frozen = flops_per_token(shape, vocab, seq_len, trainable_params(config, 1))
    assert grown.flops_per_token == frozen < flops_per_token(shape, vocab, seq_len)
