"""The Zhang et al. (2017) authors' code (assignments/zhang2017-random-labels/authors):
label corruption as in Sec. 2, a leak-free split, bit-for-bit determinism, and the headline
result (random labels memorised, test accuracy at chance)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

PAPER = Path(__file__).resolve().parents[1] / "assignments" / "zhang2017-random-labels"


def _load_authors():
    """Import the paper's ``authors`` package under a unique name, so other papers' (or test
    fixtures') ``authors`` packages in the same pytest session cannot shadow it."""
    name = "zhang2017_authors"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, PAPER / "authors" / "__init__.py",
            submodule_search_locations=[str(PAPER / "authors")])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


randlabels = _load_authors().randlabels

K = randlabels.NUM_CLASSES
# Small, fast settings for quick tests; the slow tests use the paper-scale DEFAULTS.
QUICK = {"n_train": 200, "epochs": 3, "hidden": (32, 32), "batch_size": 64}


def _bound(n: int, q: float, sigmas: float = 4.5) -> float:
    """Largest accepted deviation of an observed fraction from q over n Bernoulli draws."""
    return sigmas * math.sqrt(q * (1 - q) / n) + 1.5 / n


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8, 1.0])
def test_corruption_changes_about_p_times_one_minus_one_over_k(p: float) -> None:
    y = torch.arange(20_000) % K
    out = randlabels.corrupt_labels(y, p, seed=3)
    changed = (out != y).float().mean().item()
    expected = p * (1 - 1 / K)
    assert abs(changed - expected) <= _bound(len(y), expected), (changed, expected)


def test_corruption_is_uniform_over_all_classes_at_p_one() -> None:
    y = torch.zeros(20_000, dtype=torch.long)
    counts = torch.bincount(randlabels.corrupt_labels(y, 1.0, seed=1), minlength=K).float() / len(y)
    assert counts.shape == (K,)
    assert (counts - 1 / K).abs().max().item() <= _bound(len(y), 1 / K)


def test_corruption_at_p_zero_returns_an_equal_copy() -> None:
    y = torch.randint(0, K, (500,), generator=torch.Generator().manual_seed(0))
    out = randlabels.corrupt_labels(y, 0.0, seed=5)
    assert torch.equal(out, y)
    out[0] = (out[0] + 1) % K
    assert not torch.equal(out, y), "corrupt_labels returned the input tensor itself, not a copy"


def test_corruption_keeps_labels_in_range_dtype_and_shape() -> None:
    y = torch.arange(1000) % K
    out = randlabels.corrupt_labels(y, 0.7, seed=2)
    assert out.shape == y.shape and out.dtype == torch.int64
    assert out.min().item() >= 0 and out.max().item() <= K - 1


def test_corruption_is_seeded_and_leaves_the_global_rng_alone() -> None:
    y = torch.arange(2000) % K
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    a = randlabels.corrupt_labels(y, 0.5, seed=7)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(a, randlabels.corrupt_labels(y, 0.5, seed=7))
    assert not torch.equal(a, randlabels.corrupt_labels(y, 0.5, seed=8))


def test_corruption_rejects_a_p_outside_zero_one() -> None:
    with pytest.raises(ValueError, match="probability"):
        randlabels.corrupt_labels(torch.zeros(3, dtype=torch.long), 1.5, seed=0)


def test_corruption_passes_reprokits_property_check() -> None:
    from reprokit.properties import check_label_corruption

    check_label_corruption(randlabels.corrupt_labels, num_classes=K, max_examples=10)


def test_make_data_corrupts_train_labels_once_and_never_test_labels() -> None:
    clean = randlabels.make_data(0.0, seed=4)
    noisy = randlabels.make_data(1.0, seed=4)
    assert torch.equal(noisy.y_test, clean.y_test)
    assert torch.equal(noisy.X_test, clean.X_test)
    assert torch.equal(noisy.y_train_clean, clean.y_train)
    changed = (noisy.y_train != noisy.y_train_clean).float().mean().item()
    assert abs(changed - 0.9) <= _bound(len(noisy.y_train), 0.9)
    assert torch.equal(noisy.y_train, randlabels.make_data(1.0, seed=4).y_train)


def test_split_sizes_and_disjoint_images() -> None:
    s = randlabels.load_digits_split(seed=0, test_fraction=0.25)
    assert len(s.y_train) + len(s.y_test) == 1797
    assert len(s.y_test) == round(0.25 * 1797)
    assert s.X_train.dtype == torch.float32 and s.y_train.dtype == torch.int64
    small = randlabels.load_digits_split(seed=0, n_train=100)
    assert len(small.y_train) == 100 and len(small.y_test) == len(s.y_test)
    train_rows = {tuple(r) for r in s.X_train.tolist()}
    assert not any(tuple(r) in train_rows for r in s.X_test.tolist()), "a test image is also in train"


def test_standardisation_uses_training_statistics_only() -> None:
    import numpy as np
    from sklearn.datasets import load_digits

    seed, n_train = 1, 300
    s = randlabels.load_digits_split(seed=seed, n_train=n_train)
    raw = torch.tensor(load_digits().data, dtype=torch.float32)
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(raw)))
    test_idx, train_idx = order[: len(s.y_test)], order[len(s.y_test):][:n_train]
    mean, std = raw[train_idx].mean(dim=0), raw[train_idx].std(dim=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    assert torch.allclose(s.X_train, (raw[train_idx] - mean) / std, atol=1e-5)
    assert torch.allclose(s.mean, mean) and torch.allclose(s.std, std)
    assert torch.allclose(s.X_test, (raw[test_idx] - mean) / std, atol=1e-5), (
        "test features are not standardised with the training mean and std")
    leaky = (raw[test_idx] - raw[test_idx].mean(dim=0)) / raw[test_idx].std(dim=0).clamp_min(1e-6)
    assert not torch.allclose(s.X_test, leaky, atol=1e-3)


def test_mlp_shapes_and_dropout_layers() -> None:
    model = randlabels.MLP(hidden=(16, 8), dropout=0.5)
    assert model(torch.zeros(5, 64)).shape == (5, K)
    assert sum(isinstance(m, torch.nn.Dropout) for m in model.modules()) == 2
    assert not any(isinstance(m, torch.nn.Dropout) for m in randlabels.MLP(hidden=(16,)).modules())


def test_evaluate_restores_training_mode_and_counts_correct_predictions() -> None:
    model = randlabels.MLP(hidden=(8,))
    model.train()
    X = torch.randn(50, 64, generator=torch.Generator().manual_seed(0))
    pred = model(X).argmax(dim=1)
    y = pred.clone()
    y[:10] = (y[:10] + 1) % K
    assert randlabels.evaluate(model, X, y) == pytest.approx(0.8)
    assert model.training
    model.eval()
    randlabels.evaluate(model, X, y)
    assert not model.training


def test_epochs_to_fit_is_the_first_one_based_epoch_at_threshold() -> None:
    assert randlabels.epochs_to_fit({"train_acc": [0.2, 0.9, 1.0, 0.99, 1.0]}) == 3
    assert randlabels.epochs_to_fit({"train_acc": [0.2, 0.9, 0.95]}, threshold=0.9) == 2
    assert randlabels.epochs_to_fit({"train_acc": [0.2, 0.9]}) is None


def test_same_seed_gives_bit_identical_runs() -> None:
    a = randlabels.run_experiment(1.0, seed=3, **QUICK)
    b = randlabels.run_experiment(1.0, seed=3, **QUICK)
    assert a["history"] == b["history"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    c = randlabels.run_experiment(1.0, seed=4, **QUICK)
    assert c["history"] != a["history"]


def test_dropout_runs_are_deterministic_and_leave_the_global_rng_alone() -> None:
    torch.manual_seed(0)
    before = torch.random.get_rng_state()
    a = randlabels.run_experiment(0.5, seed=1, dropout=0.3, **QUICK)
    assert torch.equal(torch.random.get_rng_state(), before)
    b = randlabels.run_experiment(0.5, seed=1, dropout=0.3, **QUICK)
    assert a["history"] == b["history"]


def test_train_history_has_one_entry_per_epoch_and_learns_true_labels() -> None:
    data = randlabels.make_data(0.0, seed=0, n_train=300)
    torch.manual_seed(0)
    model = randlabels.MLP(hidden=(64,))
    h = randlabels.train(model, data, epochs=8, lr=3e-3, batch_size=64)
    assert [len(h[k]) for k in ("loss", "train_acc", "test_acc")] == [8, 8, 8]
    assert h["loss"][-1] < h["loss"][0]
    assert h["test_acc"][-1] > 0.8
    assert randlabels.train(model, data, epochs=1, lr=1e-3, batch_size=64, log_test=False)["test_acc"] == []


def test_run_experiment_rejects_unknown_settings() -> None:
    with pytest.raises(TypeError, match="unknown setting"):
        randlabels.run_experiment(1.0, seed=0, learning_rate=0.1)


@pytest.mark.slow
def test_random_labels_are_memorised_and_test_accuracy_is_at_chance() -> None:
    """Table 1 / Fig. 1a at digits scale, with the authors' DEFAULTS."""
    out = randlabels.run_experiment(1.0, seed=0)
    assert out["train_acc"] == 1.0
    assert out["epochs_to_fit"] is not None
    n_test = round(randlabels.DEFAULTS["test_fraction"] * 1797)
    assert abs(out["test_acc"] - 1 / K) <= _bound(n_test, 1 / K), out["test_acc"]


@pytest.mark.slow
def test_true_labels_fit_faster_and_generalise() -> None:
    """Fig. 1a: true labels fit in fewer epochs than random ones (claim c)."""
    true = randlabels.run_experiment(0.0, seed=0)
    rand = randlabels.run_experiment(1.0, seed=0)
    assert true["test_acc"] > 0.9
    assert true["epochs_to_fit"] is not None and rand["epochs_to_fit"] is not None
    assert true["epochs_to_fit"] < rand["epochs_to_fit"]
