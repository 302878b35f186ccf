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


def _measured(payload: bytes, test_acc: float):
    return lambda: ({"model.pt": payload}, {"models": {"model": {"test_acc": test_acc,
                                                                 "sha256": payload.hex()}}})


def test_check_accepts_other_bytes_when_every_measured_number_is_within_tolerance(
        tmp_path: Path, capsys) -> None:
    # another CPU type: other weights, the same behaviour the claims rest on
    make_weights_main(_measured(b"abc", 0.500), tmp_path, [])
    assert make_weights_main(_measured(b"abd", 0.505), tmp_path, ["--check"],
                             tolerances={"test_acc": 0.01}) == 0
    out = capsys.readouterr().out
    assert "differ bit-wise" in out and "agrees: model test_acc" in out
    # ... but not under --strict, nor without tolerances
    assert make_weights_main(_measured(b"abd", 0.505), tmp_path, ["--check", "--strict"],
                             tolerances={"test_acc": 0.01}) == 1
    assert make_weights_main(_measured(b"abd", 0.505), tmp_path, ["--check"]) == 1


def test_check_fails_naming_a_number_that_drifted_beyond_its_tolerance(tmp_path: Path,
                                                                      capsys) -> None:
    make_weights_main(_measured(b"abc", 0.500), tmp_path, [])
    assert make_weights_main(_measured(b"abd", 0.530), tmp_path, ["--check"],
                             tolerances={"test_acc": 0.01}) == 1
    assert "DRIFTED: model test_acc: shipped 0.5, rebuilt 0.53" in capsys.readouterr().out
    # a tolerance that names no recorded number cannot pass a changed file
    assert make_weights_main(_measured(b"abd", 0.5), tmp_path, ["--check"],
                             tolerances={"train_acc": 0.01}) == 1
