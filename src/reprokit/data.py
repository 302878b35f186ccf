"""Tiny offline datasets for checks that must run on a CPU in seconds.

* :func:`tiny_digits` reads scikit-learn's bundled 8x8 handwritten digits (1,797 images,
  64 pixel features, 10 classes; shipped inside scikit-learn, so no download).
* :func:`blobs` draws Gaussian clusters in code.

Both return a :class:`Split`: train and test tensors (``float32`` features, ``int64``
labels). The split follows from ``seed`` alone, so the same call gives the same tensors
on every machine. Raw data is cached per process; each call hands out fresh tensors, so
a test that edits its data in place cannot change what the next test sees.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Split", "TinyDigits", "blobs", "tiny_digits"]


@dataclass(frozen=True, repr=False)
class Split:
    """A train/test split as tensors: ``X_*`` is ``float32`` (n, features), ``y_*`` is ``int64`` (n,)."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def n_features(self) -> int:
        """Number of input features (64 for digits)."""
        return int(self.X_train.shape[1])

    @property
    def n_classes(self) -> int:
        """Number of classes seen in train or test labels."""
        return int(max(self.y_train.max().item(), self.y_test.max().item())) + 1

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(train={tuple(self.X_train.shape)}, "
            f"test={tuple(self.X_test.shape)}, classes={self.n_classes})"
        )


#: The digits split: same container, named for what it holds.
TinyDigits = Split


@functools.lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    X = np.asarray(bunch.data, dtype=np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    X.setflags(write=False)
    y.setflags(write=False)
    return X, y


def _check_fraction(test_fraction: float) -> float:
    f = float(test_fraction)
    if not 0.0 < f < 1.0:
        raise ValueError(f"test_fraction: expected a number strictly between 0 and 1, got {test_fraction!r}")
    return f


def _split(X: np.ndarray, y: np.ndarray, *, n: int | None, seed: int, test_fraction: float,
           standardise: bool) -> Split:
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    if n is not None:
        if type(n) is bool or not isinstance(n, (int, np.integer)) or not 2 <= n <= len(y):
            raise ValueError(f"n: expected a whole number of samples from 2 to {len(y)}, got {n!r}")
        order = order[: int(n)]
    n_test = max(1, int(round(len(order) * _check_fraction(test_fraction))))
    n_test = min(n_test, len(order) - 1)
    test_idx, train_idx = order[:n_test], order[n_test:]
    X_train, X_test = X[train_idx], X[test_idx]
    if standardise:
        # Statistics from the training part only; constant pixels (std 0) are left centred.
        mean = X_train.mean(axis=0)
        std = X_train.std(axis=0)
        std = np.where(std > 0, std, 1.0).astype(np.float32)
        X_train = (X_train - mean) / std
        X_test = (X_test - mean) / std
    return Split(
        X_train=torch.tensor(X_train, dtype=torch.float32),
        y_train=torch.tensor(y[train_idx], dtype=torch.int64),
        X_test=torch.tensor(X_test, dtype=torch.float32),
        y_test=torch.tensor(y[test_idx], dtype=torch.int64),
    )


def tiny_digits(n: int | None = None, seed: int = 0, test_fraction: float = 0.25,
                standardise: bool = True) -> TinyDigits:
    """scikit-learn's 8x8 digits as a seeded train/test split of torch tensors.

    ``n`` keeps a random subset of that many images (all 1,797 when ``None``);
    ``test_fraction`` of them go to the test part. With ``standardise`` each pixel is
    scaled to mean 0 and variance 1 using the training part's statistics (pixels that
    are constant in training are only centred). Offline: the data ships with
    scikit-learn.
    """
    X, y = _digits_arrays()
    return _split(X, y, n=n, seed=seed, test_fraction=test_fraction, standardise=standardise)


@functools.lru_cache(maxsize=16)
def _blobs_arrays(n: int, features: int, classes: int, seed: int, spread: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 4.0, size=(classes, features))
    y = rng.permutation(np.arange(n) % classes).astype(np.int64)  # balanced classes
    X = (centres[y] + rng.normal(0.0, spread, size=(n, features))).astype(np.float32)
    X.setflags(write=False)
    y.setflags(write=False)
    return X, y


def blobs(n: int = 200, features: int = 2, classes: int = 3, seed: int = 0,
          test_fraction: float = 0.25, spread: float = 1.0) -> Split:
    """Gaussian clusters drawn in code: ``classes`` centres ~ N(0, 4^2), points ~ N(centre, spread^2).

    Classes are balanced (sizes differ by at most one). Not standardised.
    """
    for name, value, low in (("n", n, 2), ("features", features, 1), ("classes", classes, 1)):
        if type(value) is bool or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name}: expected a whole number >= {low}, got {value!r}")
    if not float(spread) > 0:
        raise ValueError(f"spread: expected a positive number, got {spread!r}")
    X, y = _blobs_arrays(int(n), int(features), int(classes), int(seed), float(spread))
    return _split(X, y, n=None, seed=seed, test_fraction=test_fraction, standardise=False)
