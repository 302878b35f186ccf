"""Test images used for the normalisation statistics

The planted bug: ``load_digits_split`` standardises with the mean and standard deviation of ALL
images (training and test) instead of the training images only: information from the test set
leaks into training. Caught by checking that the training features have per-pixel mean 0 and
standard deviation 1 (they are off by a few hundredths here), or by recomputing the statistics
from the raw training images.
"""

import numpy as np
import torch

from authors import randlabels
from reprokit.bughunt import derive


def load_digits_split(seed=0, test_fraction=0.25, n_train=None):
    from sklearn.datasets import load_digits

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be strictly between 0 and 1, got {test_fraction!r}")
    digits = load_digits()
    X = torch.tensor(digits.data, dtype=torch.float32)
    y = torch.tensor(digits.target, dtype=torch.int64)
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(y)))
    n_test = int(round(test_fraction * len(y)))
    test, train_idx = order[:n_test], order[n_test:]
    if n_train is not None:
        if not 1 <= n_train <= len(train_idx):
            raise ValueError(f"n_train must be between 1 and {len(train_idx)}, got {n_train!r}")
        train_idx = train_idx[:n_train]
    used = torch.cat([train_idx, test])
    mean = X[used].mean(dim=0)
    std = X[used].std(dim=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return Splits((X[train_idx] - mean) / std, y[train_idx].clone(), (X[test] - mean) / std,
                  y[test].clone())


implementation = derive(randlabels, load_digits_split=load_digits_split)
