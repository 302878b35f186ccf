"""``reprokit check``: run a notebook's public tests the way ``otter check`` does, as a table.

Students run this (or ``otter check``) next to their notebook: it executes the
notebook in a fresh kernel with Otter's own grading preprocessor, runs the tests in
``tests/`` beside it (the public ones: a student's folder holds no others), and prints
one row per question: passed or failed, points, and the message of the first failing
test. Unlike ``otter check`` it does not crash when no question has a public test, and
it exits 1 when a question fails, so it can gate a script.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import click


@dataclass
class QuestionCheck:
    """The public-test result of one question."""

    name: str
    passed: bool
    score: float
    possible: float
    message: str


def _failure_message(test_file: object) -> str:
    for tcr in getattr(test_file, "test_case_results", []):
        if tcr.passed:
            continue
        lines = [line.strip() for line in (tcr.message or "").strip().splitlines() if line.strip()]
        last = lines[-1] if lines else "failed"
        note = tcr.test_case.failure_message
        return f"{tcr.test_case.name}: {note + ' - ' if note else ''}{last}"
    return ""


def check_notebook(notebook: str | Path, *, question: str | None = None,
                   tests_dir: str | Path | None = None, seed: int | None = None) -> list[QuestionCheck]:
    """Execute ``notebook`` and run its tests; one :class:`QuestionCheck` per question.

    ``tests_dir`` defaults to ``tests/`` beside the notebook; ``question`` runs one test
    file (``tests/<question>.py``). Raises ``FileNotFoundError`` with a hint when the
    notebook or its tests are missing.
    """
    from otter.check.utils import list_test_files
    from otter.execute import grade_notebook

    notebook = Path(notebook).resolve()
    if not notebook.is_file():
        raise FileNotFoundError(f"{notebook} does not exist")
    tests = Path(tests_dir).resolve() if tests_dir else notebook.parent / "tests"
    if not tests.is_dir():
        raise FileNotFoundError(f"no tests folder at {tests}: keep the tests/ folder that came with "
                                "the notebook next to it, or pass --tests-dir")
    if question:
        path = tests / f"{question}.py"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in tests.glob("*.py"))) or "none"
            raise FileNotFoundError(f"no test file for question {question!r} (known: {known})")
        files = [str(path)]
    else:
        files = list_test_files(str(tests))
    if not files:
        raise FileNotFoundError(f"{tests} holds no test files")
    with contextlib.chdir(notebook.parent):
        results = grade_notebook(str(notebook), tests_glob=files, test_dir=str(tests),
                                 script=notebook.suffix == ".py", cwd=str(notebook.parent), seed=seed)
    out = []
    for name, tf in sorted(results.results.items()):
        passed = bool(tf.test_case_results) and tf.passed_all
        message = "all tests passed" if passed else (
            _failure_message(tf) or "not run (did a cell before it raise?)")
        out.append(QuestionCheck(name, passed, float(tf.score), float(tf.possible), message))
    return out


@click.command("check")
@click.argument("notebook", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-q", "--question", default=None, help="Check one question (e.g. q1); default: all.")
@click.option("-t", "--tests-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of test files (default: tests/ next to the notebook).")
@click.option("--seed", type=int, default=None, help="Seed NumPy and random before each cell.")
def check_command(notebook: Path, question: str | None, tests_dir: Path | None,
                  seed: int | None) -> None:
    """Run NOTEBOOK's public tests and print a table per question (exit 1 if any fails)."""
    from rich.console import Console
    from rich.table import Table

    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    try:
        checks = check_notebook(notebook, question=question, tests_dir=tests_dir, seed=seed)
    except FileNotFoundError as e:
        raise click.ClickException(str(e)) from None
    table = Table(title=f"{notebook.name}: public tests")
    for col in ("question", "result", "points", "message"):
        table.add_column(col)
    for c in checks:
        result = "[green]passed[/green]" if c.passed else "[red]failed[/red]"
        table.add_row(c.name, result, f"{c.score:g}/{c.possible:g}", c.message)
    console = Console()
    console.print(table)
    failed = [c.name for c in checks if not c.passed]
    if failed:
        console.print(f"{len(failed)} of {len(checks)} question(s) failed: {', '.join(failed)}")
        raise click.exceptions.Exit(1)
    console.print(f"All {len(checks)} question(s) passed their public tests.")
