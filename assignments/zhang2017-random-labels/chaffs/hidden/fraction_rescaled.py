"""Corruption probability rescaled so that exactly p of labels change

The planted bug: "counting the other way round": the author wants the fraction of labels that
CHANGE to be p, so replaces each label with probability p * K / (K - 1) (capped at 1). Sec. 2
defines p as the probability of replacement by a uniform class, so only p * (1 - 1/K) change.
Identical to the authors' code at p = 0 and p = 1; caught at intermediate p (0.5 of labels
change at p = 0.5 instead of 0.45).
"""

import torch

from authors import randlabels
from reprokit.bughunt import derive


def corrupt_labels(y, p, seed, num_classes=randlabels.NUM_CLASSES):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p is a probability: expected a number in [0, 1], got {p!r}")
    q = min(1.0, p * num_classes / (num_classes - 1))
    g = torch.Generator().manual_seed(seed)
    replace = torch.rand(y.shape, generator=g) < q
    random = torch.randint(0, num_classes, y.shape, generator=g, dtype=y.dtype)
    return torch.where(replace, random, y)


implementation = derive(randlabels, corrupt_labels=corrupt_labels)
