"""Label corruption drawn with NumPy

A correct alternative to the authors' ``corrupt_labels``: the same rule (Sec. 2, "partially
corrupted labels": each label independently, with probability p, is replaced by a class drawn
uniformly from all K, possibly its own), but drawn from a ``numpy.random.Generator`` seeded with
``seed``: a Bernoulli mask, then uniform integers. The random stream differs from torch's, so
the exact corrupted labels differ from the authors' while their distribution is the same. A
test that pins the exact labels the authors' code produces rejects this correct version.
"""

import numpy as np
import torch

from authors import randlabels
from reprokit.bughunt import derive


def corrupt_labels(y, p, seed, num_classes=randlabels.NUM_CLASSES):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p is a probability: expected a number in [0, 1], got {p!r}")
    rng = np.random.default_rng([seed, 2017])  # own generator, its own stream
    labels = y.detach().cpu().numpy().copy()
    mask = rng.random(labels.shape) < p  # Bernoulli(p) per label
    labels[mask] = rng.integers(0, num_classes, size=int(mask.sum()))
    return torch.as_tensor(labels, dtype=y.dtype)


implementation = derive(randlabels, corrupt_labels=corrupt_labels)
