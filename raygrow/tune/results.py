"""What a sweep leaves in its directory: trials.csv, trials.md, sweep.png and best_plan.yaml."""

from __future__ import annotations

import csv
import dataclasses
import io
from dataclasses import dataclass

import matplotlib
import yaml

from raygrow import storage
from raygrow.config import RunConfig
from raygrow.tune.budget import Trial

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STATUSES = ("complete", "stopped", "error", "unfinished")  # stopped: by ASHA, before the budget


@dataclass
class TrialRow:
    """One line of the trials table."""

    run: str  # growth run name: <sweep>/runs/<run>
    d: float  # as given (tokens, or a share of the budget)
    g: float
    small_layers: int
    small_tokens: int  # growth timing d in tokens
    final_tokens: int
    budget_flops: int  # what the plan spends in full
    status: str  # one of STATUSES
    flops: float | None  # cumulative FLOPs at the last reported validation
    val_loss: float | None  # validation loss there (for complete trials: at the budget)
    error: str | None = None


def row_for(trial: Trial, status: str, last_result: dict | None, error: str | None) -> TrialRow:
    reported = bool(last_result) and "val_loss" in last_result
    return TrialRow(run=trial.run_name, d=trial.d, g=trial.g,
                    small_layers=trial.plan.stages[0].shape.layers,
                    small_tokens=trial.small_tokens, final_tokens=trial.final_tokens,
                    budget_flops=trial.flops,
                    status=status, flops=last_result["flops"] if reported else None,
                    val_loss=last_result["val_loss"] if reported else None, error=error)


def best_row(rows: list[TrialRow]) -> TrialRow | None:
    complete = [row for row in rows if row.status == "complete" and row.val_loss is not None]
    return min(complete, key=lambda row: row.val_loss) if complete else None


def _cells(row: TrialRow) -> list[str]:
    return [row.run, f"{row.d:g}", f"{row.g:g}", str(row.small_layers), f"{row.small_tokens:,}",
            f"{row.final_tokens:,}", f"{row.budget_flops:.4g}",
            "-" if row.flops is None else f"{row.flops:.4g}",
            "-" if row.val_loss is None else f"{row.val_loss:.4f}",
            row.status + (f": {row.error}" if row.error else "")]


HEADER = ["run", "d", "g", "small layers", "d (tokens)", "final tokens", "plan FLOPs",
          "FLOPs reached",
          "val loss", "status"]


def format_table(rows: list[TrialRow]) -> str:
    """A Markdown table (also readable as plain text), best trial marked with *."""
    best = best_row(rows)
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    for row in rows:
        cells = _cells(row)
        if row is best:
            cells[0] = f"{cells[0]} *"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(rows: list[TrialRow], path: str) -> None:
    fields = [field.name for field in dataclasses.fields(TrialRow)]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows(dataclasses.asdict(row) for row in rows)
    storage.write_bytes(path, text.getvalue().encode())


def read_csv(path: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(storage.read_bytes(path).decode(), newline="")))


def plot_sweep(rows: list[TrialRow], path: str, title: str) -> None:
    """Validation loss against growth timing d (tokens), one line per growth factor g; trials
    stopped by ASHA as crosses at their last validation loss."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for g in sorted({row.g for row in rows}):
        line = sorted((row for row in rows if row.g == g and row.status == "complete"),
                      key=lambda r: r.small_tokens)
        drawn = axis.plot([r.small_tokens for r in line], [r.val_loss for r in line], "o-",
                          label=f"g = {g:g}")
        stopped = [row for row in rows
                   if row.g == g and row.status == "stopped" and row.val_loss is not None]
        if stopped:
            axis.plot([r.small_tokens for r in stopped], [r.val_loss for r in stopped], "x",
                      color=drawn[0].get_color(), label=f"g = {g:g}, stopped by ASHA (last value)")
    axis.set_xscale("log")
    axis.set_xlabel("growth timing d (small-model tokens)")
    axis.set_ylabel("validation loss at the FLOP budget")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=110)
    plt.close(figure)
    storage.write_bytes(path, image.getvalue())


def plan_yaml(plan: RunConfig, header: str = "") -> str:
    """A plan as the YAML text `raygrow train` loads."""
    return header + yaml.safe_dump(plan.to_dict(), sort_keys=False)


def write_best_plan(trial: Trial, row: TrialRow, path: str, sweep_name: str) -> RunConfig:
    """The best trial's growth plan, as a run named <sweep>-best under the base plan's storage."""
    plan = dataclasses.replace(trial.plan, name=f"{sweep_name}-best")
    storage.write_bytes(path, plan_yaml(plan, header=(
        f"# Best plan of sweep {sweep_name}: d = {trial.small_tokens:,} small-model tokens (given "
        f"as {trial.d:g}), g = {trial.g:g};\n# validation loss {row.val_loss:.4f} at "
        f"{row.flops:.4g} training FLOPs.\n# Train it with: raygrow train {path}\n")).encode())
    return plan
