"""summary.json, the run's merged metrics.jsonl and report.png, from the stages' metric records."""

from __future__ import annotations

import json

from raygrow.config import RunConfig
from raygrow import storage
from raygrow.model import param_counts
from raygrow.train.stage import MetricsLog


def stage_records(run_dir: str, index: int) -> list[dict]:
    return MetricsLog(storage.join(run_dir, f"stage-{index}")).records()


def _steps(records: list[dict]) -> list[dict]:
    return [r for r in records if "step" in r and "event" not in r]


def stage_summary(config: RunConfig, index: int, records: list[dict], start: dict, vocab: int) -> dict:
    """One `stages` entry; `start` holds the cumulative tokens and FLOPs before this stage."""
    stage = config.plan_stages[index]
    steps = _steps(records)
    last = steps[-1] if steps else {"step": 0, **start}
    logged = [r for r in steps if "loss" in r]
    validated = [r for r in steps if "val_loss" in r]
    speeds = [r["tokens_per_s"] for r in logged]
    low, high = config.worker_range(stage)
    return {
        "shape": stage.shape.__dict__, **param_counts(stage.shape, vocab),
        "workers": high if low == high else {"min": low, "max": high},
        "zero_stage": config.train.zero_stage if stage.zero_stage is None else stage.zero_stage,
        "steps": last["step"], "tokens": last["tokens"] - start["tokens"], "flops": last["flops"] - start["flops"],
        "final_train_loss": logged[-1]["loss"] if logged else None,
        "final_val_loss": validated[-1]["val_loss"] if validated else None,
        "tokens_per_s": sum(speeds) / len(speeds) if speeds else None,
    }


def transition_summary(growth: dict, before: list[dict], after: list[dict]) -> dict:
    """Validation loss just before and just after a growth, and the time between the last step
    of the old stage and the first step of the new one."""
    validated = [r for r in _steps(before) if "val_loss" in r]
    after_growth = [r for r in after if r.get("event") == "growth"]
    first_step = next(iter(_steps(after)), None)
    last_step = _steps(before)[-1] if _steps(before) else None
    return {
        "from_stage": growth["from_stage"], "to_stage": growth["to_stage"],
        "depth_op": growth["depth_op"], "width_op": growth["width_op"],
        "optimizer": growth["optimizer"], "lr": growth["lr"],
        "function_preserving": growth["function_preserving"],
        "val_loss_before": validated[-1]["val_loss"] if validated else None,
        "val_loss_after": after_growth[0]["val_loss"] if after_growth else None,
        "seconds": first_step["time"] - last_step["time"] if first_step and last_step else None,
    }


def merged_records(run_dir: str, stages: int) -> list[dict]:
    return [{**record, "stage": index} for index in range(stages) for record in stage_records(run_dir, index)]


def write_json(path: str, data: dict) -> None:
    storage.write_bytes(path, json.dumps(data, indent=1).encode())
