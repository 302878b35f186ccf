"""Gradients not zeroed between steps

The planted bug: ``train`` never calls ``opt.zero_grad()``, so every step's gradient is the sum
of all gradients so far. Training still runs and the loss may still fall at first, but the
optimisation is not the paper's: fitting random labels becomes slow or fails. Caught by checking
that a short run memorises a small randomly labelled set, or by filling every parameter's
``.grad`` with junk before ``train``: correct code clears it before the first step, so the
trained weights match a run from clean gradients; here they do not.
"""

from authors import randlabels
from reprokit.bughunt import derive, patch_source

train = patch_source(randlabels.train, ("opt.zero_grad()", "pass"))

implementation = derive(randlabels, train=train)
