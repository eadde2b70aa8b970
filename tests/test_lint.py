"""The repository passes `ruff check` under the configuration in pyproject.toml (no Ray)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ruff_check_passes() -> None:
    # the ruff package runs its own binary through `python -m ruff`: the version the test extra pins
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"ruff check failed:\n{done.stdout}{done.stderr}"
