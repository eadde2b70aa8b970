"""Planning before spending: FLOPs, tokens, device-hours and cost of a growth plan.

    hardware = resolve_hardware("h100")                 # peak FLOP/s of one device
    report = plan_report(load_config("plan.yaml"), hardware, mfu=0.4, price_per_hour=2.0)
    print(format_report(report))                        # or json.dumps(report.to_json())

Pure arithmetic on the config: nothing here starts Ray, reads data or builds a model.
"""

from raygrow.plan.accounting import (ATTENTION_NOTE, CHINCHILLA_TOKENS_PER_PARAM,
                                     GROWTH_FACTOR, Baseline,
                                     GrowthTiming, PlanReport, StageCost, chinchilla_tokens,
                                     growth_timing_tokens, plan_report, vocab_size)
from raygrow.plan.format import format_report
from raygrow.plan.hardware import Hardware, resolve_hardware

__all__ = [
    "ATTENTION_NOTE", "Baseline", "CHINCHILLA_TOKENS_PER_PARAM", "GROWTH_FACTOR",
    "GrowthTiming", "Hardware",
    "PlanReport", "StageCost", "chinchilla_tokens", "format_report", "growth_timing_tokens",
    "plan_report", "resolve_hardware", "vocab_size",
]
