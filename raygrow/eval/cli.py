"""`raygrow eval`: score an export, or every stage's export of a run, on the IQ suite and lm-eval
tasks; or write the IQ suite out as lm-eval tasks.

    raygrow eval runs/tiny/export                         # table, and <export>/eval.json
    raygrow eval runs/tiny --stages all                   # inheritance table, eval_stages.json/.png
    raygrow eval runs/tiny/export --tasks counting,lm-eval:arc_easy --shots 2 --limit 20 --json
    raygrow eval --write-lm-eval-tasks DIR                # the IQ suite as lm-eval tasks

Everything is checked (tasks, shots, model directories, lm-eval data) before anything is loaded
or written.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from raygrow.command import one_line_errors
from raygrow.config.binding import from_dict
from raygrow.errors import ConfigError, DataError
from raygrow.eval.config import EvalConfig

STAGE_DIR = re.compile(r"stage-(\d+)$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", nargs="?",
                        help="an export directory, or a run directory with --stages")
    parser.add_argument("--tasks",
                        help="comma-separated IQ tasks and/or lm-eval:NAME (default: the IQ suite)")
    parser.add_argument("--shots", type=int,
                        help="few-shot pairs per item (default: each task's own)")
    parser.add_argument("--limit", type=int, help="items per task (default 50)")
    parser.add_argument("--seed", type=int, help="seed of the IQ items (default 1234)")
    parser.add_argument("--stages", help="PATH is a run directory: evaluate these stages' exports "
                        "('all' or e.g. 0,1)")
    parser.add_argument("--json", action="store_true",
                        help="print the results as JSON, not a table")
    parser.add_argument("--out",
                        help="where to write the JSON results (default: eval.json in the export, "
                        "eval_stages.json and eval_stages.png in a run directory)")
    parser.add_argument("--lm-eval-include", metavar="DIR",
                        help="local lm-eval task YAMLs for lm-eval:NAME tasks (lm-eval's "
                             "--include_path)")
    parser.add_argument("--write-lm-eval-tasks", metavar="DIR",
                        help="write the IQ suite as lm-eval tasks (data + YAMLs) into DIR and stop")


def eval_config(args: argparse.Namespace) -> EvalConfig:
    raw = {key: value
           for key, value in (("shots", args.shots), ("limit", args.limit), ("seed", args.seed),
                                         ("lm_eval_include", args.lm_eval_include))
           if value is not None}
    if args.tasks:
        raw["tasks"] = [name.strip() for name in args.tasks.split(",") if name.strip()]
    try:
        return from_dict(EvalConfig, raw)
    except ConfigError as error:  # name the option: `--tasks: unknown task 'x' ...`
        option = "--" + error.field.split("[")[0].split(".")[0].replace("_", "-")
        raise ConfigError(option, error.message) from None


@one_line_errors
def run(args: argparse.Namespace) -> int:
    config = eval_config(args)
    if args.write_lm_eval_tasks:
        return write_tasks(args.write_lm_eval_tasks, config)
    if not args.path:
        raise DataError("raygrow eval: give an export directory, a run directory with --stages, or "
                        "--write-lm-eval-tasks DIR")
    from raygrow.eval.evaluate import check
    from raygrow.eval.score import check_model_dir

    targets = stage_exports(args.path, args.stages) if args.stages else None
    for path in (targets or {None: args.path}).values():
        check_model_dir(path)
    check(config)
    if targets is None:
        return eval_one(args, config)
    return eval_stages(args, config, targets)


def write_tasks(directory: str, config: EvalConfig) -> int:
    from raygrow.eval.harness import IQ_GROUP, write_iq_tasks

    if config.lm_eval_tasks:
        raise ConfigError("raygrow eval --tasks",
                          "--write-lm-eval-tasks writes IQ tasks only; drop "
                          + ", ".join(f"lm-eval:{name}" for name in config.lm_eval_tasks))
    names = write_iq_tasks(directory, config)
    print(f"wrote {len(names)} lm-eval tasks and the group {IQ_GROUP} to {directory}; run them "
          f"with: lm-eval run --model hf --model_args pretrained=EXPORT --include_path {directory} "
          f"--tasks {IQ_GROUP}")
    return 0


def stage_exports(run_dir: str, stages: str) -> dict[int, str]:
    """{stage index: its export directory} of a run directory, for `--stages all` or `0,1`."""
    root = Path(run_dir)
    if not root.is_dir():
        raise DataError(f"{run_dir}: no such run directory")
    found = {int(STAGE_DIR.match(entry.name).group(1)): str(entry / "export")
             for entry in root.iterdir() if entry.is_dir() and STAGE_DIR.match(entry.name)}
    if not found:
        raise DataError(f"{run_dir} is not a run directory with stages (no stage-K/ in it); give a "
                        "run of a growth plan, or an export without --stages")
    if stages.strip() == "all":
        return dict(sorted(found.items()))
    try:
        wanted = [int(part) for part in stages.split(",") if part.strip()]
    except ValueError:
        raise ConfigError("raygrow eval --stages",
                          f"must be 'all' or stage indices like 0,1, got {stages!r}"
                          ) from None
    missing = [index for index in wanted if index not in found]
    if missing:
        raise DataError(f"{run_dir}/stage-{missing[0]}: no such stage (the run has stages "
                        f"{', '.join(map(str, sorted(found)))})")
    return {index: found[index] for index in wanted}


def eval_one(args: argparse.Namespace, config: EvalConfig) -> int:
    from raygrow.eval.evaluate import evaluate_export

    result = evaluate_export(args.path, config)
    out = args.out or str(Path(args.path) / "eval.json")
    Path(out).write_text(json.dumps(result, indent=1))
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(table({"": result["scores"]}))
        print(f"results: {out}")
    return 0


def eval_stages(args: argparse.Namespace, config: EvalConfig, targets: dict[int, str]) -> int:
    from raygrow.eval.evaluate import evaluate_export

    flops = stage_flops(args.path)
    results = []
    for index, path in targets.items():
        result = evaluate_export(path, config)
        results.append({"stage": index, "flops": flops.get(index), **result})
    out = Path(args.out or Path(args.path) / "eval_stages.json")
    out.write_text(json.dumps(results, indent=1))
    plot = out.with_suffix(".png")
    plot_stages(results, plot)
    if args.json:
        print(json.dumps(results, indent=1))
    else:
        print(table({f"stage {r['stage']}": r["scores"] for r in results}))
        print(f"results: {out}, plot: {plot}")
    return 0


def stage_flops(run_dir: str) -> dict[int, float]:
    """Cumulative training FLOPs at the end of each stage, from the run's summary.json (empty
    when it has none)."""
    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        return {}
    total, flops = 0.0, {}
    for index, stage in enumerate(json.loads(path.read_text()).get("stages", [])):
        total += stage.get("flops") or 0.0
        flops[index] = total
    return flops


def table(columns: dict[str, dict[str, dict]]) -> str:
    """Tasks as rows; chance, one exact-match (or headline) column per result set, then one gold
    log-likelihood-per-byte column per result set (what moves first in a small model)."""
    from raygrow.eval.results import headline

    names = list(next(iter(columns.values())))
    width = max(len(name) for name in names) + 2
    titles = [f"EM {title}" for title in columns] + [f"ll/B {title}" for title in columns]
    header = f"{'task':<{width}}{'chance':>8}" + "".join(f"{title:>13}" for title in titles)
    lines = [header, "-" * len(header)]
    for name in names:
        sets = [scores[name] for scores in columns.values()]
        chance = sets[-1].get("chance")
        cells = [headline(scores) for scores in sets] + [scores.get("loglik_per_byte")
                                                         for scores in sets]
        lines.append(f"{name:<{width}}{_cell(chance, 8)}"
                     + "".join(_cell(cell, 13) for cell in cells))
    return "\n".join(lines)


def _cell(value, width: int = 10) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.3f}"


def plot_stages(results: list[dict], path: Path) -> None:
    """The inheritance plot: each task's score at each stage (against cumulative FLOPs when the
    run's summary has them, else against the stage index)."""
    import matplotlib.pyplot as plt

    from raygrow.report import eval_panel

    by_flops = all(r["flops"] for r in results)
    points = [{"x": r["flops"] if by_flops else r["stage"], "point": "export",
               "scores": r["scores"]}
              for r in results]
    figure, axis = plt.subplots(figsize=(7, 4))
    eval_panel(axis, points, growth_points=[p["x"] for p in points[:-1]],
               x_label="training FLOPs" if by_flops else "stage")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
