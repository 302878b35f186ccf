"""Replacement probability capped at 1

Twin of a hidden chaff: the chaff's ``corrupt_labels`` with the replacement probability
``q = min(1, p)``, i.e. p itself, as Sec. 2 defines it. Correct.
"""

import torch

from authors import randlabels
from reprokit.bughunt import derive


def corrupt_labels(y, p, seed, num_classes=randlabels.NUM_CLASSES):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p is a probability: expected a number in [0, 1], got {p!r}")
    q = min(1.0, float(p))
    g = torch.Generator().manual_seed(seed)
    replace = torch.rand(y.shape, generator=g) < q
    random = torch.randint(0, num_classes, y.shape, generator=g, dtype=y.dtype)
    return torch.where(replace, random, y)


implementation = derive(randlabels, corrupt_labels=corrupt_labels)
