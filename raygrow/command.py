"""What every `raygrow` subcommand shares: the run-config arguments, loading them, and the one
handler that turns a RaygrowError into one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable

from raygrow.errors import RaygrowError

USAGE_ERROR = 2  # exit status of a refused input (as argparse's own)


def config_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", help="run config / plan YAML")
    parser.add_argument("--name",
                        help="run name (a directory under --storage); rerun a name to resume")
    parser.add_argument("--storage",
                        help="where runs and packed datasets live (default: the plan's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.workers=2 (repeatable)")


def load_run_config(args: argparse.Namespace):
    """The RunConfig named by `config_arguments`' arguments (overrides, name and storage
    applied)."""
    from raygrow.config import load_config

    overrides = list(args.overrides)
    if args.name:
        overrides.append(f"name={args.name}")
    if args.storage:
        overrides.append(f"storage={args.storage}")
    return load_config(args.plan, overrides)


def one_line_errors(
        handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A subcommand that reports a RaygrowError as `raygrow: error: ...` and returns 2."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except RaygrowError as error:
            print(f"raygrow: error: {error}", file=sys.stderr)
            return USAGE_ERROR

    return run
