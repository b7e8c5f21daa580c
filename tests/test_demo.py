"""The README's first command: ``python3 -m gether demo``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gether


def test_demo_converges() -> None:
    src = str(Path(gether.__file__).parents[1])
    result = subprocess.run(
        [sys.executable, "-m", "gether", "demo", "--rounds", "3"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": src, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "are identical" in result.stdout
    assert "carol's item 2" in result.stdout  # carol's offline edits arrived
