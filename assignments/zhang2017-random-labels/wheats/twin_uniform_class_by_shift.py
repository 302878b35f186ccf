"""Uniform class drawn as a shift modulo K

Twin of a hidden chaff: a replaced label becomes ``(y + shift) % K`` with ``shift`` uniform on
0 .. K-1, which is a uniform class (possibly the true one), as Sec. 2 asks. Correct.
"""

import torch

from authors import randlabels
from reprokit.bughunt import derive


def corrupt_labels(y, p, seed, num_classes=randlabels.NUM_CLASSES):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p is a probability: expected a number in [0, 1], got {p!r}")
    g = torch.Generator().manual_seed(seed)
    replace = torch.rand(y.shape, generator=g) < p
    shift = torch.randint(0, num_classes, y.shape, generator=g, dtype=y.dtype)
    return torch.where(replace, (y + shift) % num_classes, y)


implementation = derive(randlabels, corrupt_labels=corrupt_labels)
