"""The first p*n labels corrupted instead of random positions

The planted bug: ``corrupt_labels`` replaces labels 0 .. floor(p * n) - 1 by uniform classes
and keeps the rest. The overall fraction is right (p * (1 - 1/K)), but which images get noisy
labels is not random: with the split's order it is a fixed block, and between seeds the same
images are always the corrupted ones. Caught by comparing the changed fraction in the first and
second halves of a long label vector (0.9 and 0 at p = 0.5, instead of 0.45 each).
"""

import torch

from authors import randlabels
from reprokit.bughunt import derive


def corrupt_labels(y, p, seed, num_classes=randlabels.NUM_CLASSES):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p is a probability: expected a number in [0, 1], got {p!r}")
    g = torch.Generator().manual_seed(seed)
    k = int(p * len(y))
    out = y.clone()
    out[:k] = torch.randint(0, num_classes, (k,), generator=g, dtype=y.dtype)
    return out


implementation = derive(randlabels, corrupt_labels=corrupt_labels)
