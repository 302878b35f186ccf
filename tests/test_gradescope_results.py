"""What Gradescope receives: public and hidden parts, loud failures, the wrong assignment, the layout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from reprokit import gradescope
from reprokit.grading import (
    Autograder,
    GradeResult,
    QuestionScore,
    _prepare_workdir,
    grade,
    notebook_assignment_name,
    question_score,
    wrong_assignment,
)

TINY = Path(__file__).parent / "fixtures" / "tiny-paper"

TEST_FILE = '''
from otter.test_files import test_case

OK_FORMAT = False
name = "q3"
points = 3

@test_case(points=1, hidden=False)
def test_public_shape(x):
    assert x == 1, "x should be 1 (public check)"

@test_case(points=2, hidden=True)
def test_hidden_value(x):
    assert x == 2, "SECRET hidden expectation"
'''


def _run_test_file(tmp_path: Path, x: int):
    from otter.test_files.exception_test import ExceptionTestFile

    path = tmp_path / "q3.py"
    path.write_text(TEST_FILE)
    tf = ExceptionTestFile.from_file(str(path))
    tf.run({"x": x})
    return tf


def test_question_score_keeps_the_public_cases_share_and_messages(tmp_path: Path) -> None:
    q = question_score(_run_test_file(tmp_path, x=1))  # public passes, hidden fails
    assert (q.score, q.possible, q.public_score, q.public_possible) == (1.0, 3.0, 1.0, 1.0)
    assert "SECRET" not in q.public_output and "SECRET" in q.hidden_output
    q = question_score(_run_test_file(tmp_path, x=5))  # both fail
    assert (q.score, q.public_score) == (0.0, 0.0)
    assert "x should be 1" in q.public_output


def test_results_json_shows_public_part_now_and_hidden_part_after_the_due_date(tmp_path: Path) -> None:
    q = question_score(_run_test_file(tmp_path, x=1))
    result = GradeResult("graded", {"q3": q}, q.score, q.possible, 1.5,
                         fingerprint={"isolation": ["uid", "network"]})
    tests = {t["name"]: t for t in result.to_gradescope()["tests"]}
    public, hidden = tests["q3: public tests"], tests["q3: hidden tests"]
    assert (public["visibility"], public["score"], public["max_score"]) == ("visible", 1.0, 1.0)
    assert (hidden["visibility"], hidden["score"], hidden["max_score"]) == ("after_due_date", 0.0, 2.0)
    assert "SECRET" not in hidden["output"]  # show_hidden off: the score only
    shown = {t["name"]: t for t in result.to_gradescope(show_hidden=True)["tests"]}
    assert "SECRET" in shown["q3: hidden tests"]["output"]
    instructors = tests["Grading environment (instructors only)"]
    assert instructors["visibility"] == "hidden" and instructors["max_score"] == 0
    assert "isolation layers: uid, network" in instructors["output"]


def test_a_submission_fault_is_a_visible_status_and_zero(tmp_path: Path) -> None:
    zero = QuestionScore("q1", 0.0, 2.0, "not graded", True, 0.0, 1.0, "not graded")
    payload = GradeResult("timeout", {"q1": zero}, 0.0, 2.0, 9.0, "ran past 240 s").to_gradescope()
    assert payload["score"] == 0.0
    first = payload["tests"][0]
    assert first["name"] == "Submission: timeout" and first["visibility"] == "visible"
    assert "ran past 240 s" in first["output"]


def test_wrong_assignment_results_carry_no_score() -> None:
    result = GradeResult("wrong-assignment", {}, 0.0, 0.0, 0.1, "this notebook belongs to 'a'")
    payload = result.to_gradescope()
    assert "score" not in payload and all("score" not in t for t in payload["tests"])
    assert "belongs to 'a'" in payload["output"]
    assert payload["tests"][0]["visibility"] == "visible"


def test_an_exception_in_the_grader_exits_1_with_no_grade(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for sub in ("source", "submission", "results"):
        (tmp_path / sub).mkdir()

    def broken(*args, **kwargs):
        raise BrokenPipeError(32, "Broken pipe (the sandbox's pipe, not the student's doing)")

    monkeypatch.setattr(gradescope, "grade", broken)
    assert gradescope.main(tmp_path) == gradescope.AUTOGRADER_FAILED
    results = json.loads((tmp_path / "results" / "results.json").read_text())
    assert "score" not in results and all("score" not in t for t in results["tests"])
    assert results["output"] == gradescope.STAFF_NOTICE
    details = [t for t in results["tests"] if t["visibility"] == "hidden"]
    assert len(details) == 1 and "BrokenPipeError" in details[0]["output"]
    assert all(t["visibility"] in ("visible", "hidden") for t in results["tests"])


def _named(tmp_path: Path, name: str | None) -> Path:
    nb = {"cells": [], "metadata": {"otter": {"assignment_name": name}} if name else {},
          "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / f"{name or 'unnamed'}.ipynb"
    path.write_text(json.dumps(nb))
    return path


def test_wrong_assignment_compares_otter_assignment_names(tmp_path: Path) -> None:
    ag = Autograder(tmp_path, {"assignment_name": "zhang2017-05-reimplement"}, {}, [])
    assert notebook_assignment_name(_named(tmp_path, "zhang2017-01-rerun")) == "zhang2017-01-rerun"
    why = wrong_assignment(_named(tmp_path, "zhang2017-01-rerun"), ag)
    assert "'zhang2017-01-rerun'" in why and "'zhang2017-05-reimplement'" in why
    assert wrong_assignment(_named(tmp_path, "zhang2017-05-reimplement"), ag) == ""
    assert wrong_assignment(_named(tmp_path, None), ag) == ""  # metadata lost: graded


def test_the_wrong_levels_zip_refuses_the_notebook(tmp_path: Path) -> None:
    from reprokit.build import build

    wheel = tmp_path / "reprokit-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"stand-in")
    built = build(TINY, tmp_path / "dist", levels=["01", "04"], qa=False, wheel=wheel)
    level01, level04 = built.levels
    result = grade(level01.solution, level04.zipfile, timeout_s=600)
    assert result.status == "wrong-assignment", result.message
    assert "'01-rerun'" in result.message and "'04-validate'" in result.message
    assert result.score == 0 and all(q.output.startswith("not graded") for q in result.questions.values())


def test_nested_public_files_keep_their_relative_paths(tmp_path: Path) -> None:
    files = tmp_path / "ag" / "files"
    (files / "chaffs" / "public").mkdir(parents=True)
    (files / "chaffs" / "public" / "seed_ignored.py").write_text("# a public chaff\n")
    (files / "authors").mkdir()
    (files / "authors" / "model.py").write_text("# the authors' code\n")
    (files / "chaffs" / "hidden").mkdir()
    (files / "chaffs" / "hidden" / "secret.py").write_text("# hidden\n")
    ag = Autograder(tmp_path / "ag", {}, {"public_files": ["authors", "chaffs/public/seed_ignored.py"]}, [])
    notebook = tmp_path / "sub.ipynb"
    notebook.write_text("{}")
    (tmp_path / "base").mkdir()
    work = _prepare_workdir(tmp_path / "base", notebook, ag, None)
    found = sorted(p.relative_to(work).as_posix() for p in work.rglob("*") if p.is_file())
    assert found == ["authors/model.py", "chaffs/public/seed_ignored.py", "sub.ipynb"]
    shutil.rmtree(tmp_path / "base")
