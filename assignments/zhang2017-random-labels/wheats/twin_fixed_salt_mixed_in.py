"""Label corruption seeded from its seed and a fixed salt

Twin of a hidden chaff: the private generator is seeded with ``seed * 7919 + 2017``, a fixed
function of ``seed`` alone, so the labels are another stream than the authors' but follow from
``seed`` and nothing else. Correct.
"""

import torch

from authors import randlabels
from reprokit.bughunt import derive


def corrupt_labels(y, p, seed, num_classes=randlabels.NUM_CLASSES):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p is a probability: expected a number in [0, 1], got {p!r}")
    g = torch.Generator().manual_seed((seed * 7919 + 2017) % 2**63)
    replace = torch.rand(y.shape, generator=g) < p
    random = torch.randint(0, num_classes, y.shape, generator=g, dtype=y.dtype)
    return torch.where(replace, random, y)


implementation = derive(randlabels, corrupt_labels=corrupt_labels)
