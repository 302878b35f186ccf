"""The Gradescope contract: a built zip, laid out as Gradescope does, writes a valid results.json.

Gradescope unzips the autograder into ``/autograder/source``, runs ``setup.sh`` once, puts
the student's files in ``/autograder/submission`` and runs ``run_autograder``, which must
leave ``/autograder/results/results.json``. These tests use a temporary root (through
``REPROKIT_AUTOGRADER_ROOT``) and skip setup.sh's pip installs (the packages are already
here); ``tools/gradescope_docker_check.py`` runs the real thing in Docker (docs/gradescope.md).
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

from reprokit.build import TEMPLATES, build, template_dir

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "tiny-paper"
TEMPLATE_DIR = template_dir()
LOCKS = {v: TEMPLATE_DIR / "locks" / f"py{v}.txt" for v in ("3.10", "3.11", "3.12")}
#: Gradescope's visibility values (its autograder specification, "Controlling Test Case Visibility")
VISIBILITIES = {"hidden", "after_due_date", "after_published", "visible"}


def _pins(path: Path) -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return dict(line.split("==", 1) for line in lines if line)


def test_setup_sh_and_run_autograder_are_valid_bash() -> None:
    for name in ("setup.sh", "run_autograder"):
        proc = subprocess.run(["bash", "-n", str(TEMPLATE_DIR / name)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{name}: {proc.stderr}"


def test_setup_sh_installs_cpu_torch_into_a_venv_without_conda_or_browsers() -> None:
    setup = (TEMPLATE_DIR / "setup.sh").read_text()
    assert 'TORCH_INDEX="${REPROKIT_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"' in setup
    assert "TORCH_VERSION=2.13.0" in setup
    assert re.search(r'-m venv "\$VENV"', setup), "setup.sh must install into a venv (PEP 668)"
    code = "\n".join(line for line in setup.splitlines() if not line.lstrip().startswith("#"))
    assert "--break-system-packages" not in code
    for word in ("conda", "mamba", "playwright install", "chromium"):
        assert word not in code, f"setup.sh should not use {word}"


@pytest.mark.parametrize("version", sorted(LOCKS))
def test_every_lock_pins_every_package_and_leaves_torch_to_the_cpu_index(version: str) -> None:
    raw = [line.split("#")[0].strip() for line in LOCKS[version].read_text().splitlines()]
    reqs = [line for line in raw if line]
    unpinned = [r for r in reqs if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]*==[0-9][\w.+!]*", r)]
    assert not unpinned, f"{LOCKS[version].name}: pin these with == (and lower-case names): {unpinned}"
    names = set(_pins(LOCKS[version]))
    assert not {n for n in names if n == "torch" or n.startswith(("nvidia-", "triton"))}
    wanted = {re.split(r"[\[<>=!~; ]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")
              for line in (TEMPLATE_DIR / "requirements.in").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    assert wanted - {"torch"} <= names, f"{LOCKS[version].name} lacks {wanted - names}: re-run " \
                                        "tools/lock_autograder.py"


def test_locks_follow_each_python_not_the_newest_release() -> None:
    """Python 3.10 gets releases that still support it (the pins that broke Ubuntu 22.04)."""
    py310, py311 = _pins(LOCKS["3.10"]), _pins(LOCKS["3.11"])
    assert py310["numpy"].startswith("2.2.") and py311["numpy"] == "2.4.6"
    assert py310["ipykernel"] != "7.4.0" and py311["ipykernel"] == "7.4.0"
    assert "tomli" in py310 and "tomli" not in py311  # pytest needs it below 3.11 only


def test_run_autograder_prefers_the_venv_from_setup_sh() -> None:
    script = (TEMPLATE_DIR / "run_autograder").read_text()
    assert 'PY="$ROOT/venv/bin/python"' in script
    assert '"$PY" -m reprokit.gradescope' in script
    assert "REPROKIT_AUTOGRADER_ROOT" in script


@pytest.fixture(scope="module")
def built_zip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tiny paper's level 1 zip and its reference solution (no QA; a stand-in wheel)."""
    tmp = tmp_path_factory.mktemp("gs")
    wheel = tmp / "reprokit-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"stand-in")
    result = build(TINY, tmp / "dist", levels=["01"], qa=False, wheel=wheel)
    return result.levels[0].zipfile, result.levels[0].solution


def test_zip_ships_every_template_and_executable_entry_points(built_zip: tuple[Path, Path]) -> None:
    with zipfile.ZipFile(built_zip[0]) as zf:
        names = set(zf.namelist())
        assert set(TEMPLATES) <= names
        for name in ("run_autograder", "setup.sh"):
            assert (zf.getinfo(name).external_attr >> 16) & 0o100, f"{name} is not executable"
        manifest = json.loads(zf.read("reprokit.json"))
    assert manifest["assignment_name"] == "01-rerun"


def _gradescope_root(tmp_path: Path, zip_path: Path, notebook: Path) -> Path:
    root = tmp_path / "autograder"
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(root / "source")
    (root / "submission").mkdir()
    (root / "results").mkdir()
    shutil.copy(notebook, root / "submission" / notebook.name)
    return root


def _run_autograder(root: Path) -> tuple[int, dict]:
    env = {**os.environ, "REPROKIT_AUTOGRADER_ROOT": str(root),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    script = root / "source" / "run_autograder"
    proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=600)
    results = root / "results" / "results.json"
    assert results.exists(), f"rc={proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.returncode, json.loads(results.read_text())


def _assert_gradescope_format(results: dict) -> None:
    """Types and values from Gradescope's results.json specification."""
    if "score" in results:
        assert isinstance(results["score"], int | float) and not isinstance(results["score"], bool)
    assert isinstance(results["tests"], list) and results["tests"]
    assert results.get("stdout_visibility", "hidden") in VISIBILITIES
    for test in results["tests"]:
        assert {"name", "visibility", "output"} <= set(test), test
        assert isinstance(test["name"], str) and isinstance(test["output"], str)
        for key in ("score", "max_score"):
            if key in test:
                assert isinstance(test[key], int | float) and not isinstance(test[key], bool)
        assert test["visibility"] in VISIBILITIES
        assert test.get("status", "passed") in {"passed", "failed"}


def test_a_broken_autograder_exits_non_zero_and_records_no_grade(tmp_path: Path,
                                                                 built_zip: tuple[Path, Path]) -> None:
    zip_path, solution = built_zip
    root = _gradescope_root(tmp_path, zip_path, solution)
    for test in (root / "source" / "tests").glob("*.py"):
        test.write_text("this is not python (\n")  # the autograder, not the submission, is broken
    rc, results = _run_autograder(root)
    _assert_gradescope_format(results)
    assert rc != 0
    assert "score" not in results and all("score" not in t for t in results["tests"])
    assert "course staff" in results["output"]
    assert results["extra_data"]["reprokit_status"] == "autograder-error"
    details = [t for t in results["tests"] if t["visibility"] == "hidden"]
    assert details and "does not load" in details[0]["output"]


@pytest.mark.slow
def test_reference_submission_gets_full_score_in_results_json(tmp_path: Path,
                                                              built_zip: tuple[Path, Path]) -> None:
    zip_path, solution = built_zip
    rc, results = _run_autograder(_gradescope_root(tmp_path, zip_path, solution))
    _assert_gradescope_format(results)
    assert rc == 0
    graded = [t for t in results["tests"] if t.get("max_score")]
    assert [(t["name"], t["visibility"]) for t in graded] == [
        ("q1: public tests", "visible"), ("q1: hidden tests", "after_due_date")]
    assert results["score"] == pytest.approx(sum(t["max_score"] for t in graded)) == 2


@pytest.mark.slow
def test_blank_submission_shows_each_public_result_to_the_student(tmp_path: Path,
                                                                   built_zip: tuple[Path, Path]) -> None:
    zip_path, solution = built_zip
    blank = solution.parent.parent / "student" / solution.name
    rc, results = _run_autograder(_gradescope_root(tmp_path, zip_path, blank))
    _assert_gradescope_format(results)
    assert rc == 0 and results["score"] == 0
    assert sum(t.get("max_score", 0) for t in results["tests"]) == 2  # possible fixed by the autograder
    public = [t for t in results["tests"] if t["visibility"] == "visible" and t.get("max_score")]
    assert [t["name"] for t in public] == ["q1: public tests"]
    # the public test's own failure message, as the student saw it locally with grader.check
    assert "is the answer still `...`?" in public[0]["output"] and public[0]["status"] == "failed"
    assert "q1 - 2" not in public[0]["output"]  # Otter's name for the hidden case
    hidden = [t for t in results["tests"] if t["name"] == "q1: hidden tests"][0]
    assert hidden["visibility"] == "after_due_date" and hidden["score"] == 0
    assert "mean of [1, 2, 3, 6]" not in hidden["output"]  # show_hidden is false for this level
    instructors = [t for t in results["tests"] if t["visibility"] == "hidden"]
    assert instructors and "isolation layers:" in instructors[0]["output"]
