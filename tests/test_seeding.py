"""Behaviour of reprokit.seeding: reseeding repeats draws, `seeded` leaves no trace."""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
import torch

from reprokit import seeding
from reprokit.seeding import fingerprint, seed_everything, seeded


def draw_all() -> tuple[list[float], list[float], list[float]]:
    """A few draws from each of the three global generators."""
    return (
        [random.random() for _ in range(3)],
        np.random.rand(3).tolist(),
        torch.rand(3).tolist(),
    )


@pytest.fixture(autouse=True)
def _leave_no_trace():
    """These tests reseed on purpose; put the process back as it was afterwards."""
    state = seeding.snapshot()
    yield
    seeding.restore(state)


def test_reseeding_repeats_python_numpy_and_torch_draws():
    seed_everything(123)
    first = draw_all()
    seed_everything(123)
    assert draw_all() == first


def test_different_seeds_give_different_draws():
    seed_everything(1)
    a = draw_all()
    seed_everything(2)
    b = draw_all()
    assert all(x != y for x, y in zip(a, b, strict=True))


def test_returned_generator_is_seeded():
    g1 = seed_everything(7)
    g2 = seed_everything(7)
    assert g1.random(4).tolist() == g2.random(4).tolist()


def test_seed_everything_sets_determinism_flags_and_env():
    seed_everything(5, warn_only=False)
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.is_deterministic_algorithms_warn_only_enabled()
    assert torch.backends.cudnn.deterministic is True
    assert torch.backends.cudnn.benchmark is False
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == seeding.CUBLAS_WORKSPACE_CONFIG
    assert os.environ["PYTHONHASHSEED"] == "5"


def test_draws_after_seeded_block_equal_draws_without_it():
    seed_everything(99)
    expected = draw_all()

    seed_everything(99)
    with seeded(0):
        draw_all()  # consume draws inside the block
    assert draw_all() == expected


def test_seeded_block_draws_are_the_seeded_draws():
    seed_everything(0)
    reference = draw_all()
    seed_everything(31)
    with seeded(0) as rng:
        assert isinstance(rng, np.random.Generator)
        assert draw_all() == reference


def test_seeded_restores_flags_and_environment(monkeypatch):
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.benchmark = True
    with seeded(3):
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.benchmark is False
        assert os.environ["PYTHONHASHSEED"] == "3"
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.benchmark is True
    assert "PYTHONHASHSEED" not in os.environ
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_seeded_restores_state_when_the_block_raises():
    seed_everything(11)
    expected = draw_all()
    seed_everything(11)
    with pytest.raises(RuntimeError), seeded(0):
        draw_all()
        raise RuntimeError("boom")
    assert draw_all() == expected


def test_seeded_as_decorator_seeds_each_call_and_restores():
    @seeded(4)
    def sample():
        return torch.rand(2).tolist()

    seed_everything(50)
    expected_after = draw_all()
    seed_everything(50)
    first, second = sample(), sample()
    assert first == second
    assert draw_all() == expected_after


def test_nested_seeded_blocks_restore_in_order():
    seed_everything(8)
    expected = draw_all()
    seed_everything(8)
    outer = seeded(1)
    with outer:
        with seeded(2):
            random.random()
        with outer:  # re-entering the same object is fine
            np.random.rand()
    assert draw_all() == expected


@pytest.mark.parametrize("bad", [-1, 2**32, 1.5, "0", True])
def test_invalid_seed_is_refused_with_a_message(bad):
    with pytest.raises((TypeError, ValueError), match="seed"):
        seed_everything(bad)


def test_fingerprint_is_json_serialisable_and_names_the_seed():
    with seeded(17):
        fp = fingerprint(17)
    text = json.dumps(fp)
    back = json.loads(text)
    assert back["seed"] == 17
    assert back["torch"] == torch.__version__
    assert back["numpy"] == np.__version__
    assert back["deterministic_algorithms"] is True
    assert back["cudnn_benchmark"] is False
    assert back["device"] in ("cpu",) or back["device"].startswith("cuda")


def test_fingerprint_reports_flags_as_they_are_now():
    torch.use_deterministic_algorithms(False)
    assert fingerprint()["deterministic_algorithms"] is False
    assert fingerprint()["seed"] is None


def test_grading_profile_is_derandomized_without_database():
    from hypothesis import settings

    seeding.register_hypothesis_profiles()
    grading = settings.get_profile("reprokit-grading")
    assert grading.derandomize is True
    assert grading.database is None
    assert settings.get_profile("reprokit-dev").max_examples < settings.get_profile(
        "reprokit-ci"
    ).max_examples


@pytest.mark.parametrize("name", ["reprokit-dev", "reprokit-ci", "reprokit-grading"])
def test_profiles_skip_the_explain_phase_but_still_shrink(name):
    from hypothesis import Phase, settings

    seeding.register_hypothesis_profiles()
    phases = settings.get_profile(name).phases
    assert Phase.explain not in phases
    assert Phase.shrink in phases and Phase.generate in phases


def test_seeding_is_cheap_in_a_fresh_process():
    """torch's public switch imports TorchInductor (~1 s); a grading process must not pay it."""
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from reprokit.seeding import seeded\n"
        "with seeded(0):\n"
        "    assert torch.are_deterministic_algorithms_enabled()\n"
        "print('torch._inductor.config' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
