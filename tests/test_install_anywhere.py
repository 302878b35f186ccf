"""An instructor who `pip install`s the reprokit wheel (no checkout) can build a course.

Costs about 20 s: a fresh venv that sees this interpreter's packages (so the heavy
dependencies are the ones already installed) but not an editable reprokit, the wheel
installed into it without dependencies, then ``reprokit build --no-qa`` on a copy of the
tiny paper outside any checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from reprokit.build import TEMPLATES, build_wheel, wheel_from_installed

TINY = Path(__file__).parent / "fixtures" / "tiny-paper"


def test_wheel_from_installed_is_a_reproducible_wheel_with_templates(tmp_path: Path) -> None:
    first = wheel_from_installed(tmp_path / "a")
    again = wheel_from_installed(tmp_path / "b")
    assert first.read_bytes() == again.read_bytes()
    with zipfile.ZipFile(first) as zf:
        names = set(zf.namelist())
        record = zf.read(next(n for n in names if n.endswith(".dist-info/RECORD"))).decode()
    assert {f"reprokit/templates/autograder/{t}" for t in TEMPLATES} <= names
    assert "reprokit/gradescope.py" in names and not any("__pycache__" in n for n in names)
    assert all(name in record for name in names)


@pytest.mark.slow
def test_build_from_a_non_editable_install_in_a_fresh_venv(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path / "wheel")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    # the heavy dependencies come from this interpreter's site-packages, listed after the venv's
    # own (so the wheel's reprokit wins); unlike --system-site-packages this also works when
    # the tests run in a venv, and it skips the .pth of an editable reprokit install there
    inner = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           check=True, capture_output=True, text=True).stdout.strip()
    outer = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(inner) / "outer-site-packages.pth").write_text("\n".join(sorted(outer)) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
                   check=True, env=env)
    where = subprocess.run([str(py), "-c", "import reprokit; print(reprokit.__file__)"], env=env,
                           check=True, capture_output=True, text=True).stdout.strip()
    assert Path(where).is_relative_to(venv), f"imported {where}, not the wheel's copy"
    paper = tmp_path / "elsewhere" / "tiny-paper"  # outside any checkout
    shutil.copytree(TINY, paper)
    proc = subprocess.run([str(venv / "bin" / "reprokit"), "build", str(paper), "--level", "01",
                           "--no-qa", "-o", str(tmp_path / "dist")], cwd=tmp_path / "elsewhere",
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    zip_path = tmp_path / "dist" / "tiny-paper" / "01-rerun" / "01-rerun-autograder.zip"
    with zipfile.ZipFile(zip_path) as zf:
        names = set(zf.namelist())
        shipped = next(n for n in names if n.startswith("reprokit-") and n.endswith(".whl"))
        (tmp_path / shipped).write_bytes(zf.read(shipped))
        assert json.loads(zf.read("reprokit.json"))["assignment_name"] == "01-rerun"
    assert set(TEMPLATES) <= names
    with zipfile.ZipFile(tmp_path / shipped) as wf:
        inner = set(wf.namelist())
    # the zip ships the installed reprokit: the same modules the venv imports
    installed = {p.relative_to(Path(where).parent.parent).as_posix()
                 for p in Path(where).parent.rglob("*.py") if "__pycache__" not in p.parts}
    assert installed <= inner
