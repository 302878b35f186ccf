"""Corrupted positions chosen by a Bernoulli mask

Twin of a hidden chaff: ``corrupt_labels`` written in the chaff's style, but each label is
chosen independently with probability p and replaced by a uniform class. Correct.
"""

import torch

from authors import randlabels
from reprokit.bughunt import derive


def corrupt_labels(y, p, seed, num_classes=randlabels.NUM_CLASSES):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p is a probability: expected a number in [0, 1], got {p!r}")
    g = torch.Generator().manual_seed(seed)
    k = torch.rand(y.shape, generator=g) < p
    out = y.clone()
    out[k] = torch.randint(0, num_classes, (int(k.sum()),), generator=g, dtype=y.dtype)
    return out


implementation = derive(randlabels, corrupt_labels=corrupt_labels)
