"""The second paper's level-1 material: the shipped weights and training dynamics are the
files the manifest describes, and they agree with each other (quick: about 2 CPU-s)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

PAPER = Path(__file__).resolve().parents[1] / "assignments" / "ioffe2015-batchnorm"
WEIGHTS = PAPER / "weights"


def _authors():
    spec = importlib.util.spec_from_file_location("ioffe_batchnorm_authors", PAPER / "authors" / "batchnorm.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being made
    spec.loader.exec_module(module)
    return module


def test_shipped_files_match_the_manifests_sha256() -> None:
    manifest = json.loads((WEIGHTS / "manifest.json").read_text())
    assert set(manifest["files"]) == {"with-bn.pt", "without-bn.pt", "dynamics.json"}
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((WEIGHTS / name).read_bytes()).hexdigest() == digest, name


@pytest.mark.parametrize(("name", "batch_norm"), [("with-bn.pt", True), ("without-bn.pt", False)])
def test_dynamics_last_epoch_is_what_the_shipped_weights_give(name: str, batch_norm: bool) -> None:
    bn = _authors()
    dynamics = json.loads((WEIGHTS / "dynamics.json").read_text())["models"][name]
    manifest = json.loads((WEIGHTS / "manifest.json").read_text())["models"][name]
    model = bn.build_model(batch_norm)
    model.load_state_dict(torch.load(WEIGHTS / name, weights_only=True))
    split = bn.load_digits_split(seed=0)
    test_acc = bn.evaluate(model, split.X_test, split.y_test)
    assert test_acc == pytest.approx(dynamics["test_acc"][-1], abs=1e-6)
    assert test_acc == pytest.approx(manifest["test_acc"], abs=1e-6)
    assert bn.sigmoid_input_percentiles(model, split.X_test) == pytest.approx(dynamics["percentiles"][-1], abs=1e-4)
    assert len(dynamics["hist"]) == len(dynamics["epochs"]) == bn.DEFAULTS["epochs"]
    assert all(sum(layer) == len(split.y_test) for epoch in dynamics["hist"] for layer in epoch)
