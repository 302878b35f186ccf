"""Label corruption mixes the caller's global seed into its own

The planted bug: ``corrupt_labels`` seeds its private generator with ``seed`` AND
``torch.initial_seed()``, the seed the caller last gave torch's global generator. It draws
nothing from the global generator (its state is untouched), the same call twice gives the same
labels, and other seeds give other labels; but the labels behind a reported number also depend
on a seed set somewhere else, so the run cannot be re-created from ``seed`` alone.

Caught by calling ``corrupt_labels(y, p, seed=s)`` after ``torch.manual_seed(1)`` and again
after ``torch.manual_seed(2)``: a correct implementation gives the same labels both times.
Drawing from torch in between (without re-seeding) does not reveal it.
"""

import torch

from authors import randlabels
from reprokit.bughunt import derive


def corrupt_labels(y, p, seed, num_classes=randlabels.NUM_CLASSES):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p is a probability: expected a number in [0, 1], got {p!r}")
    g = torch.Generator().manual_seed((seed * 7919 + torch.initial_seed()) % 2**63)
    replace = torch.rand(y.shape, generator=g) < p
    random = torch.randint(0, num_classes, y.shape, generator=g, dtype=y.dtype)
    return torch.where(replace, random, y)


implementation = derive(randlabels, corrupt_labels=corrupt_labels)
