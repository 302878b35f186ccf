"""Corrupted labels forced to a different class

The planted bug: a replaced label is drawn from the K - 1 OTHER classes, so every replaced label
changes and a fraction p of labels changes instead of Sec. 2's p * (1 - 1/K) (0.5 instead of
0.45 at p = 0.5; 1.0 instead of 0.9 at p = 1). Caught by measuring the changed fraction on many
labels against p * (1 - 1/K), or by checking that at p = 1 about 1/K of labels keep their class.
"""

import torch

from authors import randlabels
from reprokit.bughunt import derive


def corrupt_labels(y, p, seed, num_classes=randlabels.NUM_CLASSES):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p is a probability: expected a number in [0, 1], got {p!r}")
    g = torch.Generator().manual_seed(seed)
    replace = torch.rand(y.shape, generator=g) < p
    shift = torch.randint(1, num_classes, y.shape, generator=g, dtype=y.dtype)
    return torch.where(replace, (y + shift) % num_classes, y)


implementation = derive(randlabels, corrupt_labels=corrupt_labels)
