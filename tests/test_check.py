"""``reprokit check`` and ``otter check`` on a built student notebook."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from reprokit.build import build
from reprokit.check import check_command, check_notebook

TINY = Path(__file__).parent / "fixtures" / "tiny-paper"


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny paper's level 1 student folder, plus the reference solution as done.ipynb."""
    tmp = tmp_path_factory.mktemp("check")
    wheel = tmp / "reprokit-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"stand-in")
    (lb,) = build(TINY, tmp / "dist", levels=["01"], qa=False, wheel=wheel).levels
    shutil.copy(lb.solution, lb.student.parent / "done.ipynb")
    return lb.student.parent


def test_missing_tests_folder_is_explained(tmp_path: Path) -> None:
    nb = tmp_path / "x.ipynb"
    shutil.copy(TINY / "01-rerun.ipynb", nb)
    with pytest.raises(FileNotFoundError, match="tests/ folder"):
        check_notebook(nb)


def test_unknown_question_lists_known_ones(student_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"'q9'.*known: q1"):
        check_notebook(student_dir / "01-rerun.ipynb", question="q9")


@pytest.mark.slow
def test_blank_notebook_fails_public_test_with_message(student_dir: Path) -> None:
    result = CliRunner().invoke(check_command, [str(student_dir / "01-rerun.ipynb")])
    assert result.exit_code == 1, result.output
    assert "q1" in result.output and "failed" in result.output
    assert "0/2" in result.output
    assert "still `...`" in " ".join(result.output.split())  # the plain helper names the `...`


@pytest.mark.slow
def test_reference_notebook_passes_one_question(student_dir: Path) -> None:
    (check,) = check_notebook(student_dir / "done.ipynb", question="q1")
    assert (check.name, check.passed, check.score, check.possible) == ("q1", True, 2.0, 2.0)


@pytest.mark.slow
def test_otter_check_runs_on_built_student_notebook(student_dir: Path) -> None:
    otter = [sys.executable, "-m", "otter", "check"]
    blank = subprocess.run([*otter, "01-rerun.ipynb"], cwd=student_dir, capture_output=True,
                           text=True, timeout=300)
    assert blank.returncode == 0, blank.stderr[-2000:]
    assert "q1 results" in blank.stdout and "Test case failed" in blank.stdout
    done = subprocess.run([*otter, "done.ipynb"], cwd=student_dir, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "All tests passed!" in done.stdout
