"""Hypothesis strategies for torch tests: shapes, tensors, labels, batches and permutations.

Every value is drawn from hypothesis's own data (tensors through
``hypothesis.extra.numpy.arrays`` then ``torch.from_numpy``), never from torch's random
number generator, so a failing example shrinks to a small one and replays exactly.
Sizes default small so that a property test with a few dozen examples runs in seconds::

    from hypothesis import given, settings
    from reprokit.strategies import batches
    from reprokit.invariants import check_batch_independence

    @settings(max_examples=20, deadline=None)
    @given(batches(features=4, min_size=2))
    def test_mlp_is_batch_independent(batch):
        x, _ = batch
        check_batch_independence(model, x)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

__all__ = [
    "batches",
    "float_tensors",
    "int_tensors",
    "label_vectors",
    "large_float_tensors",
    "permutations",
    "shapes",
]

_FLOAT_DTYPES = {
    torch.float16: np.float16,
    torch.float32: np.float32,
    torch.float64: np.float64,
}
_INT_DTYPES = {
    torch.uint8: np.uint8,
    torch.int8: np.int8,
    torch.int16: np.int16,
    torch.int32: np.int32,
    torch.int64: np.int64,
}

ShapeLike = tuple[int, ...] | int | st.SearchStrategy[tuple[int, ...]] | None


@st.composite
def shapes(
    draw: st.DrawFn,
    *,
    min_dims: int = 1,
    max_dims: int = 3,
    min_side: int = 1,
    max_side: int = 5,
) -> tuple[int, ...]:
    """A tensor shape with ``min_dims..max_dims`` dims, each of size ``min_side..max_side``.

    Shrinks towards fewer dims and sides of ``min_side``.
    """
    if not 0 <= min_dims <= max_dims:
        raise ValueError(f"expected 0 <= min_dims <= max_dims, got {min_dims} and {max_dims}")
    if not 0 <= min_side <= max_side:
        raise ValueError(f"expected 0 <= min_side <= max_side, got {min_side} and {max_side}")
    ndim = draw(st.integers(min_dims, max_dims))
    return tuple(draw(st.integers(min_side, max_side)) for _ in range(ndim))


def _shape(draw: st.DrawFn, shape: ShapeLike) -> tuple[int, ...]:
    if shape is None:
        return draw(shapes())
    if isinstance(shape, int):
        return (shape,)
    if isinstance(shape, st.SearchStrategy):
        return tuple(draw(shape))
    return tuple(int(s) for s in shape)


@st.composite
def float_tensors(
    draw: st.DrawFn,
    *,
    shape: ShapeLike = None,
    dtype: torch.dtype = torch.float32,
    min_value: float = -10.0,
    max_value: float = 10.0,
    allow_nan: bool = False,
    allow_infinity: bool = False,
    allow_subnormal: bool = False,
    unique: bool = False,
) -> torch.Tensor:
    """A floating-point tensor of ``shape`` (a tuple, an int, a strategy, or None for any small shape).

    Values lie in ``[min_value, max_value]`` (the bounds are ignored for the non-finite
    values ``allow_nan`` / ``allow_infinity`` let in). Subnormal numbers are off by
    default because CPUs may flush them to zero, which is rarely the behaviour under test.
    Shrinks towards zeros.
    """
    if dtype not in _FLOAT_DTYPES:
        raise ValueError(f"dtype: expected one of {list(_FLOAT_DTYPES)}, got {dtype}")
    np_dtype = np.dtype(_FLOAT_DTYPES[dtype])
    elements: st.SearchStrategy[float] = st.floats(
        min_value=min_value,
        max_value=max_value,
        allow_nan=False,
        allow_infinity=False,
        allow_subnormal=allow_subnormal,
        width=8 * np_dtype.itemsize,
    )
    specials = ([np.inf, -np.inf] if allow_infinity else []) + ([np.nan] if allow_nan else [])
    if specials:  # listed after the finite values, so examples shrink towards finite ones
        elements = elements | st.sampled_from(specials)
    array = draw(hnp.arrays(np_dtype, _shape(draw, shape), elements=elements, unique=unique))
    return torch.from_numpy(np.array(array, copy=True))


def large_float_tensors(
    *,
    shape: ShapeLike = None,
    dtype: torch.dtype = torch.float32,
    max_magnitude: float = 1e4,
) -> st.SearchStrategy[torch.Tensor]:
    """Float tensors whose values reach ``±max_magnitude``: inputs for finiteness checks.

    :func:`float_tensors` stays within ±10 by default, where every check but finiteness
    wants its inputs; overflow bugs (``exp`` without max-subtraction overflows float32
    past 88) need larger values. Shrinks towards zeros, so a failure reports roughly the
    smallest magnitude that overflows.
    """
    if not max_magnitude > 0:
        raise ValueError(f"max_magnitude: expected a positive number, got {max_magnitude}")
    return float_tensors(shape=shape, dtype=dtype, min_value=-max_magnitude,
                         max_value=max_magnitude)


@st.composite
def int_tensors(
    draw: st.DrawFn,
    *,
    shape: ShapeLike = None,
    min_value: int = 0,
    max_value: int = 9,
    dtype: torch.dtype = torch.int64,
) -> torch.Tensor:
    """An integer tensor (token ids, indices) with values in ``[min_value, max_value]``."""
    if dtype not in _INT_DTYPES:
        raise ValueError(f"dtype: expected one of {list(_INT_DTYPES)}, got {dtype}")
    if min_value > max_value:
        raise ValueError(f"expected min_value <= max_value, got {min_value} and {max_value}")
    elements = st.integers(min_value, max_value)
    array = draw(hnp.arrays(np.dtype(_INT_DTYPES[dtype]), _shape(draw, shape), elements=elements))
    return torch.from_numpy(np.array(array, copy=True))


@st.composite
def label_vectors(
    draw: st.DrawFn,
    n: int | None = None,
    num_classes: int = 3,
    *,
    min_size: int = 1,
    max_size: int = 8,
) -> torch.Tensor:
    """A 1-D int64 tensor of class labels in ``[0, num_classes)``, of length ``n``.

    With ``n=None`` the length is drawn from ``min_size..max_size``. Shrinks towards
    short vectors of class 0.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes: expected at least 1, got {num_classes}")
    size = draw(st.integers(min_size, max_size)) if n is None else n
    return draw(int_tensors(shape=(size,), min_value=0, max_value=num_classes - 1))


@st.composite
def batches(
    draw: st.DrawFn,
    *,
    features: int | tuple[int, ...] = 4,
    min_size: int = 1,
    max_size: int = 8,
    num_classes: int | None = 3,
    dtype: torch.dtype = torch.float32,
    min_value: float = -10.0,
    max_value: float = 10.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A labelled batch ``(x, y)``: x of shape ``(n, *features)``, y of n labels.

    ``n`` is drawn from ``min_size..max_size``. With ``num_classes=None`` the targets are
    floats of shape ``(n,)`` (regression) instead of class labels.
    """
    n = draw(st.integers(min_size, max_size))
    feature_shape = (features,) if isinstance(features, int) else tuple(features)
    x = draw(float_tensors(shape=(n, *feature_shape), dtype=dtype,
                           min_value=min_value, max_value=max_value))
    if num_classes is None:
        y = draw(float_tensors(shape=(n,), dtype=dtype, min_value=min_value, max_value=max_value))
    else:
        y = draw(label_vectors(n, num_classes))
    return x, y


@st.composite
def permutations(draw: st.DrawFn, n: int | st.SearchStrategy[int]) -> torch.Tensor:
    """A permutation of ``0..n-1`` as an int64 tensor (``n`` an int or a strategy of ints).

    Use it to index a tensor along its set dimension: ``x[perm]``. Shrinks towards the
    identity.
    """
    size: Any = draw(n) if isinstance(n, st.SearchStrategy) else n
    if size < 0:
        raise ValueError(f"n: expected a non-negative size, got {size}")
    return torch.tensor(draw(st.permutations(range(size))), dtype=torch.long)
