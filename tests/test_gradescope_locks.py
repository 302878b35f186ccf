"""Every per-Python lock resolves to binary wheels for its Python on Gradescope's platform.

``pip download --only-binary=:all: --python-version X.Y.Z --no-deps`` of each lock from PyPI
(Z: the oldest patch release among the images we target, since some packages require e.g.
">=3.11.5" while Debian bookworm has 3.11.2),
ignoring this machine's pip configuration (local wheel folders, constraints), for a
manylinux x86_64 target (Gradescope's images: Ubuntu 22.04/24.04, Debian bookworm all have
glibc >= 2.28). torch is not in the locks (setup.sh takes the CPU build from the PyTorch
index); its CPU wheel is checked for Python 3.10-3.12 by
``test_cpu_torch_wheel_exists_for_every_locked_python`` when that index is reachable.

Needs network access to PyPI; skipped without it. Costs: about 700 MB of downloads and
2-4 minutes in all on a fast link (slow).
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from reprokit.build import template_dir

LOCKS = template_dir() / "locks"
#: each lock's Python and the oldest patch release it must install on (see tools/lock_autograder.py)
FLOORS = {"3.10": "3.10.12", "3.11": "3.11.2", "3.12": "3.12.3"}
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux2010_x86_64", "manylinux1_x86_64")


def _reachable(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=10).close()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not here"
        return False


def _pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    if "PIP_CERT" in os.environ:
        env["PIP_CERT"] = os.environ["PIP_CERT"]
    return env


def _download(args: list[str], dest: Path) -> subprocess.CompletedProcess:
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    return subprocess.run([sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps",
                           "-q", *platforms, "-d", str(dest), *args],
                          env=_pip_env(), capture_output=True, text=True, timeout=1800)


@pytest.mark.slow
@pytest.mark.parametrize("version", ["3.10", "3.11", "3.12"])
def test_lock_resolves_to_binary_wheels_for_its_python(version: str, tmp_path: Path) -> None:
    if not _reachable("https://pypi.org/simple/pip/"):
        pytest.skip("PyPI is not reachable")
    lock = LOCKS / f"py{version}.txt"
    proc = _download(["--python-version", FLOORS[version], "-r", str(lock)], tmp_path)
    assert proc.returncode == 0, f"{lock.name}:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    pinned = [line for line in lock.read_text().splitlines() if line and not line.startswith("#")]
    assert len(list(tmp_path.glob("*.whl"))) == len(pinned)


@pytest.mark.slow
@pytest.mark.parametrize("version", ["3.10", "3.11", "3.12"])
def test_cpu_torch_wheel_exists_for_every_locked_python(version: str, tmp_path: Path) -> None:
    index = "https://download.pytorch.org/whl/cpu"
    if not _reachable(index + "/torch/"):
        pytest.skip("the PyTorch CPU index is not reachable")
    proc = _download(["--python-version", version, "--index-url", index, "torch==2.13.0"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert [p.name for p in tmp_path.glob("torch-2.13.0+cpu-*.whl")]
