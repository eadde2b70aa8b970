"""The human-readable `raygrow plan` table."""

from __future__ import annotations

from raygrow.plan.accounting import PlanReport

_SUFFIXES = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K"))


def count(value: float) -> str:
    """1_048_576 → '1.05M'; 16e9 → '16B'; 245.4e9 → '245B' (about three significant digits)."""
    for scale, suffix in _SUFFIXES:
        if abs(value) >= scale:
            return (f"{value / scale:.3g}{suffix}" if value / scale < 100
                    else f"{value / scale:.0f}{suffix}")
    return f"{value:.3g}"


def hours(value: float) -> str:
    return f"{value:,.0f}" if value >= 1000 else f"{value:.3g}"


def money(value: float) -> str:
    if value >= 100:
        return f"${value:,.0f}"
    return f"${value:.2f}" if value >= 0.01 or value == 0 else "<$0.01"


def flops(value: float) -> str:
    """5.81e+12 → '5.81e12'; below 1000 plain."""
    if value < 1000:
        return f"{value:.3g}"
    mantissa, exponent = f"{value:.2e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _peak(report: PlanReport) -> str:
    peak = report.hardware.peak_flops
    text = f"{peak / 1e12:.0f} TFLOP/s" if peak >= 1e12 else f"{peak / 1e9:.1f} GFLOP/s"
    return f"{text}, {report.hardware.peak_source}"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) if column < 2 else cell.rjust(width)
                      for column, (cell, width) in enumerate(zip(row, widths))).rstrip()
            for row in rows]


def _rows(report: PlanReport) -> list[list[str]]:
    unit = "GPU-h" if report.hardware.name != "cpu" else "CPU-h"
    rows = [["stage", "model", "params", "non-emb", "tokens", "FLOPs", unit, "cost"]]
    for stage in report.stages:
        label = f"{stage.model} (+{stage.growth})" if stage.growth else stage.model
        flag = "" if stage.attention_term_included else "*"  # params-only: see the note
        rows.append([str(stage.index), label, count(stage.params),
                     count(stage.non_embedding_params) + flag,
                     count(stage.tokens), flops(stage.flops), hours(stage.gpu_hours),
                     money(stage.cost)])
    rows.append(["total", "", "", "", count(report.total_tokens), flops(report.total_flops),
                 hours(report.total_gpu_hours), money(report.total_cost)])
    base = report.baseline
    rows.append(["scratch", "final model, same tokens", count(base.params), "", count(base.tokens),
                 flops(base.flops), hours(base.gpu_hours), money(base.cost)])
    return rows


def _summary(report: PlanReport) -> list[str]:
    timing = report.growth_timing
    plan_timing = ""
    if timing.plan_small_tokens is not None:
        factor = f", ×{timing.plan_factor:g} layers" if timing.plan_factor else ""
        plan_timing = (f" (plan: {count(timing.plan_small_tokens)} tokens before the final "
                       f"stage{factor})")
    return [
        f"speedup: {report.speedup:.2f}× (FLOPs from scratch ÷ FLOPs of this plan)",
        f"Chinchilla-optimal tokens for the final model (20 × {count(report.baseline.params)} "
        f"params): {count(report.chinchilla_tokens)}; the plan trains "
        f"{report.chinchilla_ratio:.3g}× that",
        f"growth timing (G_stack fit, arXiv 2405.15319, C = {flops(timing.budget_flops)}): train "
        f"the small model for {count(timing.tokens)} tokens, grow ×{timing.factor}{plan_timing}",
        *(f"note: {note}" for note in report.notes),
    ]


def format_report(report: PlanReport) -> str:
    header = [
        f"plan {report.name}: {len(report.stages)} stage(s) on {report.hardware.name} "
        f"(peak {_peak(report)}), MFU {report.mfu:g}, {money(report.price_per_hour)}/device-hour",
        f"FLOPs per token: 6·N_non-embedding + 12·L·d·T with T = data.seq_len = {report.seq_len} "
        "(params-only stages: 6·N)",
    ]
    return "\n".join([*header, "", *_table(_rows(report)), "", *_summary(report)])
