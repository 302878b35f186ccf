"""The command line answers as ``reprokit``, ``python -m reprokit`` and ``python -m reprokit.cli``."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["reprokit", "reprokit.cli"])
def test_python_dash_m_lists_every_command(module: str) -> None:
    proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    for command in ("build", "check", "grade", "new", "regrade"):
        assert f"  {command} " in proc.stdout, proc.stdout
