"""Grading that students cannot game: every attack scores no more than a blank notebook.

The corpus is in tests/security/attacks.py; the threat model in docs/security.md.
Each attack is graded end to end by reprokit's engine and through the Gradescope
entry point, on one small assignment, and the batch always completes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from reprokit import gradescope, sandbox
from reprokit.grading import grade

HERE = Path(__file__).parent / "security"
sys.path.insert(0, str(HERE))
from attacks import ATTACKS  # noqa: E402

needs_root = pytest.mark.skipif(
    not sandbox.can_drop_privileges(),
    reason="file-system defences need the grader to run as root (it drops the submission to another uid)",
)
FS_ATTACKS = {"tamper-tests-during-execution", "tamper-tests-from-background-thread",
              "tamper-tests-from-atexit", "delete-and-add-test-files", "edit-installed-grader-files",
              "read-hidden-material", "read-grader-memory", "forge-results"}
FAST = dict(timeout_s=15, question_timeout_s=10, memory_mb=2048)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny assignment built with Otter Assign, plus reprokit's manifest."""
    out = tmp_path_factory.mktemp("sec-build")
    subprocess.run(["otter", "assign", str(HERE / "sec.ipynb"), str(out), "--no-run-tests"],
                   check=True, capture_output=True)
    (zip_path,) = (out / "autograder").glob("sec-autograder*.zip")
    with zipfile.ZipFile(zip_path, "a") as zf:
        zf.writestr("reprokit.json", json.dumps({
            "public_files": ["public_data.txt"], "hidden_files": ["hidden_data.txt"],
            "seed": 42, "time_budget_s": 10}))
    return {"zip": zip_path, "solution": out / "autograder" / "sec.ipynb",
            "student": out / "student" / "sec.ipynb"}


def attack_notebook(built: dict[str, Path], cells: list[str], dest: Path) -> Path:
    nb = nbformat.read(built["student"], as_version=4)
    init = next(c for c in nb.cells if c.cell_type == "code")
    nb.cells = [init] + [nbformat.v4.new_code_cell(src) for src in cells]
    nbformat.write(nb, dest)
    return dest


@pytest.fixture(scope="module")
def blank_score(built: dict[str, Path]) -> float:
    result = grade(built["student"], built["zip"], **FAST)
    assert result.status == "graded"
    return result.score


def test_reference_solution_scores_full_marks(built: dict[str, Path]) -> None:
    result = grade(built["solution"], built["zip"], **FAST)
    assert (result.status, result.score, result.possible) == ("graded", 3.0, 3.0), result.questions


def test_blank_notebook_scores_zero(blank_score: float) -> None:
    assert blank_score == 0.0


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_scores_no_more_than_blank(name: str, built: dict[str, Path], blank_score: float,
                                          tmp_path: Path) -> None:
    if name in FS_ATTACKS and not sandbox.can_drop_privileges():
        pytest.skip("file-system defences need root")
    import otter

    import reprokit.plain

    guarded = [Path(reprokit.plain.__file__),
               Path(otter.__file__).parent / "test_files" / "exception_test.py", built["zip"]]
    before = _digest(guarded)
    nb = attack_notebook(built, ATTACKS[name], tmp_path / f"{name}.ipynb")
    result = grade(nb, built["zip"], **FAST)
    assert result.possible == 3.0, "points possible must come from the autograder"
    assert result.score <= blank_score, (name, result.status, result.message,
                                         {q.name: q.output for q in result.questions.values()})
    assert _digest(guarded) == before, "the submission changed the grader's files"


def test_budget_attacks_get_their_status(built: dict[str, Path], tmp_path: Path) -> None:
    statuses = {}
    for name in ("blow-time-budget-after-credit", "blow-memory-budget-after-credit",
                 "exit-process-after-credit"):
        nb = attack_notebook(built, ATTACKS[name], tmp_path / f"{name}.ipynb")
        statuses[name] = grade(nb, built["zip"], **FAST).status
    assert statuses == {
        "blow-time-budget-after-credit": "timeout",
        "blow-memory-budget-after-credit": "out-of-memory",
        "exit-process-after-credit": "error",
    }


def test_hanging_question_scores_zero_and_others_are_still_graded(built: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    nb = attack_notebook(built, ["answer = 42\ndef square(x):\n    while True:\n        pass\n"],
                         tmp_path / "hang.ipynb")
    result = grade(nb, built["zip"], timeout_s=60, question_timeout_s=3)
    assert result.questions["q1"].score == 0.0
    assert "more than 3 CPU-seconds" in result.questions["q1"].output
    assert result.questions["q2"].score == 1.0


def test_lying_objects_are_refused_with_a_message(built: dict[str, Path], tmp_path: Path) -> None:
    nb = attack_notebook(built, ATTACKS["lying-float-subclass"], tmp_path / "liar.ipynb")
    result = grade(nb, built["zip"], **FAST)
    assert "Liar" in result.questions["q1"].output or "float" in result.questions["q1"].output
    assert result.score == 0.0


def _gradescope_root(built: dict[str, Path], submission: Path, root: Path) -> Path:
    for sub in ("source", "submission", "results"):
        (root / sub).mkdir(parents=True)
    with zipfile.ZipFile(built["zip"]) as zf:
        zf.extractall(root / "source")
    shutil.copy(submission, root / "submission" / "sec.ipynb")
    return root


QUICK_GRADESCOPE = {"tamper-tests-during-execution", "forge-results", "read-hidden-material",
                    "monkeypatch-grader-in-memory", "lying-eq-and-bool"}


@needs_root
@pytest.mark.parametrize("name", [
    pytest.param(n, marks=() if n in QUICK_GRADESCOPE else pytest.mark.slow) for n in sorted(ATTACKS)])
def test_attack_through_gradescope_entry_point(name: str, built: dict[str, Path],
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from functools import partial

    nb = attack_notebook(built, ATTACKS[name], tmp_path / f"{name}.ipynb")
    root = _gradescope_root(built, nb, tmp_path / "autograder")
    os.chmod(tmp_path, 0o755)
    # the entry point as Gradescope runs it, with this tiny assignment's short limits
    monkeypatch.setattr(gradescope, "grade", partial(gradescope.grade, **FAST))
    gradescope.main(root)
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] == 0.0, results
    graded = {t["name"]: t for t in results["tests"] if "max_score" in t and t["max_score"]}
    assert {t["extra_data"]["question"] for t in graded.values()} == {"q1", "q2"}
    assert all(t["score"] == 0.0 for t in graded.values())
    assert not (root / "source" / "tests" / "q9.py").exists()


@needs_root
def test_submission_runs_jailed_but_legitimate_work_still_works(built: dict[str, Path],
                                                                tmp_path: Path) -> None:
    """Imports, plots, files in its own folder and the public material keep working."""
    nb = attack_notebook(built, ['''
import torch, numpy as np, matplotlib.pyplot as plt
from sklearn.datasets import load_digits
X = load_digits().data
plt.plot(np.arange(3)); plt.savefig("plot.png")
open("public_data.txt").read()
answer = 42 if (len(X) == 1797 and open("plot.png", "rb").read(4) == b"\\x89PNG") else 0
def square(x):
    return float(torch.tensor(x) ** 2)
'''], tmp_path / "legit.ipynb")
    result = grade(nb, built["zip"], **FAST)
    assert (result.status, result.score) == ("graded", 3.0), (result.message, result.questions)
    assert {"uid", "network", "filesystem"} <= set(result.fingerprint["isolation"])


@pytest.mark.slow
def test_whole_corpus_through_regrade(built: dict[str, Path], tmp_path: Path) -> None:
    """One batch: every attack, the blank and the reference; it completes and no attack wins."""
    import csv

    from reprokit.regrade import regrade

    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copy(built["student"], subs / "blank.ipynb")
    shutil.copy(built["solution"], subs / "reference.ipynb")
    for name, cells in ATTACKS.items():
        attack_notebook(built, cells, subs / f"{name}.ipynb")
    summary = regrade(subs, built["zip"], jobs=2, out=tmp_path / "out", timeout_s=15,
                      memory_mb=2048)
    with open(summary.csv, newline="") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"blank", "reference", *ATTACKS}, "every submission gets a row"
    assert float(rows["reference"]["total"]) == 3.0
    blank = float(rows["blank"]["total"])
    winners = {n: rows[n]["total"] for n in ATTACKS if float(rows[n]["total"]) > blank}
    assert winners == {}, winners
    assert rows["blow-time-budget-after-credit"]["status"] == "timeout"
    assert rows["blow-memory-budget-after-credit"]["status"] == "out-of-memory"
