"""Mini-batch normalised with the unbiased variance

The planted bug: ``BatchNorm.forward`` takes the batch variance with ``x.var(dim=0)``, torch's
default, which divides by m - 1. Alg. 1 normalises with the biased variance (divide by m), so
each feature of the output has variance (m - 1)/m instead of 1 (0.97 at m = 32), and the
running variance, which multiplies by m/(m - 1) once more, is too large. Caught by checking
that a layer in training mode returns features of variance 1 over the batch, or by comparing
the running variance with ``torch.nn.BatchNorm1d``'s.
"""

from authors import batchnorm
from reprokit.bughunt import derive, patch_source

BatchNorm = patch_source(batchnorm.BatchNorm,
                         ("var = x.var(dim=0, unbiased=False)", "var = x.var(dim=0)"))

implementation = derive(batchnorm, BatchNorm=BatchNorm)
