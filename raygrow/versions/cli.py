"""`raygrow versions PLAN [--name N] [--storage DIR] [--set KEY=VALUE] [--main-only] [-q]`

Trains every version of a versions plan (a run config with a `versions:` section) in its mode and
prints, per version, the release's loss on the common validation set and the cost so far.
"""

from __future__ import annotations

import argparse

from raygrow.command import config_arguments, load_run_config, one_line_errors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    config_arguments(parser)
    parser.add_argument("--main-only", action="store_true",
                        help="path_switching: train only the main path (no branches, no releases)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


@one_line_errors
def run(args: argparse.Namespace) -> int:
    from raygrow.errors import ConfigError
    from raygrow.versions.runner import run_versions

    config = load_run_config(args)
    if config.versions is None:
        raise ConfigError("versions",
                          f"{args.plan} has no versions section; train it with `raygrow train`")
    summary = run_versions(config, show_progress=not args.quiet, branches=not args.main_only)
    print(format_table(summary))
    print(f"run directory: {config.run_dir}" + ("" if summary["complete"] else " (stopped early)"))
    return 0


def format_table(summary: dict) -> str:
    lines = [f"mode {summary['mode']} (decay fraction {summary['decay_fraction']:g})",
             f"{'version':<8} {'steps':>6} {'tokens':>11} {'FLOPs':>10} {'cum. FLOPs':>10} "
             f"{'release loss':>12}"]
    for version in summary["versions"]:
        cost, loss = version["cost"], version["release_val_loss"]
        lines.append(f"{version['name']:<8} {cost['steps']:>6} {cost['tokens']:>11,} "
                     f"{cost['flops']:>10.3e} {version['cumulative']['flops']:>10.3e} "
                     f"{'—' if loss is None else f'{loss:.4f}':>12}")
    return "\n".join(lines)
