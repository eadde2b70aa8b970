"""`raygrow tune SWEEP.yaml`: run (or continue) a sweep of growth timing and growth factor.

Prints the table of trials and where the best plan, the table files and the plot are. Rerunning
the same sweep file continues it. See raygrow/tune/config.py for the file's fields.
"""

from __future__ import annotations

import argparse
import sys

from raygrow.command import one_line_errors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep", metavar="SWEEP.yaml",
                        help="sweep file: base plan, flop_budget, space of d and g")
    parser.add_argument("-q", "--quiet", action="store_true", help="no Tune progress tables")


@one_line_errors
def run(args: argparse.Namespace) -> int:
    from raygrow.tune.config import load_sweep
    from raygrow.tune.runner import run_sweep

    config, relative_to = load_sweep(args.sweep)
    result = run_sweep(config, relative_to, show_progress=not args.quiet)
    print(result.table)
    print(f"sweep directory: {result.sweep_dir} (trials.csv, trials.md, sweep.png)")
    if result.best_plan is not None:
        print(f"best plan: {result.best_plan}  (d = {result.best.small_tokens:,} tokens, g = "
              f"{result.best.g:g}, val loss {result.best.val_loss:.4f}); train it with: raygrow "
              f"train {result.best_plan}")
    if result.interrupted:
        print(f"raygrow: sweep {config.name} interrupted; rerun the same command to continue",
              file=sys.stderr)
        return 130
    return 0
