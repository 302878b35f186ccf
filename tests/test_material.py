"""``material_path`` and ``material_module``: the grader's own copy of shipped code."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from reprokit.grading import _MATERIAL, material_module, material_path

SOURCE = '''"""A tiny 'authors' module."""
from dataclasses import dataclass

CALLS = []


@dataclass
class Point:
    x: int


def double(v):
    CALLS.append(v)
    return {factor} * v
'''


@pytest.fixture
def material(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "authors").mkdir()
    (tmp_path / "authors" / "tiny.py").write_text(SOURCE.format(factor=2))
    monkeypatch.chdir(tmp_path)  # outside grading, material is the current folder
    return tmp_path


def test_outside_grading_material_is_the_current_folder(material: Path) -> None:
    assert material_path("authors") == material / "authors"


def test_material_module_imports_under_a_private_name_once(material: Path) -> None:
    mod = material_module("authors/tiny.py")
    assert mod.double(3) == 6 and mod.Point(1).x == 1
    assert material_module("authors/tiny.py") is mod, "the same bytes are imported once"
    assert not mod.__name__.startswith("authors"), "a student's `import authors.tiny` is another module"
    assert sys.modules[mod.__name__] is mod


def test_changed_material_is_imported_again(material: Path) -> None:
    first = material_module("authors/tiny.py")
    (material / "authors" / "tiny.py").write_text(SOURCE.format(factor=3))
    second = material_module("authors/tiny.py")
    assert second is not first and second.double(3) == 9


def test_during_grading_material_is_the_trusted_copy(material: Path, tmp_path_factory) -> None:
    trusted = tmp_path_factory.mktemp("trusted")
    (trusted / "authors").mkdir()
    (trusted / "authors" / "tiny.py").write_text(SOURCE.format(factor=5))
    token = _MATERIAL.set(trusted)
    try:
        assert material_module("authors/tiny.py").double(1) == 5
    finally:
        _MATERIAL.reset(token)
    assert material_module("authors/tiny.py").double(1) == 2


def test_a_module_that_fails_to_import_leaves_nothing_behind(material: Path) -> None:
    (material / "authors" / "broken.py").write_text("raise ImportError('nope')\n")
    before = set(sys.modules)
    with pytest.raises(ImportError, match="nope"):
        material_module("authors/broken.py")
    assert set(sys.modules) == before
