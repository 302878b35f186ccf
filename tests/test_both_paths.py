"""Both grading paths agree on a corpus of student-like submissions, for every paper.

Each submission in ``tests/fixtures/corpus/<paper>/<level>/<name>.py`` is the level's reference
solution with a few code edits (see the corpus README). It is graded through reprokit's
engine (the student's code in a sandbox process, the tests in the grader), all of a level's
submissions in one ``reprokit regrade`` batch of two worker processes (the path a TA uses),
and through Otter's own ``otter run`` (everything in one kernel). Every question must get
the same score on both paths and the score set by hand before grading; correct-but-different
submissions must earn full marks and typical mistakes less.

Cost: a submission takes 10-40 CPU-s through reprokit's engine, 40-80 s wall through
``otter run``. The default run grades every submission through reprokit's engine and a
representative subset (``OTTER_SUBSET``) through ``otter run`` too;
``REPROKIT_CORPUS_ALL_OTTER=1`` grades every submission through both paths.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = ROOT / "assignments"
CORPUS = Path(__file__).resolve().parent / "fixtures" / "corpus"
#: Submissions also graded through ``otter run`` by default: per level, a correct one and a
#: mistake, as ``paper/level`` and name.
OTTER_SUBSET = {
    ("zhang2017-random-labels/05-reimplement", "correct_dataloader"),
    ("zhang2017-random-labels/05-reimplement", "wraps_the_authors"),
    ("zhang2017-random-labels/03-search", "correct_other_spelling"),
    ("zhang2017-random-labels/03-search", "tunes_on_rebuilt_test_split"),
    ("zhang2017-random-labels/02-retrain", "correct_comprehension"),
    ("zhang2017-random-labels/02-retrain", "invented_rows"),
    # BatchNorm: tests/test_levels.py already runs otter on each level's reference and
    # blank, so here one mistake per level, where the two paths are likeliest to differ.
    ("ioffe2015-batchnorm/01-rerun", "train_mode_evaluation"),
    ("ioffe2015-batchnorm/02-retrain", "invented_rows"),
    ("ioffe2015-batchnorm/03-search", "tunes_on_rebuilt_test_split"),
    ("ioffe2015-batchnorm/04-validate", "mistake_pins_the_authors_numbers"),
    ("ioffe2015-batchnorm/05-reimplement", "wraps_torch_batchnorm"),
    ("ioffe2015-batchnorm/06-mechanism", "gamma_beta_left_trainable"),
}


def _submissions() -> list[tuple[str, str]]:
    """``("paper/level", name)`` for every corpus file."""
    return sorted((f"{p.parent.parent.name}/{p.parent.name}", p.stem) for p in CORPUS.glob("*/*/*.py"))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Per level: the autograder zip and the reference solution, from ``otter assign``."""
    cache: dict = {}

    def get(level: str) -> tuple[Path, Path]:
        """``level`` is ``paper/level``, e.g. ``zhang2017-random-labels/02-retrain``."""
        if level not in cache:
            paper, name = level.split("/")
            out = tmp_path_factory.mktemp(name)
            subprocess.run(["otter", "assign", str(ASSIGNMENTS / paper / f"{name}.ipynb"), str(out),
                            "--no-run-tests"], check=True, capture_output=True, text=True)
            (zip_path,) = (out / "autograder").glob("*-autograder_*.zip")
            cache[level] = (zip_path, out / "autograder" / f"{name}.ipynb")
        return cache[level]

    return get


@pytest.fixture(scope="module")
def regraded(built, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Per level: every corpus submission graded in one ``reprokit regrade`` batch (two
    worker processes, as a TA would grade a class). Results by submission name."""
    from reprokit.regrade import regrade

    cache: dict = {}

    def get(level: str) -> dict:
        if level not in cache:
            zip_path, solution = built(level)
            root = tmp_path_factory.mktemp(level.replace("/", "-"))
            for lv, name in _submissions():
                if lv == level:
                    spec = runpy.run_path(str(CORPUS / level / f"{name}.py"))
                    (root / "in" / name).mkdir(parents=True)
                    make_submission(solution, spec["EDITS"],
                                    root / "in" / name / f"{level.split('/')[1]}.ipynb")
            summary = regrade(root / "in", zip_path, jobs=2, out=root / "out", timeout_s=1800)
            cache[level] = summary.results
        return cache[level]

    return get


def make_submission(solution: Path, edits: list[tuple[str, str]], dest: Path) -> Path:
    """The solution notebook with each ``(old, new)`` edit applied to exactly one code cell."""
    nb = nbformat.read(solution, as_version=4)
    for old, new in edits:
        cells = [c for c in nb.cells if c.cell_type == "code" and old in c.source]
        assert len(cells) == 1, f"edit target found in {len(cells)} code cells: {old[:80]!r}"
        assert cells[0].source.count(old) == 1, f"edit target occurs twice: {old[:80]!r}"
        cells[0].source = cells[0].source.replace(old, new)
    nbformat.write(nb, dest)
    return dest


def _otter_scores(notebook: Path, zip_path: Path, out: Path) -> dict[str, float]:
    out.mkdir()
    proc = subprocess.run(["otter", "run", str(notebook), "-a", str(zip_path), "-o", str(out),
                           "--no-logo"], capture_output=True, text=True, timeout=1200)
    results = out / "results.json"
    assert results.exists(), proc.stdout[-3000:] + proc.stderr[-3000:]
    tests = json.loads(results.read_text())["tests"]
    return {t["name"]: float(t.get("score") or 0.0) for t in tests if t.get("max_score")}


def test_corpus_has_five_submissions_per_level_of_each_kind_needed() -> None:
    by_level: dict[str, list[str]] = {}
    for level, name in _submissions():
        by_level.setdefault(level, []).append(
            runpy.run_path(str(CORPUS / level / f"{name}.py"))["KIND"])
    expected = [f"zhang2017-random-labels/{lv}" for lv in ("02-retrain", "03-search", "05-reimplement")]
    for paper in ASSIGNMENTS.iterdir():
        if paper.is_dir() and paper.name != "zhang2017-random-labels" and (paper / "paper.yaml").exists():
            # every later paper is born with a corpus for each of its levels
            expected += [f"{paper.name}/{nb.stem}" for nb in sorted(paper.glob("0[1-6]-*.ipynb"))]
    for level in expected:
        kinds = by_level.get(level, [])
        assert len(kinds) >= 5, f"{level}: {len(kinds)} submissions"
        assert "correct" in kinds and "mistake" in kinds, f"{level}: {kinds}"


@pytest.mark.parametrize(("level", "name"), _submissions())
def test_every_corpus_edit_applies_once_to_the_current_solution(level: str, name: str, built,
                                                                 tmp_path: Path) -> None:
    """Quick: the masters and the corpus have not drifted apart (about 3 s per level)."""
    spec = runpy.run_path(str(CORPUS / level / f"{name}.py"))
    assert spec["KIND"] in ("correct", "partial", "mistake")
    _, solution = built(level)
    out = make_submission(solution, spec["EDITS"], tmp_path / f"{level.split('/')[1]}.ipynb")
    assert nbformat.read(out, as_version=4) != nbformat.read(solution, as_version=4)
    assert set(spec["EXPECTED"]) <= {"q1", "q2", "q3", "q4", "q5"}


@pytest.mark.slow
@pytest.mark.parametrize(("level", "name"), _submissions())
def test_submission_scores_the_same_on_both_paths_and_as_set_by_hand(
        level: str, name: str, built, regraded, tmp_path: Path) -> None:
    spec = runpy.run_path(str(CORPUS / level / f"{name}.py"))
    zip_path, solution = built(level)
    result = regraded(level)[name]  # reprokit's engine, through the batch path
    assert result.status == "graded", result.message
    ours = {q.name: q.score for q in result.questions.values()}
    possible = {q.name: q.possible for q in result.questions.values()}
    detail = {q.name: q.output[-600:] for q in result.questions.values() if q.score < q.possible}
    assert ours == pytest.approx(spec["EXPECTED"]), f"reprokit grade: {ours}\n{detail}"
    if spec["KIND"] == "correct":
        assert ours == pytest.approx(possible), detail
    elif spec["KIND"] == "mistake":
        assert sum(ours.values()) < sum(possible.values())

    if (level, name) in OTTER_SUBSET or os.environ.get("REPROKIT_CORPUS_ALL_OTTER") == "1":
        notebook = make_submission(solution, spec["EDITS"], tmp_path / f"{level.split('/')[1]}.ipynb")
        theirs = _otter_scores(notebook, zip_path, tmp_path / "otter")
        assert theirs == pytest.approx(ours), f"otter run {theirs} != reprokit grade {ours}"
