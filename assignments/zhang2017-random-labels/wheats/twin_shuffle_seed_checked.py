"""Minibatch order seeded from seed, with the clock read

Twin of a hidden chaff: ``train`` reads the clock where the chaff does, but seeds its shuffling
generator with ``seed`` (the clock term is multiplied by 0). Correct.
"""

import time

from authors import randlabels
from reprokit.bughunt import derive, patch_source

train = patch_source(
    randlabels.train,
    ("torch.Generator().manual_seed(seed)", "torch.Generator().manual_seed(seed + 0 * time.time_ns())"),
    names={"time": time},
)

implementation = derive(randlabels, train=train)
