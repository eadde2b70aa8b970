"""The console of the default run: raygrow's own lines and progress bars, nothing from Ray's or
DeepSpeed's processes (those go to the log files under the run, shown with --verbose)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray

REPO = Path(__file__).resolve().parents[1]
# What raygrow itself prints: its logger's lines, its "raygrow: ..." notes, tqdm bars named after a
# stage, the closing summary lines.
OWN = re.compile(r"^(\S+ \S+ raygrow[.\w]* (INFO|WARNING) |raygrow: |stage-\d+: |stage \d+: \{|"
                 r"growth: \{|run directory: )")


def test_the_default_run_prints_only_raygrows_own_lines(tmp_path):
    env = {**os.environ, "RAY_ADDRESS": ""}  # the embedded cluster, as `make train` gets it
    shrink = ["--set", "stages.0.tokens=16384", "--set", "stages.1.tokens=16384",
              "--set", "train.val_every=1", "--set", "train.log_every=1"]
    result = subprocess.run(
        [sys.executable, "-m", "raygrow.cli", "train", str(REPO / "jobs/plans/tiny.yaml"),
         "--storage", str(tmp_path), *shrink],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    lines = [line.strip() for line in re.split(r"[\r\n]", output) if line.strip()]
    foreign = [line for line in lines if not OWN.match(line)]
    assert not foreign, "\n".join(foreign[:20])
    assert any(line.startswith("growth: {") for line in lines)  # it did run both stages
