"""Label corruption ignores its seed

The planted bug: ``corrupt_labels`` draws from torch's global random generator
(``torch.rand`` / ``torch.randint`` without ``generator=``) and never uses ``seed``.

Why it matters: a reproduction must be re-runnable: the same seed has to give the same random
labels, so that anyone can re-create the exact experiment behind a number, and different seeds
must give different labellings, so that repeating a run over seeds measures its spread. Here
the labels depend on whatever state the global generator happened to be in: the same call gives
different labels on a second call, and one run's number cannot be re-created.

How a test can see it: call ``corrupt_labels(y, 0.5, seed=1)`` twice (drawing something from
torch in between) and compare; also compare ``seed=1`` with ``seed=2``.
"""

import torch

from authors import randlabels
from reprokit.bughunt import derive


def corrupt_labels(y, p, seed, num_classes=randlabels.NUM_CLASSES):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p is a probability: expected a number in [0, 1], got {p!r}")
    replace = torch.rand(y.shape) < p
    random = torch.randint(0, num_classes, y.shape, dtype=y.dtype)
    return torch.where(replace, random, y)


implementation = derive(randlabels, corrupt_labels=corrupt_labels)
