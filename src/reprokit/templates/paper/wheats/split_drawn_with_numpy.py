"""Split drawn with NumPy

A correct alternative to the authors' ``load_split``: the same rule (a seeded split, then the
pixels standardised with the training images' statistics), but the permutation comes from a
``numpy.random.Generator``, so the images that land in the training set differ from the
authors'. A test that pins exact images or exact accuracies rejects this correct version.
"""

import numpy as np
import torch
from authors import classifier

from reprokit.bughunt import derive


def load_split(seed=0, n_train=None, test_fraction=0.25):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = torch.tensor(X, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.long)
    order = torch.from_numpy(np.random.default_rng([seed, 7]).permutation(len(y)))
    n_test = round(test_fraction * len(y))
    test, train_rows = order[:n_test], order[n_test:]
    if n_train is not None:
        train_rows = train_rows[:n_train]
    mean = X[train_rows].mean(dim=0)
    std = X[train_rows].std(dim=0).clamp_min(1e-6)
    return classifier.Split((X[train_rows] - mean) / std, y[train_rows], (X[test] - mean) / std,
                            y[test], mean, std)


implementation = derive(classifier, load_split=load_split)
