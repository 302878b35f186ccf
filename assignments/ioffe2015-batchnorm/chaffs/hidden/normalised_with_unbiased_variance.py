"""Mini-batch normalised with the unbiased variance

The planted bug: ``BatchNorm.forward`` takes the batch variance with ``x.var(dim=0)``, torch's
default, which divides by m - 1, and uses it for everything: the running variance (where the
unbiased estimate is right, Alg. 2) and the normalisation (where Alg. 1 divides by m). Each
feature of the training-mode output then has variance (m - 1)/m instead of 1: 0.97 at
m = 32, 0.75 at m = 4. Caught by checking that a layer in training mode returns features of
mean 0 and variance 1 over the batch.
"""

from authors import batchnorm
from reprokit.bughunt import derive, patch_source

BatchNorm = patch_source(
    batchnorm.BatchNorm,
    ("var = x.var(dim=0, unbiased=False)", "var = x.var(dim=0)"),
    ("self.momentum * var * m / (m - 1)", "self.momentum * var"),
)

implementation = derive(batchnorm, BatchNorm=BatchNorm)
