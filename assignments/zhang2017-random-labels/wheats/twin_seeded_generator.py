"""Label corruption from a generator seeded with seed

Twin of the public chaff "Label corruption ignores its seed": the chaff's ``corrupt_labels``
drawing from its own generator seeded with ``seed``. Correct.
"""

import torch

from authors import randlabels
from reprokit.bughunt import derive


def corrupt_labels(y, p, seed, num_classes=randlabels.NUM_CLASSES):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p is a probability: expected a number in [0, 1], got {p!r}")
    g = torch.Generator().manual_seed(seed)
    replace = torch.rand(y.shape, generator=g) < p
    random = torch.randint(0, num_classes, y.shape, generator=g, dtype=y.dtype)
    return torch.where(replace, random, y)


implementation = derive(randlabels, corrupt_labels=corrupt_labels)
