"""Version updates: LR path switching against retraining from scratch and continual pretraining.

    .venv/bin/python jobs/bench/versions.py [--scale 1.0] [--versions 4] [--storage DIR] [--out DIR]
                                            [--modes path_switching,from_scratch,continual] [--quiet]

The built-in corpus (the standard library's files, in sorted order) is split into consecutive
slices, one per data version. Each mode trains and releases every version through
`raygrow.versions.runner.run_versions` (same base config, same shape, same rows per version):
  path_switching  main path at peak LR; per version a branch decaying over the paper's 60% of the
                  version's steps (arXiv 2410.04103), exported as the release
  from_scratch    version k retrained from scratch on versions 1..k, warm-up + cosine
  continual       version k continues from release k-1 on version k, warm-up + cosine again
Every release is scored on one common held-out set (the validation rows of all versions
together, loaded through stock transformers) and the cumulative training FLOPs so far are listed
beside it. Prints a table, writes results.json and versions.png into --out.

Sized for about 10 minutes on a 2-core CPU box at --scale 1.0 (mostly Ray Train start-up: one
`fit()` per segment, 19 for four versions); --scale multiplies the steps per version.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from raygrow.config import RunConfig, from_dict  # noqa: E402
from raygrow.driver import ensure_ray  # noqa: E402
from raygrow.errors import RaygrowError  # noqa: E402
from raygrow.versions.cli import format_table  # noqa: E402
from raygrow.versions.runner import run_versions  # noqa: E402

MODES = ("path_switching", "from_scratch", "continual")
STEPS_PER_VERSION = 20  # at --scale 1.0; one version = 20 steps of 8192 tokens
BATCH_TOKENS = 8192
SEQ_LEN = 128
DOCUMENTS_PER_STEP = 2.5  # stdlib files hold far more than 64 rows of 129 bytes: no row repeats; 1 in 10 is held out


def base_dict(storage: str, scale: float, versions: int) -> dict:
    steps = max(3, round(STEPS_PER_VERSION * scale))
    per_version = max(4, round(steps * DOCUMENTS_PER_STEP))
    data = [{"documents": {"start": k * per_version, "end": (k + 1) * per_version}, "tokens": steps * BATCH_TOKENS}
            for k in range(versions)]
    return {
        "storage": storage,
        "data": {"source": "stdlib", "tokenizer": "byte", "seq_len": SEQ_LEN, "val_fraction": 0.1},
        "model": {"layers": 2, "hidden": 128, "heads": 4, "ffn": 344, "tie_embeddings": True},
        "train": {"workers": 1, "cpus_per_worker": os.cpu_count() or 1, "zero_stage": 2,
                  "batch_tokens": BATCH_TOKENS, "micro_batch": 16, "lr": 3e-3, "min_lr_ratio": 0.1,
                  "warmup_steps": max(1, steps // 4), "schedule": "cosine",
                  "log_every": max(1, steps // 4), "val_every": 1 << 30,  # validated at each segment's end
                  "val_rows": 256,  # the common validation set: the first 256 rows of all versions together
                  "deterministic": False, "max_failures": 0},
        "checkpoint": {"every_steps": 1 << 30, "keep": 1},  # the segment's last step always saves
        "versions": {"data": data},
    }


def run_mode(base: dict, mode: str, show_progress: bool) -> dict:
    raw = json.loads(json.dumps(base))
    raw["name"] = f"versions-{mode}"
    raw["versions"]["mode"] = mode
    started = time.monotonic()
    summary = run_versions(from_dict(RunConfig, raw), show_progress=show_progress)
    summary["bench_wall_s"] = time.monotonic() - started
    print(format_table(summary), flush=True)
    return summary


def table(summaries: dict[str, dict]) -> str:
    """Per version and mode: the release's loss and the cumulative FLOPs, also as a share of
    from_scratch's."""
    scratch = summaries.get("from_scratch")
    lines = ["| version | mode | release val loss | cumulative FLOPs | vs from scratch |", "|---|---|---:|---:|---:|"]
    for index in range(len(next(iter(summaries.values()))["versions"])):
        for mode, summary in summaries.items():
            version = summary["versions"][index]
            flops = version["cumulative"]["flops"]
            share = f"{flops / scratch['versions'][index]['cumulative']['flops']:.2f}" if scratch else "—"
            lines.append(f"| {version['name']} | {mode} | {version['release_val_loss']:.4f} | {flops:.3e} | {share} |")
    return "\n".join(lines)


def plot(summaries: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_version, by_flops) = plt.subplots(1, 2, figsize=(11, 4))
    for mode, summary in summaries.items():
        versions = summary["versions"]
        losses = [v["release_val_loss"] for v in versions]
        by_version.plot(range(1, len(versions) + 1), losses, "o-", label=mode)
        by_flops.plot([v["cumulative"]["flops"] for v in versions], losses, "o-", label=mode)
    by_version.set(xlabel="version", ylabel="release loss, common validation set", xticks=range(1, 5))
    by_flops.set(xlabel="cumulative training FLOPs", ylabel="release loss, common validation set")
    for axis in (by_version, by_flops):
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the steps per version (default 1.0)")
    parser.add_argument("--versions", type=int, default=4, help="data versions (default 4)")
    parser.add_argument("--storage", default="./runs/bench", help="run directories and packed datasets")
    parser.add_argument("--out", default="./runs/bench/versions", help="results.json and versions.png go here")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of " + ",".join(MODES))
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    base = base_dict(args.storage, args.scale, args.versions)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ensure_ray()
    started = time.monotonic()
    try:
        summaries = {mode: run_mode(base, mode, not args.quiet) for mode in args.modes.split(",")}
    except RaygrowError as error:
        sys.exit(f"versions bench: error: {error}")
    print(table(summaries))
    print(f"wall: {time.monotonic() - started:.0f} s ("
          + ", ".join(f"{mode} {s['bench_wall_s']:.0f} s" for mode, s in summaries.items()) + ")")
    (out / "results.json").write_text(json.dumps({"args": vars(args), "base": base, "summaries": summaries}, indent=1))
    plot(summaries, out / "versions.png")
    print(f"results: {out / 'results.json'}, plot: {out / 'versions.png'}")


if __name__ == "__main__":
    main()
