"""Minibatch order seeded from the clock

The planted bug: ``train`` seeds its shuffling generator with the current time instead of
``seed``, so two identical calls train on different minibatch orders and end with different
weights and accuracies: no run can be repeated exactly. Caught by training twice from the same
initialisation with the same seed and comparing the weights (or by running ``run_experiment``
twice with the same seed).
"""

import time

from authors import randlabels
from reprokit.bughunt import derive, patch_source

train = patch_source(
    randlabels.train,
    ("torch.Generator().manual_seed(seed)", "torch.Generator().manual_seed(time.time_ns() % 2**62)"),
    names={"time": time},
)

implementation = derive(randlabels, train=train)
