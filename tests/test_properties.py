"""reprokit.properties: a correct label corruption passes, each realistic bug is caught with a
message that names the bug; the agreement, determinism and trend checks fail when they should."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from reprokit.properties import (
    PropertyError,
    binomial_bound,
    changed_fraction,
    check_agrees,
    check_deterministic,
    check_label_corruption,
    check_monotone_trend,
    spearman,
)

K = 10


def correct(y, p, seed):
    """Sec. 2 of Zhang et al. (2017): each label, with probability p, becomes a uniform class."""
    y = torch.as_tensor(y, dtype=torch.long)
    g = torch.Generator().manual_seed(int(seed))
    replace = torch.rand(y.shape, generator=g) < p
    random = torch.randint(0, K, y.shape, generator=g)
    return torch.where(replace, random, y)


def forced_different(y, p, seed):
    """Bug: a replaced label always moves to another class (a shift by 1..K-1)."""
    y = torch.as_tensor(y, dtype=torch.long)
    g = torch.Generator().manual_seed(int(seed))
    replace = torch.rand(y.shape, generator=g) < p
    shift = torch.randint(1, K, y.shape, generator=g)
    return torch.where(replace, (y + shift) % K, y)


def first_pn(y, p, seed):
    """Bug: the first floor(p*n) labels are resampled, the rest never."""
    y = torch.as_tensor(y, dtype=torch.long).clone()
    g = torch.Generator().manual_seed(int(seed))
    m = int(math.floor(p * len(y)))
    y[:m] = torch.randint(0, K, (m,), generator=g)
    return y


def global_rng(y, p, seed):
    """Bug: the seed is ignored and the global generator is used."""
    y = torch.as_tensor(y, dtype=torch.long)
    replace = torch.rand(y.shape) < p
    return torch.where(replace, torch.randint(0, K, y.shape), y)


def fixed_seed(y, p, seed):
    """Bug: the seed argument is ignored; a constant seed is used."""
    return correct(y, p, 1234)


def out_of_range(y, p, seed):
    """Bug: an off-by-one draws classes from 0..K (inclusive)."""
    y = torch.as_tensor(y, dtype=torch.long)
    g = torch.Generator().manual_seed(int(seed))
    replace = torch.rand(y.shape, generator=g) < p
    return torch.where(replace, torch.randint(0, K + 1, y.shape, generator=g), y)


def p_ignored(y, p, seed):
    """Bug: every label is replaced whatever p is."""
    return correct(y, 1.0, seed)


def wrong_length(y, p, seed):
    """Bug: drops the last label."""
    return correct(y, p, seed)[:-1]


def float_labels(y, p, seed):
    """Bug: returns float labels (cross-entropy needs class indices)."""
    return correct(y, p, seed).float()


def test_correct_corruption_passes():
    check_label_corruption(correct)


def test_correct_corruption_passes_with_lists_and_arrays():
    check_label_corruption(lambda y, p, s: correct(y, p, s).tolist(), input_type="list",
                           max_examples=5)
    check_label_corruption(lambda y, p, s: correct(y, p, s).numpy(), input_type="array",
                           max_examples=5)


@pytest.mark.parametrize(("bug", "words"), [
    (forced_different, "different* class"),
    (first_pn, "not corrupted independently"),
    (global_rng, "global random generator"),
    (fixed_seed, "seed is ignored"),
    (out_of_range, "outside 0..9"),
    (p_ignored, "p=0 no label may change"),
    (wrong_length, "same length"),
    (float_labels, "integer class"),
])
def test_each_corruption_bug_is_caught_with_a_message_naming_it(bug, words):
    with pytest.raises(PropertyError) as info:
        check_label_corruption(bug)
    assert words in str(info.value), str(info.value)


def test_forced_different_class_failure_reports_the_numbers():
    with pytest.raises(PropertyError) as info:
        check_label_corruption(forced_different)
    message = str(info.value)
    assert "n=" in message and "p=" in message and "seed=" in message
    assert "p*(1-1/K)" in message


def test_student_exception_names_the_call():
    def broken(y, p, seed):
        raise ValueError("boom")

    with pytest.raises(PropertyError, match=r"corrupt_labels\(y=<1000 labels>, p=0.0.*ValueError: boom"):
        check_label_corruption(broken)


def test_ellipsis_answer_fails():
    with pytest.raises(PropertyError):
        check_label_corruption(lambda y, p, seed: ...)


def test_binomial_bound_shrinks_with_n_and_covers_tiny_n():
    assert binomial_bound(10_000, 0.45) < binomial_bound(100, 0.45)
    assert binomial_bound(1, 0.0) >= 1.0  # one label's worth of slack
    assert binomial_bound(0, 0.5) == math.inf


def test_changed_fraction_counts_differences():
    assert changed_fraction([0, 1, 2, 3], np.array([0, 1, 5, 6])) == 0.5
    with pytest.raises(PropertyError, match="4 before, 3 after"):
        changed_fraction([0, 1, 2, 3], [0, 1, 2])


def test_check_deterministic_catches_unseeded_randomness():
    def seeded(n, seed):
        return torch.randn(n, generator=torch.Generator().manual_seed(seed))

    out = check_deterministic(seeded, 5, 3)
    assert np.array_equal(out, seeded(5, 3).numpy())
    with pytest.raises(PropertyError, match="different results on two identical calls"):
        check_deterministic(lambda n, seed: torch.randn(n), 5, 3)


def test_check_agrees_reports_the_smallest_disagreeing_input():
    def reference(x):
        return np.asarray(x, dtype=float) * 2

    def student(x):
        x = np.asarray(x, dtype=float)
        return x * 2 + (x.size >= 3)  # wrong from 3 elements on

    check_agrees(reference, reference, [[1.0], [1.0, 2.0, 3.0]])
    with pytest.raises(PropertyError) as info:
        check_agrees(student, reference, [list(range(10)), [1.0, 2.0, 3.0], [5.0]])
    message = str(info.value)
    assert "2 of 3 inputs disagree" in message
    assert "<list of 10 items>" not in message and "[1.0, 2.0, 3.0]" in message


def test_check_agrees_compares_dicts_and_tolerances():
    ref = {"acc": 0.5, "hist": [0.1, 0.2]}
    check_agrees(lambda: {"acc": 0.5 + 1e-9, "hist": [0.1, 0.2]}, lambda: ref, [()])
    with pytest.raises(PropertyError, match=r"result\['hist'\]\[1\]"):
        check_agrees(lambda: {"acc": 0.5, "hist": [0.1, 0.3]}, lambda: ref, [()])
    with pytest.raises(PropertyError, match="missing"):
        check_agrees(lambda: {"acc": 0.5}, lambda: ref, [()])


def test_spearman_of_monotone_and_reversed_sequences():
    assert spearman([0, 1, 2, 3], [1, 5, 6, 9]) == pytest.approx(1.0)
    assert spearman([0, 1, 2, 3], [9, 6, 5, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([0, 1, 2], [1, 1, 1]))


def test_monotone_trend_accepts_a_rising_curve_with_one_small_swap():
    xs = [0, 0.25, 0.5, 0.75, 1.0]
    rho = check_monotone_trend(xs, [0.05, 0.3, 0.28, 0.7, 0.9], min_spearman=0.9)
    assert rho == pytest.approx(0.9)
    assert check_monotone_trend(xs[::-1], [0.9, 0.7, 0.5, 0.3, 0.05]) == pytest.approx(1.0)


def test_monotone_trend_rejects_flat_reversed_or_too_small_changes():
    xs = [0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(PropertyError, match="not increasing"):
        check_monotone_trend(xs, [0.9, 0.7, 0.5, 0.3, 0.05])
    with pytest.raises(PropertyError, match="not increasing"):
        check_monotone_trend(xs, [0.5] * 5, what="test error")
    with pytest.raises(PropertyError, match="expected a change of at least"):
        check_monotone_trend(xs, [0.10, 0.11, 0.12, 0.13, 0.14], min_change=0.5)
    check_monotone_trend(xs, [0.9, 0.7, 0.5, 0.3, 0.05], direction="decreasing")


def test_monotone_trend_rejects_bad_shapes():
    with pytest.raises(PropertyError, match="at least 3 points"):
        check_monotone_trend([0, 1], [0, 1])
    with pytest.raises(PropertyError, match="one per x"):
        check_monotone_trend([0, 1, 2], [0, 1])
    with pytest.raises(Exception):  # noqa: B017 - an Ellipsis is not data
        check_monotone_trend([0, 1, 2], ...)


def test_check_deterministic_accepts_a_state_dict_and_catches_unseeded_init():
    def train(seed, seeded=True):
        if not seeded:  # draws from wherever the global generator happens to be
            return torch.nn.Linear(3, 2).state_dict()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return torch.nn.Linear(3, 2).state_dict()  # an OrderedDict

    out = check_deterministic(train, 0)
    assert set(out) == {"weight", "bias"}
    with pytest.raises(PropertyError, match="different results"):
        check_deterministic(train, 0, seeded=False)


# The Zhang assignment's own material: every wheat's corruption passes, every chaff that
# replaces corrupt_labels is caught (the property check is what level 5 grades with).
PAPER = Path(__file__).resolve().parents[1] / "assignments" / "zhang2017-random-labels"


def _corrupt_labels_from(relpath: str):
    import importlib.util
    import sys

    sys.path.insert(0, str(PAPER))
    try:
        name = "reprokit_test_" + relpath.replace("/", "_").removesuffix(".py")
        spec = importlib.util.spec_from_file_location(name, PAPER / relpath)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(PAPER))
    return module.corrupt_labels


def _material(folder: str) -> list[str]:
    return sorted(str(p.relative_to(PAPER)) for p in (PAPER / folder).glob("*.py")
                  if "def corrupt_labels" in p.read_text())


@pytest.mark.skipif(not PAPER.exists(), reason="the Zhang assignment is not in this checkout")
@pytest.mark.parametrize("relpath", ["authors/randlabels.py", *_material("wheats")]
                         if PAPER.exists() else [])
def test_authors_and_wheat_corruptions_pass(relpath):
    check_label_corruption(_corrupt_labels_from(relpath))


@pytest.mark.skipif(not PAPER.exists(), reason="the Zhang assignment is not in this checkout")
@pytest.mark.parametrize("relpath", (_material("chaffs/hidden") + _material("chaffs/public"))
                         if PAPER.exists() else [])
def test_chaff_corruptions_are_caught(relpath):
    with pytest.raises(PropertyError):
        check_label_corruption(_corrupt_labels_from(relpath))


def only_low_classes(y, p, seed, num_classes=10):
    """Bug (found by an outside audit): u = rand; if u < p the label becomes floor(u * K), so
    only classes below p * K ever appear. The fraction changed is right on balanced labels."""
    y = torch.as_tensor(y, dtype=torch.long)
    g = torch.Generator().manual_seed(int(seed))
    u = torch.rand(y.shape, generator=g)
    return torch.where(u < p, (u * num_classes).long().clamp(max=num_classes - 1), y)


def classes_present_only(y, p, seed, num_classes=10):
    """Bug (found by an outside audit): the new class is drawn from the classes present in y."""
    y = torch.as_tensor(y, dtype=torch.long)
    g = torch.Generator().manual_seed(int(seed))
    present = torch.unique(y)
    replace = torch.rand(y.shape, generator=g) < p
    pick = present[torch.randint(0, len(present), y.shape, generator=g)]
    return torch.where(replace, pick, y)


def in_place(y, p, seed, num_classes=10):
    """Bug (found by an outside audit): the caller's labels are overwritten in place."""
    g = torch.Generator().manual_seed(int(seed))
    replace = torch.rand(y.shape, generator=g) < p
    y[replace] = torch.randint(0, num_classes, y.shape, generator=g)[replace]
    return y


@pytest.mark.parametrize(("bug", "words"), [
    (only_low_classes, "drawn uniformly from all 10"),
    (classes_present_only, "drawn uniformly from all 10"),
    (in_place, "changed its input y in place"),
])
def test_audit_found_corruption_bugs_are_caught(bug, words):
    with pytest.raises(PropertyError) as info:
        check_label_corruption(bug, max_examples=10)
    assert words in str(info.value), str(info.value)
