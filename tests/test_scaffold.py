"""``reprokit new``: the scaffold has the shape of every paper and refuses to overwrite one.

The quick tests read what ``reprokit new`` writes. The slow one builds it behind the full
gate (QA and mutation) in-process: 645 s of wall time measured on 2 cores at a load average
of 12 (each reference notebook takes under 4 CPU-seconds; the mutants and the level-4 chaff
candidates take the rest). ``tools/check_new_paper.py`` does the same from a wheel installed in a
fresh venv (the non-editable path an instructor takes).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from reprokit.build import LEVEL_NUMBERS, find_masters, read_master
from reprokit.claims import load_paper
from reprokit.cli import main
from reprokit.scaffold import ScaffoldError, new_paper, template_root

LEVELS = ["01-rerun", "02-retrain", "03-search", "04-validate", "05-reimplement", "06-mechanism"]


@pytest.fixture
def paper(tmp_path: Path) -> Path:
    return new_paper(tmp_path / "my-paper", title='A "quoted": title')


def test_new_writes_the_shape_of_a_paper_folder(paper: Path) -> None:
    for name in ("README.md", "paper.yaml", "authors/classifier.py", "weights/make_weights.py",
                 "weights/mlp.pt", "weights/manifest.json"):
        assert (paper / name).is_file(), name
    assert [p.stem for p in find_masters(paper)] == LEVELS
    assert len(LEVELS) == len(LEVEL_NUMBERS)
    chaffs = {p.stem for p in (paper / "chaffs").rglob("*.py")}
    wheats = {p.stem for p in (paper / "wheats").glob("*.py")}
    assert list((paper / "chaffs" / "public").glob("*.py")) and list((paper / "chaffs" / "hidden").glob("*.py"))
    twins = {w for w in wheats if w.startswith("twin_")}
    assert len(twins) == len(chaffs), f"every chaff needs a twin wheat: {sorted(chaffs)} vs {sorted(twins)}"
    assert wheats - twins, "at least one wheat independent of the chaffs"
    assert not list(paper.rglob("__pycache__"))


def test_new_fills_in_id_and_title_everywhere(paper: Path) -> None:
    texts = [p.read_text() for p in paper.rglob("*") if p.suffix in (".py", ".md", ".yaml", ".ipynb")]
    assert not any("{{PAPER_" in t for t in texts), "a placeholder was left unfilled"
    loaded = load_paper(paper / "paper.yaml")
    assert loaded.id == "my-paper" and loaded.title == 'A "quoted": title'
    assert {c.id for c in loaded.for_level(1)} == {"mlp-beats-chance"}
    for level in LEVELS:
        master = read_master(paper / f"{level}.ipynb")
        assert master.config["name"] == f"my-paper-{level}"
        graded = [q for q in master.questions if not q.manual]
        assert graded and all(q.public_tests and q.hidden_tests for q in graded), level
        nb = json.loads((paper / f"{level}.ipynb").read_text())
        assert not any(c.get("outputs") for c in nb["cells"]), f"{level}: outputs not cleared"
    assert any(q.manual for q in read_master(paper / "06-mechanism.ipynb").questions)


def test_new_refuses_a_non_empty_folder_and_accepts_an_empty_one(tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(ScaffoldError, match="not empty"):
        new_paper(taken)
    assert [p.name for p in taken.iterdir()] == ["notes.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (new_paper(empty) / "paper.yaml").is_file()


def test_new_rejects_an_id_otter_cannot_name(tmp_path: Path) -> None:
    with pytest.raises(ScaffoldError, match="--id"):
        new_paper(tmp_path / "has space")
    assert load_paper(new_paper(tmp_path / "has space", paper_id="ok-id") / "paper.yaml").id == "ok-id"


def test_cli_new_writes_the_folder_and_fails_on_a_non_empty_one(tmp_path: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(main, ["new", str(tmp_path / "p"), "--title", "T", "--id", "p-2024"])
    assert out.exit_code == 0, out.output
    assert "reprokit build" in out.output
    assert load_paper(tmp_path / "p" / "paper.yaml").id == "p-2024"
    again = runner.invoke(main, ["new", str(tmp_path / "p")])
    assert again.exit_code != 0 and "not empty" in again.output


def test_template_is_where_the_package_data_rule_finds_it() -> None:
    import tomllib

    root = template_root()
    rules = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = rules["tool"]["setuptools"]["package-data"]["reprokit"]
    assert "templates/paper/**/*" in patterns
    assert (root / "weights" / "mlp.pt").stat().st_size < 100_000  # small enough for every zip


@pytest.mark.slow
def test_new_then_build_is_green_behind_the_full_gate(tmp_path: Path) -> None:
    from reprokit.build import build

    paper = new_paper(tmp_path / "fresh-paper")
    result = build(paper, tmp_path / "dist", qa=True, mutation=True)
    assert result.ok, "\n".join(result.problems)
    for report in result.reports:
        assert report.reference_score == report.possible > 0
        assert report.blank_score <= 0.1 * report.possible
        assert report.mutation is not None and not report.mutation.problems
