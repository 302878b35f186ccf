"""``reprokit build``: bad masters are named, the layout and zip are right, the QA gate judges."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner

from reprokit.build import (
    BuildError,
    build,
    build_command,
    find_masters,
    read_master,
    scan_for_leaks,
    write_zip,
)

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "tiny-paper"
BROKEN = FIXTURES / "broken-masters"
LEVELS = ["01", "04"]


@pytest.fixture
def fake_wheel(tmp_path: Path) -> Path:
    """A stand-in wheel, so quick tests skip ``pip wheel``."""
    wheel = tmp_path / "wheel" / "reprokit-0.1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    wheel.write_bytes(b"not a real wheel")
    return wheel


@pytest.fixture
def built(tmp_path: Path, fake_wheel: Path):
    """The tiny paper built without the QA gate."""
    return build(TINY, tmp_path / "dist", levels=LEVELS, qa=False, wheel=fake_wheel)


def test_malformed_config_yaml_names_notebook_and_cell() -> None:
    with pytest.raises(BuildError) as err:
        read_master(BROKEN / "bad-yaml" / "01-rerun.ipynb")
    assert err.value.cell == 0
    assert "01-rerun.ipynb" in str(err.value.message) and "YAML" in err.value.message
    assert "line 4" in err.value.message  # where in the cell


def test_question_without_tests_names_cell_and_question() -> None:
    with pytest.raises(BuildError) as err:
        read_master(BROKEN / "no-tests" / "01-rerun.ipynb")
    assert (err.value.cell, err.value.question) == (3, "q1")
    assert "no tests" in err.value.message


def test_missing_levels_are_named() -> None:
    with pytest.raises(BuildError) as err:
        find_masters(TINY)
    for number in ("02", "03", "05", "06"):
        assert number in err.value.message
    assert "--level" in err.value.message


def test_level_option_picks_levels_by_number_or_name() -> None:
    assert [p.name for p in find_masters(TINY, ["04"])] == ["04-validate.ipynb"]
    assert [p.name for p in find_masters(TINY, ["01-rerun", "04"])] == ["01-rerun.ipynb",
                                                                     "04-validate.ipynb"]
    with pytest.raises(BuildError, match="03"):
        find_masters(TINY, ["03"])


def test_cli_reports_missing_level_and_fails(tmp_path: Path) -> None:
    result = CliRunner().invoke(build_command, [str(TINY), "-o", str(tmp_path)])
    assert result.exit_code != 0
    assert "02" in result.output and "missing" in result.output


def test_master_lists_public_and_hidden_material() -> None:
    master = read_master(TINY / "04-validate.ipynb")
    assert master.public_files == ["authors", "paper.yaml"]
    assert master.hidden_files == ["wheats", "chaffs/hidden"]
    (q,) = master.questions
    assert (q.name, q.tests, len(q.hidden_tests)) == ("q1", 2, 1)


def test_build_layout_student_solution_and_zip(built) -> None:
    level = built.out_dir / "04-validate"
    assert (level / "student" / "04-validate.ipynb").is_file()
    assert (level / "student" / "tests" / "q1.py").is_file()
    assert (level / "student" / "authors" / "stats.py").is_file()
    assert not (level / "student" / "chaffs").exists() and not (level / "student" / "wheats").exists()
    assert (level / "solutions" / "04-validate.ipynb").is_file()
    with zipfile.ZipFile(level / "04-validate-autograder.zip") as zf:
        names = set(zf.namelist())
        assert {"files/chaffs/hidden/off_by_one.py", "files/wheats/pairwise.py",
                "files/authors/stats.py", "tests/q1.py", "reprokit.json", "setup.sh",
                "run_autograder", "locks/py3.11.txt", "reprokit-0.1.0-py3-none-any.whl"} <= names
        assert not {"environment.yml", "run_otter.py"} & names
        assert "mamba" not in zf.read("setup.sh").decode()
        assert "def test_my_mean_matches_wheat_not_chaff" in zf.read("tests/q1.py").decode()


def test_manifest_carries_files_budget_and_seed(built) -> None:
    with zipfile.ZipFile(built.out_dir / "04-validate" / "04-validate-autograder.zip") as zf:
        manifest = json.loads(zf.read("reprokit.json"))
    assert manifest["paper"] == "tiny-paper" and manifest["level"] == "04-validate"
    assert manifest["notebook"] == "04-validate.ipynb"
    assert manifest["public_files"] == ["authors", "paper.yaml"]
    assert manifest["hidden_files"] == ["wheats", "chaffs/hidden"]
    assert manifest["time_budget_s"] == 30.0  # from paper.yaml
    assert manifest["seed"] == 42  # from the master's generate config


def test_student_tests_hold_no_hidden_test(built) -> None:
    student_tests = (built.out_dir / "04-validate" / "student" / "tests" / "q1.py").read_text()
    assert "test_my_mean_public" in student_tests
    assert "wheat" not in student_tests


def test_rebuild_gives_identical_zip_bytes(tmp_path: Path, fake_wheel: Path) -> None:
    first = build(TINY, tmp_path / "a", levels=["01"], qa=False, wheel=fake_wheel)
    second = build(TINY, tmp_path / "b", levels=["01"], qa=False, wheel=fake_wheel)
    assert first.levels[0].zipfile.read_bytes() == second.levels[0].zipfile.read_bytes()


def test_write_zip_is_independent_of_entry_order(tmp_path: Path) -> None:
    a = {"b.txt": b"2", "a.txt": b"1", "setup.sh": b"#!/bin/bash\n"}
    write_zip(tmp_path / "x.zip", a)
    write_zip(tmp_path / "y.zip", dict(reversed(list(a.items()))))
    assert (tmp_path / "x.zip").read_bytes() == (tmp_path / "y.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "x.zip") as zf:
        assert (zf.getinfo("setup.sh").external_attr >> 16) & 0o111  # executable
        assert zf.getinfo("a.txt").date_time == (1980, 1, 1, 0, 0, 0)


def test_leak_scan_passes_a_clean_build(built) -> None:
    for lb in built.levels:
        assert scan_for_leaks(lb, TINY) == []


def test_leak_scan_flags_chaff_source_in_student_folder(built) -> None:
    lb = built.levels[1]
    chaff = (TINY / "chaffs" / "hidden" / "off_by_one.py").read_text()
    (lb.student.parent / "notes.py").write_text("# copied by mistake\n" + chaff)
    problems = scan_for_leaks(lb, TINY)
    assert any("chaffs/hidden/off_by_one.py" in p and "notes.py" in p for p in problems)


def test_leak_scan_flags_hidden_test_in_student_notebook(built) -> None:
    lb = built.levels[0]
    nb = nbformat.read(lb.student, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "def test_result_value_tiny_hidden_marker(result):\n    pass"))
    nbformat.write(nb, lb.student)
    problems = scan_for_leaks(lb, TINY)
    assert any("test_result_value_tiny_hidden_marker" in p for p in problems)


def test_leak_scan_flags_hidden_file_copied_to_student(built) -> None:
    lb = built.levels[1]
    dest = lb.student.parent / "wheats"
    shutil.copytree(TINY / "wheats", dest)
    assert any("wheats/pairwise.py" in p for p in scan_for_leaks(lb, TINY))


def test_solutions_dir_receives_reference_solutions(tmp_path: Path, fake_wheel: Path) -> None:
    build(TINY, tmp_path / "dist", levels=["01"], qa=False, wheel=fake_wheel,
          solutions_dir=tmp_path / "refs")
    nb = nbformat.read(tmp_path / "refs" / "01-rerun.ipynb", as_version=4)
    assert any("mean([1, 2, 3, 6])" in c.source for c in nb.cells if c.cell_type == "code")


@pytest.mark.slow
def test_qa_gate_passes_tiny_paper_with_full_reference_and_blank_zero(tmp_path: Path,
                                                                      fake_wheel: Path) -> None:
    result = build(TINY, tmp_path / "dist", levels=LEVELS, wheel=fake_wheel)
    assert result.ok, result.problems
    for report in result.reports:
        assert report.possible == 2
        assert report.reference_score == report.possible
        assert report.blank_score == 0
        assert 0 < report.reference_cpu_s <= report.time_budget_s
        assert report.verdict == "ok"


@pytest.mark.slow
def test_qa_gate_fails_when_reference_does_not_score_full(tmp_path: Path, fake_wheel: Path) -> None:
    paper = tmp_path / "paper"
    shutil.copytree(TINY, paper)
    nb = nbformat.read(paper / "01-rerun.ipynb", as_version=4)
    for cell in nb.cells:  # a reference answer the hidden test rejects
        cell.source = cell.source.replace("result = mean([1, 2, 3, 6])", "result = mean([1, 2, 3])")
    nbformat.write(nb, paper / "01-rerun.ipynb")
    result = build(paper, tmp_path / "dist", levels=["01"], wheel=fake_wheel)
    assert not result.ok
    assert any("01-rerun, question q1" in p and "1/2" in p for p in result.problems)


@pytest.mark.slow
def test_solution_that_raises_names_cell_and_question(tmp_path: Path, fake_wheel: Path) -> None:
    with pytest.raises(BuildError) as err:
        build(BROKEN / "raises", tmp_path / "dist", levels=["01"], wheel=fake_wheel)
    assert (err.value.cell, err.value.question) == (5, "q1")
    assert "ZeroDivisionError" in err.value.message


@pytest.mark.slow
def test_built_zip_still_grades_under_otter_run(built, tmp_path: Path) -> None:
    """The rewritten zip keeps Otter's tests/config/files layout, so `otter run` still works."""
    import subprocess
    import sys

    lb = built.levels[1]  # the level whose hidden test reads chaffs/hidden from cwd
    out = tmp_path / "otter-run"
    out.mkdir()
    proc = subprocess.run([sys.executable, "-m", "otter", "run", str(lb.solution), "-a",
                           str(lb.zipfile), "-o", str(out), "--no-logo"],
                          capture_output=True, text=True, timeout=300)
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
    scores = {t["name"]: t.get("score") for t in results.get("tests", []) if t.get("max_score")}
    assert scores == {"q1": 2.0}, proc.stdout[-2000:] + proc.stderr[-2000:]


def test_leak_scan_flags_chaff_docstring_but_not_shared_api_lines(built) -> None:
    lb = built.levels[1]
    notes = lb.student.parent / "notes.md"
    notes.write_text("def mean(xs):\n    return sum(xs) / len(xs)\n")  # the authors' API, public anyway
    assert scan_for_leaks(lb, TINY) == []
    notes.write_text("Hint: A planted bug: CHAFF_TINY_MARKER divides by n - 1.\n")
    assert any("chaffs/hidden/off_by_one.py" in p for p in scan_for_leaks(lb, TINY))
