"""Minibatch order from a seeded NumPy generator

Twin of a hidden chaff: the authors' ``train`` with each epoch's order drawn from a
``numpy.random.Generator`` seeded with ``seed`` instead of a ``torch.Generator``. Correct: the
order is still fixed by the seed alone (another order than the authors', so other weights).
"""

import numpy as np
import torch
from authors import classifier

from reprokit.bughunt import derive, patch_source

train = patch_source(
    classifier.train,
    ("order = torch.Generator().manual_seed(seed)", "order = np.random.default_rng(seed)"),
    ("torch.randperm(len(y), generator=order)", "torch.from_numpy(order.permutation(len(y)))"),
    names={"np": np, "torch": torch},
)

implementation = derive(classifier, train=train)
