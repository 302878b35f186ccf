"""Level 4 end to end: every attack in the corpus scores what it must on each paper's bug hunt.

Each paper's level 04 is built once (no QA, about 10 s); each attack's cell replaces the
student's answer to q1 and the submission is graded by ``reprokit.grading.grade``, the
engine behind ``reprokit grade``, ``regrade`` and the Gradescope zip. Slow: about 5 min per
paper on two busy cores (each grade runs the notebook and 22 to 27 implementations).
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from bughunt_attacks.attacks import attacks_for, honest_for
from bughunt_attacks.measure import hidden_sources, leaked, submission
from reprokit import bughunt
from reprokit.grading import grade

ASSIGNMENTS = Path(__file__).resolve().parents[3] / "assignments"
PAPERS = ["zhang2017-random-labels", "ioffe2015-batchnorm"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def levels(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], dict[str, Path]]:
    """``levels(paper)``: that paper's level 04, built on first use."""
    from reprokit.build import build

    cache: dict[str, dict[str, Path]] = {}

    def get(paper: str) -> dict[str, Path]:
        if paper not in cache:
            out = tmp_path_factory.mktemp(f"{paper}-04")
            build(ASSIGNMENTS / paper, out, levels=["04"], qa=False)
            root = next(out.rglob("04-validate-autograder.zip")).parent
            cache[paper] = {"student": next((root / "student").glob("*.ipynb")),
                            "zip": next(root.glob("*-autograder.zip"))}
        return cache[paper]

    return get


def _grade(level: dict[str, Path], cell: str, dest: Path):
    nb = submission(level["student"], cell, dest)
    return grade(nb, level["zip"], timeout_s=1800, question_timeout_s=1500)


@pytest.mark.parametrize(("paper", "name"),
                         [(p, n) for p in PAPERS for n in sorted(attacks_for(p))])
def test_attack_scores_nothing_on_the_bug_hunt(paper: str, name: str, levels, tmp_path: Path) -> None:
    level = levels(paper)
    attack = attacks_for(paper)[name]
    shutil.rmtree("/dev/shm/reprokit-exfil", ignore_errors=True)
    result = _grade(level, attack["cell"], tmp_path / f"{name}.ipynb")
    assert result.status == "graded", result.message
    q1 = result.questions["q1"]
    assert q1.score == attack["after"], q1.output
    assert leaked(hidden_sources(level["zip"])) == [], "hidden source left outside the grader"
    shutil.rmtree("/dev/shm/reprokit-exfil", ignore_errors=True)


@pytest.mark.parametrize(("paper", "name"),
                         [(p, n) for p in PAPERS for n in sorted(honest_for(p))])
def test_honest_suite_written_differently_keeps_full_marks(paper: str, name: str, levels,
                                                           tmp_path: Path) -> None:
    result = _grade(levels(paper), honest_for(paper)[name], tmp_path / f"{name}.ipynb")
    q1 = result.questions["q1"]
    # full marks: the public point and one per hidden chaff (9 for Zhang, 8 for BatchNorm)
    hidden = len(list((ASSIGNMENTS / paper / "chaffs" / "hidden").glob("*.py")))
    assert (result.status, q1.score, q1.possible) == ("graded", 1.0 + hidden, 1.0 + hidden), q1.output


@pytest.mark.parametrize("paper", PAPERS)
def test_public_output_names_no_hidden_material(paper: str, levels, tmp_path: Path) -> None:
    """What a student sees of q1 (the public test's output) names public material only."""
    level = levels(paper)
    result = _grade(level, "def test_nothing(implementation):\n    assert False\n",
                    tmp_path / "rejects-everything.ipynb")
    shown = [t["output"] for t in result.to_gradescope(show_hidden=True)["tests"]]
    visible = "\n".join([*shown, result.questions["q1"].output])
    with zipfile.ZipFile(level["zip"]) as zf:
        hidden = [n for n in zf.namelist() if n.startswith(("files/wheats/", "files/chaffs/hidden/"))]
        zf.extractall(tmp_path / "ag", members=hidden)
    for name in hidden:
        title = bughunt.display_name(tmp_path / "ag" / name)
        assert title not in visible, f"the public output names hidden {name}"
    assert result.questions["q1"].score == 0.0


PINS_THE_AUTHORS = '''
def test_labels_are_exactly_the_authors(implementation):
    from authors import randlabels

    y = torch.arange(300) % 10
    expected = randlabels.corrupt_labels(y, 0.5, seed=5)
    assert torch.equal(implementation.corrupt_labels(y, 0.5, seed=5), expected), "other labels"
'''


def test_public_point_is_the_same_under_check_and_grade(levels, tmp_path: Path) -> None:
    """A suite that passes the authors' code and catches a public chaff but pins the authors'
    exact labels: the public point (what its text says) in both, no hidden point (Zhang's)."""
    from reprokit.check import check_notebook

    level = levels("zhang2017-random-labels")
    student_dir = tmp_path / "student"
    shutil.copytree(level["student"].parent, student_dir)
    nb = submission(level["student"], PINS_THE_AUTHORS, student_dir / level["student"].name)
    checked = next(c for c in check_notebook(nb, question="q1") if c.name == "q1")
    result = grade(nb, level["zip"], timeout_s=1800, question_timeout_s=1500)
    assert (checked.score, checked.possible) == (1.0, 1.0), checked.message
    assert result.questions["q1"].score == 1.0, result.questions["q1"].output
