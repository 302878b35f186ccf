"""Every level of every bundled paper, graded by Otter's own grading (`otter run`).

The reference solution (Otter Assign's solution notebook, built from the master: one
source of truth) must score 100 %, and the blank student notebook 10 % or less.
reprokit's own engine grades the same zips in the build's QA gate; this test proves
the tests are sound under Otter itself.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

ASSIGNMENTS = Path(__file__).resolve().parents[1] / "assignments"
LEVELS = ["01-rerun", "02-retrain", "03-search", "04-validate", "05-reimplement", "06-mechanism"]
#: Every paper folder; each must hold all six levels.
PAPERS = sorted(p.name for p in ASSIGNMENTS.iterdir() if (p / "paper.yaml").exists())
PAPER_LEVELS = [(paper, level) for paper in PAPERS for level in LEVELS]

pytestmark = pytest.mark.slow


def _assign(paper: str, level: str, out: Path) -> tuple[Path, Path, Path]:
    master = ASSIGNMENTS / paper / f"{level}.ipynb"
    assert master.exists(), f"{master} is missing"
    subprocess.run(["otter", "assign", str(master), str(out), "--no-run-tests"],
                   check=True, capture_output=True, text=True)
    (zip_path,) = (out / "autograder").glob("*-autograder_*.zip")
    return zip_path, out / "autograder" / f"{level}.ipynb", out / "student" / f"{level}.ipynb"


def _otter_run(notebook: Path, zip_path: Path, out: Path) -> dict:
    out.mkdir()
    proc = subprocess.run(["otter", "run", str(notebook), "-a", str(zip_path), "-o", str(out),
                           "--no-logo"], capture_output=True, text=True, timeout=600)
    results = out / "results.json"
    assert results.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(results.read_text())


def _score(results: dict) -> tuple[float, float, dict]:
    graded = {t["name"]: (t.get("score", 0.0), t["max_score"])
              for t in results["tests"] if t.get("max_score")}
    return (sum(s for s, _ in graded.values()), sum(m for _, m in graded.values()), graded)


@pytest.mark.parametrize(("paper", "level"), PAPER_LEVELS)
def test_reference_full_marks_and_blank_near_zero_under_otter(paper: str, level: str,
                                                              tmp_path: Path) -> None:
    zip_path, solution, student = _assign(paper, level, tmp_path / "build")
    t0 = time.monotonic()
    ref = _otter_run(solution, zip_path, tmp_path / "ref")
    ref_time = time.monotonic() - t0
    score, possible, per_q = _score(ref)
    assert possible > 0
    assert score == pytest.approx(possible), f"{level} reference: {per_q}\n" + json.dumps(ref)[:4000]
    blank = _otter_run(student, zip_path, tmp_path / "blank")
    b_score, b_possible, b_per_q = _score(blank)
    assert b_possible == pytest.approx(possible)
    assert b_score <= 0.10 * possible, f"{level} blank notebook earned points: {b_per_q}"
    print(f"{level}: reference {score:g}/{possible:g} in {ref_time:.1f} s (otter run), blank {b_score:g}")


@pytest.mark.parametrize("paper", PAPERS)
def test_bundled_paper_builds_six_zips_behind_a_green_qa_gate(paper: str, tmp_path: Path) -> None:
    """The README's main job: `reprokit build` on the paper, graded by reprokit's engine,
    behind the QA gate and the mutation gate."""
    from reprokit.build import build

    result = build(ASSIGNMENTS / paper, tmp_path / "dist")
    assert [r.level for r in result.reports] == LEVELS
    assert result.ok, "\n".join(p for r in result.reports for p in r.problems)
    for r in result.reports:
        assert r.possible > 0 and r.reference_score == r.possible, r.level
        assert r.blank_score <= 0.10 * r.possible, r.level
        assert 0 < r.reference_cpu_s <= r.time_budget_s, r.level
        assert 0 < r.zip_bytes < 20 * 2**20, f"{r.level}: {r.zip_bytes} bytes"
        zips = list((tmp_path / "dist" / paper / r.level).glob("*-autograder.zip"))
        assert len(zips) == 1 and zips[0].stat().st_size == r.zip_bytes, r.level


def _manual_questions(paper: str, level: str) -> int:
    import nbformat

    master = nbformat.read(ASSIGNMENTS / paper / f"{level}.ipynb", as_version=4)
    return sum("manual: true" in c.source for c in master.cells
               if c.cell_type == "raw" and c.source.startswith("# BEGIN QUESTION"))


def test_every_paper_has_a_hand_graded_interpretation_in_its_mechanism_level() -> None:
    for paper in PAPERS:
        assert _manual_questions(paper, "06-mechanism") >= 1, paper


@pytest.mark.parametrize(("paper", "level"), [
    (paper, level) for paper, level in PAPER_LEVELS
    if (ASSIGNMENTS / paper / f"{level}.ipynb").exists() and _manual_questions(paper, level)])
def test_solutions_notebook_holds_a_model_answer_for_each_hand_graded_question(
        paper: str, level: str, tmp_path: Path) -> None:
    """A TA grading by hand finds the model answer in the solutions notebook, and the
    student notebook does not hold it."""
    import nbformat

    _, solution, student = _assign(paper, level, tmp_path / "build")
    manual = _manual_questions(paper, level)
    marker = "**Model answer (for graders"
    answers = [c for c in nbformat.read(solution, as_version=4).cells
               if c.cell_type == "markdown" and c.source.startswith(marker)]
    assert len(answers) == manual and all(len(c.source) > 200 for c in answers), level
    assert not any(marker in c.source for c in nbformat.read(student, as_version=4).cells)
