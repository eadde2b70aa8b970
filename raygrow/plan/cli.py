"""`raygrow plan PLAN [--hardware cpu|a100|h100|h200] [--mfu 0.4] [--gpu-hour-price 2.0] [--json]`

Prints FLOPs, tokens, device-hours and cost per stage of a plan, the same against training the
final model from scratch, Chinchilla sizing and the stacking paper's growth-timing rule.
Nothing runs: the numbers come from the config alone (on `cpu`, a sub-second matmul measures the
peak unless --cpu-peak gives it).
"""

from __future__ import annotations

import argparse
import json
import sys

from raygrow.command import one_line_errors
from raygrow.plan.hardware import HARDWARE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plan", help="run config / plan YAML")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set data.seq_len=256 (repeatable)")
    # No argparse `choices`: an unknown name is refused by the planner with one line, like any bad
    # value.
    parser.add_argument("--hardware", default="h100", metavar="|".join(HARDWARE),
                        help="device to price the plan on (default: h100; dense bf16 peaks)")
    parser.add_argument("--mfu", type=float, default=0.4,
                        help="model FLOPs utilisation, a fraction of peak in (0, 1] (default: 0.4)")
    parser.add_argument("--gpu-hour-price", type=float, default=2.0, metavar="USD",
                        help="price of one device-hour in dollars (default: 2.0)")
    parser.add_argument("--cpu-peak", type=float, default=None, metavar="FLOP/S",
                        help="--hardware cpu only: peak FLOP/s of one CPU (default: measured with "
                             "a quick fp32 matmul)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object instead of a table")


@one_line_errors
def run(args: argparse.Namespace) -> int:
    print(_plan(args))
    return 0


def _plan(args: argparse.Namespace) -> str:
    from raygrow.config import load_config
    from raygrow.plan.accounting import plan_report
    from raygrow.plan.format import format_report
    from raygrow.plan.hardware import resolve_hardware

    config = load_config(args.plan, args.overrides)
    # The hardware is resolved after the config so that a bad plan is refused before any measuring.
    hardware = resolve_hardware(args.hardware, args.cpu_peak)
    report = plan_report(config, hardware, mfu=args.mfu, price_per_hour=args.gpu_hour_price)
    return json.dumps(report.to_json(), indent=2) if args.json else format_report(report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="raygrow plan", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
