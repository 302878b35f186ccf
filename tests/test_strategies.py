"""reprokit.strategies: values respect their bounds and failures shrink to minimal examples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import find, given, settings
from hypothesis import strategies as st

from reprokit.strategies import (
    batches,
    float_tensors,
    int_tensors,
    label_vectors,
    large_float_tensors,
    permutations,
    shapes,
)

FAST = settings(max_examples=30, deadline=None)


@FAST
@given(shapes(min_dims=2, max_dims=4, min_side=2, max_side=3))
def test_shapes_stay_within_their_bounds(shape: tuple[int, ...]) -> None:
    assert 2 <= len(shape) <= 4
    assert all(2 <= side <= 3 for side in shape)


@FAST
@given(float_tensors(shape=shapes(max_side=4), dtype=torch.float64, min_value=-1.5, max_value=2.0))
def test_float_tensors_have_the_dtype_and_value_range_asked_for(t: torch.Tensor) -> None:
    assert t.dtype == torch.float64
    assert bool(torch.isfinite(t).all())
    assert bool((t >= -1.5).all()) and bool((t <= 2.0).all())


@FAST
@given(float_tensors(shape=(2, 3), dtype=torch.float16, min_value=-1, max_value=1))
def test_half_precision_tensors_get_the_fixed_shape(t: torch.Tensor) -> None:
    assert t.shape == (2, 3) and t.dtype == torch.float16


def test_nan_and_inf_appear_when_allowed() -> None:
    t = find(float_tensors(shape=(3,), allow_nan=True), lambda t: bool(t.isnan().any()))
    assert bool(t.isnan().any())
    t = find(float_tensors(shape=(3,), allow_infinity=True), lambda t: bool(t.isinf().any()))
    assert bool(t.isinf().any())


@FAST
@given(label_vectors(num_classes=4, min_size=2, max_size=5))
def test_labels_are_int64_in_range(y: torch.Tensor) -> None:
    assert y.dtype == torch.int64 and y.dim() == 1
    assert 2 <= len(y) <= 5
    assert bool((y >= 0).all()) and bool((y < 4).all())


@FAST
@given(batches(features=(2, 3), min_size=2, max_size=4, num_classes=5))
def test_batches_pair_inputs_with_one_label_each(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = batch
    assert x.shape[1:] == (2, 3) and 2 <= x.shape[0] <= 4
    assert y.shape == (x.shape[0],) and bool((y < 5).all())


@FAST
@given(batches(num_classes=None))
def test_regression_batches_have_float_targets(batch: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, y = batch
    assert y.is_floating_point() and y.shape == (x.shape[0],)


@FAST
@given(st.integers(0, 7).flatmap(lambda n: st.tuples(st.just(n), permutations(n))))
def test_permutations_are_permutations(case: tuple[int, torch.Tensor]) -> None:
    n, perm = case
    assert perm.dtype == torch.long
    assert sorted(perm.tolist()) == list(range(n))


@FAST
@given(int_tensors(shape=(4, 5), min_value=3, max_value=6, dtype=torch.int32))
def test_int_tensors_stay_in_range(t: torch.Tensor) -> None:
    assert t.dtype == torch.int32 and t.shape == (4, 5)
    assert bool((t >= 3).all()) and bool((t <= 6).all())


def test_tensors_are_drawn_from_hypothesis_not_torch_rng() -> None:
    before = torch.get_rng_state()
    find(float_tensors(shape=(3,)), lambda t: bool((t > 1).any()))
    assert torch.equal(torch.get_rng_state(), before)


# ------------------------------------------------------------------ shrinking


def test_a_shape_condition_shrinks_to_the_smallest_zero_tensor() -> None:
    t = find(float_tensors(shape=shapes()), lambda t: t.numel() >= 3)
    assert t.shape == (3,)
    assert torch.equal(t, torch.zeros(3))


def test_a_label_condition_shrinks_to_a_single_label() -> None:
    y = find(label_vectors(num_classes=5), lambda y: bool((y == 3).any()))
    assert y.tolist() == [3]


def test_a_permutation_condition_shrinks_to_one_swap() -> None:
    perm = find(permutations(6), lambda p: int(p[0]) != 0)
    moved = [i for i, v in enumerate(perm.tolist()) if v != i]
    assert len(moved) == 2 and moved[0] == 0


def test_a_batch_condition_shrinks_to_the_smallest_batch() -> None:
    x, y = find(batches(features=2, max_size=6), lambda b: len(b[0]) >= 3)
    assert x.shape == (3, 2) and torch.equal(y, torch.zeros(3, dtype=torch.long))
    assert not np.any(x.numpy())


def test_bad_bounds_are_rejected_with_the_values_seen() -> None:
    with pytest.raises(ValueError, match="got 3 and 1"):
        find(shapes(min_dims=3, max_dims=1), lambda _: True)
    with pytest.raises(ValueError, match="num_classes"):
        find(label_vectors(num_classes=0), lambda _: True)


def test_large_float_tensors_find_a_softmax_overflow_that_default_floats_miss() -> None:
    def naive_softmax_overflows(t: torch.Tensor) -> bool:
        e = t.exp()
        return not bool(torch.isfinite(e / e.sum()).all())

    overflow = find(large_float_tensors(shape=(4,)), naive_softmax_overflows,
                    settings=settings(max_examples=200, deadline=None, database=None))
    assert 88 < float(overflow.abs().max()) <= 1e4  # float32 exp overflows past ~88.7
    assert not any(naive_softmax_overflows(t) for t in (
        find(float_tensors(shape=(4,)), lambda t: True), torch.full((4,), 10.0)))


def test_large_float_tensors_refuse_a_non_positive_bound() -> None:
    with pytest.raises(ValueError, match="max_magnitude"):
        large_float_tensors(max_magnitude=0)
