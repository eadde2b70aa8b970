"""FLOPs, device-hours and cost per stage; the from-scratch baseline; Chinchilla; growth timing.

Convention (DESIGN.md, Accounting; PaLM appendix B as in torchtitan): training FLOPs per token =
6·N_non-embedding + 12·L·d·T with T = data.seq_len, computed by `raygrow.model.flops_per_token`.
A stage given as `params` only (paper-scale plans) has no shape, so it counts 6·N·D with no
attention term and its N stands in for the non-embedding count. Tokens are what training will
consume: whole optimizer steps of `train.batch_tokens` (the trainer rounds down the same way).
A stage that freezes parameters (`trainable`) counts its backward pass as the trainer does: no
weight gradients for frozen parameters, no activation gradients below the lowest trained block.

A masked (MSG) growth stage needs no special case: during the mask ramp the large model already
runs its full forward and backward (masked units compute, then get multiplied by m), so the
stage's own shape gives the right FLOPs from its first step.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from raygrow.config import RunConfig, Shape, StageConfig
from raygrow.coordinator.spec import trainable_params
from raygrow.errors import ConfigError
from raygrow.model import flops_per_token, param_counts
from raygrow.plan.hardware import Hardware

CHINCHILLA_TOKENS_PER_PARAM = 20  # Hoffmann et al. 2022: compute-optimal D ≈ 20·N
GROWTH_FACTOR = 4  # G_stack's best factor: target layers / base layers
FLOPS_CONVENTION = ("6·N_non-embedding + 12·L·d·T per token (T = data.seq_len); "
                    "params-only stages: 6·N")
ATTENTION_NOTE = ("* params-only stage(s) {stages}: FLOPs = 6·N·D without the attention term; "
                  "non-embedding params = params")


@dataclass
class StageCost:
    index: int
    model: str  # "L8 d128 h4 ffn344", or "params only"
    growth: str | None  # operators that made this stage's model, e.g. "stack" or "masked+masked"
    params: int  # total, embeddings and LM head included
    non_embedding_params: int  # = params for a params-only stage
    configured_tokens: int  # the plan's `tokens`
    tokens: int  # trained: whole steps of train.batch_tokens
    flops_per_token: int
    flops: int
    gpu_hours: float  # device-hours on the chosen hardware at the given MFU
    cost: float
    attention_term_included: bool  # False for params-only stages (6·N·D)


@dataclass
class Baseline:
    """The final stage's model trained from scratch on the plan's total tokens."""

    params: int
    tokens: int
    flops: int
    gpu_hours: float
    cost: float


@dataclass
class GrowthTiming:
    """The stacking paper's fit (arXiv 2405.15319): how long to train the small model."""

    tokens: int  # d: recommended tokens for the small model before growing
    factor: int  # g: recommended growth factor (target layers / base layers)
    target_params: int  # N: the final model's parameters
    budget_flops: float  # C = 6·N·D, D = the plan's total tokens
    plan_small_tokens: int | None  # the plan's tokens before its final stage (None: one stage)
    plan_factor: float | None  # the plan's final layers / first layers (None: unknown or one stage)


@dataclass
class PlanReport:
    name: str
    hardware: Hardware
    mfu: float
    price_per_hour: float
    seq_len: int
    stages: list[StageCost]
    total_tokens: int
    total_flops: int
    total_gpu_hours: float
    total_cost: float
    baseline: Baseline
    speedup: float  # baseline FLOPs / the plan's FLOPs
    chinchilla_tokens: int  # 20 × the final model's parameters
    chinchilla_ratio: float  # the plan's total tokens / chinchilla_tokens
    growth_timing: GrowthTiming
    notes: list[str] = field(default_factory=list)

    @property
    def attention_term_included(self) -> bool:
        return all(stage.attention_term_included for stage in self.stages)

    def to_json(self) -> dict:
        """One JSON-ready object: the schema `raygrow plan --json` prints."""
        return {
            "name": self.name,
            "hardware": self.hardware.name,
            "peak_flops": self.hardware.peak_flops,
            "peak_source": self.hardware.peak_source,
            "mfu": self.mfu,
            "gpu_hour_price": self.price_per_hour,
            "seq_len": self.seq_len,
            "flops_convention": FLOPS_CONVENTION,
            "attention_term_included": self.attention_term_included,
            "stages": [asdict(stage) for stage in self.stages],
            "total_tokens": self.total_tokens,
            "total_flops": self.total_flops,
            "total_gpu_hours": self.total_gpu_hours,
            "total_cost": self.total_cost,
            "baseline": asdict(self.baseline),
            "speedup": self.speedup,
            "chinchilla_tokens": self.chinchilla_tokens,
            "chinchilla_ratio": self.chinchilla_ratio,
            "growth_timing": asdict(self.growth_timing),
            "notes": list(self.notes),
        }


def vocab_size(config: RunConfig, shape: Shape) -> int:
    """The shape's own `vocab` if set, else the tokenizer's (byte: 256 bytes + EOS + BOS = 258)."""
    if shape.vocab is not None:  # an HF tokenizer directory is read only when needed
        return shape.vocab
    from raygrow.data.tokenizer import load_tokenizer

    return shape.vocab_size(load_tokenizer(config.data.tokenizer).vocab_size)


def chinchilla_tokens(params: int) -> int:
    return CHINCHILLA_TOKENS_PER_PARAM * params


def growth_timing_tokens(target_params: float, budget_flops: float) -> float:
    """d from log10 d = 0.88·log10 N + 163.27/log10 C − 5.74 (N target params, C = 6·N·D)."""
    return 10 ** (0.88 * math.log10(target_params) + 163.27 / math.log10(budget_flops) - 5.74)


def _check_knobs(mfu: float, price_per_hour: float) -> None:
    if not 0 < mfu <= 1:
        raise ConfigError("--mfu", f"must be in (0, 1] (a fraction of peak, e.g. 0.4), got {mfu}")
    if not price_per_hour >= 0:
        raise ConfigError("--gpu-hour-price", f"must be ≥ 0, got {price_per_hour}")


def _hours(flops: float, hardware: Hardware, mfu: float) -> float:
    return flops / (hardware.peak_flops * mfu) / 3600


def _model_counts(config: RunConfig, index: int, stage: StageConfig) -> tuple[int, int, int, bool]:
    """(params, non-embedding params, FLOPs per token, attention term included) of a stage's model;
    the FLOPs count the backward pass of frozen parameters as the trainer does (`train.trainable`,
    the split of `raygrow.model`)."""
    if stage.shape is None:
        params = round(stage.params)
        return params, params, 6 * params, False
    vocab = vocab_size(config, stage.shape)
    counts = param_counts(stage.shape, vocab)
    return (counts["params"], counts["non_embedding_params"],
            flops_per_token(stage.shape, vocab, config.data.seq_len,
                            trainable_params(config, index)),
            True)


def _describe(stage: StageConfig) -> tuple[str, str | None]:
    if stage.shape is None:
        model = "params only"
    else:
        shape = stage.shape
        kv = "" if shape.kv_heads == shape.heads else f" kv{shape.kv_heads}"
        model = f"L{shape.layers} d{shape.hidden} h{shape.heads}{kv} ffn{shape.ffn}"
    growth = None
    if stage.growth is not None:
        growth = "+".join(op for op in (stage.growth.depth_op, stage.growth.width_op)
                          if op) or "none"
    return model, growth


def _stage_cost(config: RunConfig, index: int, stage: StageConfig, hardware: Hardware, mfu: float,
                price_per_hour: float) -> StageCost:
    params, non_embedding, per_token, attention = _model_counts(config, index, stage)
    tokens = stage.tokens // config.train.batch_tokens * config.train.batch_tokens
    flops = per_token * tokens
    hours = _hours(flops, hardware, mfu)
    model, growth = _describe(stage)
    return StageCost(index=index, model=model, growth=growth, params=params,
                     non_embedding_params=non_embedding, configured_tokens=stage.tokens,
                     tokens=tokens,
                     flops_per_token=per_token, flops=flops, gpu_hours=hours,
                     cost=hours * price_per_hour, attention_term_included=attention)


def _growth_timing(config: RunConfig, stages: list[StageCost], total_tokens: int) -> GrowthTiming:
    target = stages[-1].params
    budget = 6 * target * total_tokens
    first, last = config.plan_stages[0].shape, config.plan_stages[-1].shape
    grown = len(stages) > 1
    return GrowthTiming(
        tokens=round(growth_timing_tokens(target, budget)), factor=GROWTH_FACTOR,
        target_params=target,
        budget_flops=float(budget),
        plan_small_tokens=sum(stage.tokens for stage in stages[:-1]) if grown else None,
        plan_factor=last.layers / first.layers if grown and first and last else None)


def _notes(config: RunConfig, report: PlanReport) -> list[str]:
    notes = []
    batch = config.train.batch_tokens
    rounded = [str(stage.index) for stage in report.stages
               if stage.tokens != stage.configured_tokens]
    if rounded:
        notes.append(f"stage(s) {', '.join(rounded)}: tokens rounded down to whole steps of "
                     f"{batch:,} (train.batch_tokens), as training will; configured_tokens keeps "
                     "the plan's figure")
    params_only = [str(stage.index) for stage in report.stages if not stage.attention_term_included]
    if params_only:
        notes.append(ATTENTION_NOTE.format(stages=", ".join(params_only)))
    masked = [str(index) for index, stage in enumerate(config.plan_stages)
              if stage.growth and "masked" in (stage.growth.depth_op, stage.growth.width_op)]
    if masked:
        notes.append(f"stage(s) {', '.join(masked)} grow with masked ops: the mask ramp is counted "
                     "at the full grown model's FLOPs")
    if len(report.stages) == 1:
        notes.append("one stage: nothing grows, so the baseline is the plan itself")
    if report.growth_timing.tokens >= report.total_tokens:
        notes.append("the growth-timing fit asks for at least the whole budget on the small model: "
                     "this is far outside the billion-parameter runs it was fitted on")
    return notes


def plan_report(config: RunConfig, hardware: Hardware, mfu: float = 0.4,
                price_per_hour: float = 2.0) -> PlanReport:
    """Account a run config: every stage, totals, the from-scratch baseline and the sizing rules.

    Raises ConfigError for an MFU outside (0, 1] or a negative price, DataError when the
    tokenizer needed for the vocabulary cannot be loaded.
    """
    _check_knobs(mfu, price_per_hour)
    stages = [_stage_cost(config, index, stage, hardware, mfu, price_per_hour)
              for index, stage in enumerate(config.plan_stages)]
    total_tokens = sum(stage.tokens for stage in stages)
    total_flops = sum(stage.flops for stage in stages)
    final = stages[-1]
    baseline_flops = final.flops_per_token * total_tokens
    baseline_hours = _hours(baseline_flops, hardware, mfu)
    report = PlanReport(
        name=config.name, hardware=hardware, mfu=mfu, price_per_hour=price_per_hour,
        seq_len=config.data.seq_len, stages=stages, total_tokens=total_tokens,
        total_flops=total_flops,
        total_gpu_hours=sum(stage.gpu_hours for stage in stages),
        total_cost=sum(stage.cost for stage in stages),
        baseline=Baseline(params=final.params, tokens=total_tokens, flops=baseline_flops,
                          gpu_hours=baseline_hours, cost=baseline_hours * price_per_hour),
        speedup=baseline_flops / total_flops,
        chinchilla_tokens=chinchilla_tokens(final.params),
        chinchilla_ratio=total_tokens / chinchilla_tokens(final.params),
        growth_timing=_growth_timing(config, stages, total_tokens))
    report.notes = _notes(config, report)
    return report
