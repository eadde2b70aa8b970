"""The `raygrow` command. Thin: parse arguments, call the library, turn errors into one line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys

from raygrow.command import config_arguments, load_run_config, one_line_errors
from raygrow.errors import RaygrowError

log = logging.getLogger("raygrow")


@one_line_errors
def cmd_validate(args: argparse.Namespace) -> int:
    from raygrow.driver import check

    config = load_run_config(args)
    check(config)
    print(f"{args.plan}: ok")
    for index, stage in enumerate(config.plan_stages):
        low, high = config.worker_range(stage)
        workers = f"{low}" if low == high else f"{low}-{high}"
        print(f"  stage {index}: {config.stage_steps[index]} steps of "
              f"{config.train.batch_tokens} tokens, {workers} worker(s), "
              f"ZeRO-{config.stage_zero(stage)}"
              + (f", grown by {stage.growth.depth_op}/{stage.growth.width_op}"
                 if stage.growth else ""))
    return 0


@one_line_errors
def cmd_prepare(args: argparse.Namespace) -> int:
    from raygrow.data import prepare
    from raygrow.driver import check, ensure_ray

    config = load_run_config(args)
    check(config)
    ensure_ray()
    manifest = prepare(config, show_progress=not args.quiet)
    print(f"{manifest.train_rows} train rows, {manifest.val_rows} validation rows of "
          f"{manifest.seq_len + 1} tokens from {manifest.documents} documents")
    if len(manifest.sources) > 1:
        print(f"mixture of {len(manifest.sources)} sources (a source running out ends it: "
              f"{manifest.exhausted}):")
        for share in manifest.sources:
            unused = share.packed_train_rows - share.train_rows
            print(f"  {share.source}: weight {share.weight:g}, target {share.target:.1%}, "
                  f"realised {share.realised:.1%}: {share.train_tokens} train tokens "
                  f"({share.train_rows} rows), {share.val_rows} validation rows, "
                  f"{share.documents} documents" + (f", {unused} rows left out" if unused else ""))
    return 0


@one_line_errors
def cmd_train(args: argparse.Namespace) -> int:
    from raygrow.driver import train, train_with_baseline

    config = load_run_config(args)
    if config.versions is not None:
        raise RaygrowError(f"{args.plan} is a versions plan: run it with `raygrow versions "
                           f"{args.plan}`")
    summary = (train_with_baseline if args.baseline else train)(config,
                                                                show_progress=not args.quiet)
    for index, stage in enumerate(summary["stages"]):
        print(f"stage {index}: " + json.dumps({k: stage[k] for k in (
            "steps", "tokens", "flops", "final_train_loss", "final_val_loss", "tokens_per_s")}))
    for transition in summary["transitions"]:
        print("growth: " + json.dumps(transition))
    if "baseline" in summary:
        print("baseline: " + json.dumps(summary["baseline"]))
    stopped_by = summary.get("stopped_by")
    if stopped_by:
        print(f"run directory: {config.run_dir} (stopped by {stopped_by} at a checkpoint; rerun "
              "the same command to continue)")
        # as a shell reports a process the signal ended
        return 128 + signal.Signals[stopped_by].value
    print(f"run directory: {config.run_dir}" + ("" if summary["complete"] else " (stopped early)"))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="raygrow", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, handler, text in (("train", cmd_train,
                                 "train a model (resumes a run of the same name)"),
                                ("prepare", cmd_prepare, "tokenize and pack the corpus once"),
                                ("validate", cmd_validate,
                                 "check a config without running anything")):
        sub = commands.add_parser(name, help=text)
        config_arguments(sub)
        sub.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
        sub.set_defaults(handler=handler)
        if name == "train":
            sub.add_argument("--baseline", action="store_true",
                             help="also train the final shape from scratch for the same FLOPs "
                                  "(sibling run)")
    from raygrow.eval import cli as eval_cli
    from raygrow.grow import cli as grow_cli
    from raygrow.plan import cli as plan_cli
    from raygrow.versions import cli as versions_cli
    from raygrow.tune import cli as tune_cli

    for name, module, text in (("grow", grow_cli, "grow an exported model to a larger shape"),
                               ("plan", plan_cli,
                                "FLOPs, GPU-hours and cost of a plan vs. training from scratch"),
                               ("versions", versions_cli,
                                "train data versions one after another, releasing each"),
                               ("tune", tune_cli,
                                "sweep growth timing and factor at a fixed FLOP budget (Ray Tune)"),
                               ("eval", eval_cli,
                                "score exports on the IQ suite and lm-eval tasks")):
        sub = commands.add_parser(name, help=text)
        module.add_arguments(sub)
        sub.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Other libraries' INFO lines (matplotlib's font cache, filelock, ...) only with --verbose.
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("raygrow").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("raygrow: interrupted; rerun with the same --name to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
