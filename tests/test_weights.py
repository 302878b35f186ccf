"""reprokit.weights: the write-or-check command line every paper's make_weights.py shares."""

from __future__ import annotations

import json
from pathlib import Path

from reprokit.weights import make_weights_main


def _build(payload: bytes):
    return lambda: ({"model.pt": payload}, {"models": {"model": {"test_acc": 0.5}}, "seed": 0})


def test_writes_the_files_and_their_manifest(tmp_path: Path) -> None:
    assert make_weights_main(_build(b"abc"), tmp_path, []) == 0
    assert (tmp_path / "model.pt").read_bytes() == b"abc"
    assert json.loads((tmp_path / "manifest.json").read_text())["seed"] == 0


def test_check_passes_on_identical_bytes_and_writes_nothing(tmp_path: Path, capsys) -> None:
    make_weights_main(_build(b"abc"), tmp_path, [])
    (tmp_path / "manifest.json").unlink()
    assert make_weights_main(_build(b"abc"), tmp_path, ["--check"]) == 0
    assert not (tmp_path / "manifest.json").exists()
    assert "bit-identical" in capsys.readouterr().out


def test_check_fails_naming_a_changed_or_missing_file(tmp_path: Path, capsys) -> None:
    assert make_weights_main(_build(b"abc"), tmp_path, ["--check"]) == 1  # nothing shipped yet
    make_weights_main(_build(b"abc"), tmp_path, [])
    assert make_weights_main(_build(b"abd"), tmp_path, ["--check"]) == 1
    assert "model.pt" in capsys.readouterr().out
    assert (tmp_path / "model.pt").read_bytes() == b"abc"  # the shipped file is untouched
