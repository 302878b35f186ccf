"""Checks of the example MLP with reprokit's fixtures: run ``pytest --pyargs reprokit.examples``.

To point the same tests at another implementation (same names: MLP, train, accuracy,
random_labels) pass ``--reprokit-impl=path/to/your_model.py``.
"""

from __future__ import annotations

import pytest
import torch

# The module the `implementation` fixture loads unless --reprokit-impl says otherwise.
reprokit_implementation = "reprokit.examples.example_model"

SEEDS = range(5)
N_IMAGES = 300  # 225 to train, 75 to test: far fewer than the MLP's ~25k parameters


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Run this module (its module-scoped fixtures too) on one torch thread; restore after.

    These models are tiny: a second intra-op thread only waits for the first, and on a
    busy machine the two threads cost far more than they share (30 Adam steps measured
    13 s with 2 threads on a loaded 2-core machine, against 0.1 s with 1).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_training_is_repeatable_under_a_seed(implementation, seeded, tiny_digits):
    from reprokit.seeding import seeded as seeded_block

    def run() -> list[float]:
        with seeded_block(0):
            model = implementation.MLP()
            return implementation.train(model, tiny_digits.X_train[:64],
                                        tiny_digits.y_train[:64], steps=5)

    assert run() == run()


def test_outputs_are_finite_and_shaped(implementation, seeded, tiny_digits):
    model = implementation.MLP(n_in=tiny_digits.n_features)
    logits = model(tiny_digits.X_test)
    assert logits.shape == (len(tiny_digits.X_test), 10)
    assert torch.isfinite(logits).all(), "logits contain NaN or inf"


def test_invariants_hold(implementation, seeded, tiny_digits):
    invariants = pytest.importorskip("reprokit.invariants")
    model = implementation.MLP(n_in=tiny_digits.n_features).eval()
    x = tiny_digits.X_test[:8]
    invariants.check_outputs_finite(model, x)
    invariants.check_batch_independence(model, x)


def test_loss_decreases(implementation, seeded, tiny_digits):
    losses = implementation.train(implementation.MLP(), tiny_digits.X_train[:128],
                                  tiny_digits.y_train[:128], steps=30)
    assert losses[-1] < losses[0], f"loss went from {losses[0]:.3f} to {losses[-1]:.3f}"


def _random_label_runs(implementation) -> tuple[list[float], list[float]]:
    from reprokit.data import tiny_digits
    from reprokit.seeding import seeded as seeded_block

    train_acc, test_acc = [], []
    for seed in SEEDS:
        with seeded_block(seed):
            d = tiny_digits(n=N_IMAGES, seed=seed)
            y_random = implementation.random_labels(d.y_train, seed=seed)
            model = implementation.MLP()
            implementation.train(model, d.X_train, y_random, steps=150)
            train_acc.append(implementation.accuracy(model, d.X_train, y_random))
            test_acc.append(implementation.accuracy(model, d.X_test, d.y_test))
    return train_acc, test_acc


@pytest.fixture(scope="module")
def random_label_runs(implementation):
    """Train once per seed on random labels; (train accuracies, test accuracies)."""
    return _random_label_runs(implementation)


@pytest.mark.level(2)
@pytest.mark.claim("random-labels-memorised")
def test_random_labels_are_memorised(random_label_runs, record_claim):
    train_acc, _ = random_label_runs
    record_claim(train_acc)


@pytest.mark.level(2)
@pytest.mark.claim("random-labels-test-chance")
def test_random_labels_test_accuracy_is_chance(random_label_runs, record_claim):
    _, test_acc = random_label_runs
    record_claim(test_acc)


@pytest.mark.level(1)
@pytest.mark.claim("true-labels-generalise")
def test_true_labels_generalise(implementation, seeded, record_claim):
    from reprokit.data import tiny_digits

    d = tiny_digits(n=N_IMAGES)
    model = implementation.MLP()
    implementation.train(model, d.X_train, d.y_train, steps=150)
    record_claim(implementation.accuracy(model, d.X_test, d.y_test))
