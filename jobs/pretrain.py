"""Entrypoint for `ray job submit`: the same run as `raygrow train`, on whatever cluster runs it.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python jobs/pretrain.py --plan jobs/plans/tiny.yaml [--storage URI] [--name NAME]
            [--set k=v]
"""

import argparse
import sys
from pathlib import Path

# With --working-dir the repository is the job's cwd but not installed: import it from there.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from raygrow.cli import main  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", required=True)
    parser.add_argument("--storage")
    parser.add_argument("--name")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    argv = ["train", args.plan, "--quiet"]
    argv += ["--storage", args.storage] if args.storage else []
    argv += ["--name", args.name] if args.name else []
    for override in args.overrides:
        argv += ["--set", override]
    sys.exit(main(argv))
