"""The Gradescope contract: a built zip, laid out as Gradescope does, writes a valid results.json.

Gradescope unzips the autograder into ``/autograder/source``, runs ``setup.sh`` once, puts
the student's files in ``/autograder/submission`` and runs ``run_autograder``, which must
leave ``/autograder/results/results.json``. These tests use a temporary root (through
``REPROKIT_AUTOGRADER_ROOT``) and skip setup.sh's pip installs (the packages are already
here), but check that setup.sh is valid bash with every version pinned.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from reprokit.build import build, repository_root

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "tiny-paper"
TEMPLATES = repository_root() / "autograder"
VISIBILITIES = {"hidden", "after_due_date", "after_published", "visible"}


def test_setup_sh_and_run_autograder_are_valid_bash() -> None:
    for name in ("setup.sh", "run_autograder"):
        proc = subprocess.run(["bash", "-n", str(TEMPLATES / name)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{name}: {proc.stderr}"


def test_setup_sh_installs_cpu_torch_pinned_without_conda_or_browsers() -> None:
    setup = (TEMPLATES / "setup.sh").read_text()
    assert re.search(r"torch==2\.13\.0 --index-url https://download\.pytorch\.org/whl/cpu", setup)
    code = "\n".join(line for line in setup.splitlines() if not line.lstrip().startswith("#"))
    for word in ("conda", "mamba", "playwright", "chromium"):
        assert word not in code, f"setup.sh should not use {word}"


def test_every_grading_requirement_is_pinned() -> None:
    lines = [line.split("#")[0].strip() for line in (TEMPLATES / "requirements.txt").read_text().splitlines()]
    reqs = [line for line in lines if line]
    assert any(r.startswith("otter-grader") for r in reqs)
    unpinned = [r for r in reqs if not re.fullmatch(r"[A-Za-z0-9_.\-]+(\[[a-z,]+\])?==[0-9][\w.]*", r)]
    assert not unpinned, f"pin these with ==: {unpinned}"


def test_run_autograder_calls_reprokit_gradescope() -> None:
    script = (TEMPLATES / "run_autograder").read_text()
    assert "python3 -m reprokit.gradescope" in script
    assert "REPROKIT_AUTOGRADER_ROOT" in script


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny paper's level 1 zip and its reference solution (no QA; a stand-in wheel)."""
    tmp = tmp_path_factory.mktemp("gs")
    wheel = tmp / "reprokit-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"stand-in")
    result = build(TINY, tmp / "dist", levels=["01"], qa=False, wheel=wheel)
    return result.levels[0].zipfile, result.levels[0].solution


def test_zip_entry_points_are_executable(built_zip: tuple[Path, Path]) -> None:
    with zipfile.ZipFile(built_zip[0]) as zf:
        for name in ("run_autograder", "setup.sh"):
            assert (zf.getinfo(name).external_attr >> 16) & 0o100, f"{name} is not executable"


def _gradescope_root(tmp_path: Path, zip_path: Path, notebook: Path) -> Path:
    root = tmp_path / "autograder"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(root / "source")
    (root / "submission").mkdir()
    (root / "results").mkdir()
    shutil.copy(notebook, root / "submission" / notebook.name)
    return root


def _run_autograder(root: Path) -> dict:
    env = {**os.environ, "REPROKIT_AUTOGRADER_ROOT": str(root),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    script = root / "source" / "run_autograder"
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=300)
    results = root / "results" / "results.json"
    assert results.exists(), f"rc={proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return json.loads(results.read_text())


def _assert_gradescope_format(results: dict) -> None:
    assert isinstance(results["score"], int | float) and not isinstance(results["score"], bool)
    assert isinstance(results["tests"], list) and results["tests"]
    for test in results["tests"]:
        assert {"name", "score", "max_score", "visibility", "output"} <= set(test), test
        assert isinstance(test["name"], str) and isinstance(test["output"], str)
        for key in ("score", "max_score"):
            assert isinstance(test[key], int | float) and not isinstance(test[key], bool)
        assert test["visibility"] in VISIBILITIES


@pytest.mark.slow
def test_reference_submission_gets_full_score_in_results_json(tmp_path: Path,
                                                              built_zip: tuple[Path, Path]) -> None:
    zip_path, solution = built_zip
    results = _run_autograder(_gradescope_root(tmp_path, zip_path, solution))
    _assert_gradescope_format(results)
    graded = [t for t in results["tests"] if t["max_score"] > 0]
    assert [t["name"] for t in graded] == ["q1"]
    assert results["score"] == pytest.approx(sum(t["max_score"] for t in graded))


@pytest.mark.slow
def test_blank_submission_scores_zero_with_same_possible(tmp_path: Path,
                                                         built_zip: tuple[Path, Path]) -> None:
    zip_path, solution = built_zip
    blank = solution.parent.parent / "student" / solution.name
    results = _run_autograder(_gradescope_root(tmp_path, zip_path, blank))
    _assert_gradescope_format(results)
    assert results["score"] == 0
    assert sum(t["max_score"] for t in results["tests"]) == 2  # possible fixed by the autograder
