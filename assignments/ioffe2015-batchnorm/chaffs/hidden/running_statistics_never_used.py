"""Running statistics never used at inference

The planted bug: in eval mode ``BatchNorm.forward`` still normalises with the statistics of
the batch it is given. The running statistics are kept up to date but never read, so
inference is not the fixed affine map of Alg. 2: one test image's prediction depends on the
other images evaluated with it, and a single image normalises to beta. Caught by checking
that in eval mode one example's output does not depend on the rest of the batch, or that it
equals ``gamma * (x - running_mean) / sqrt(running_var + eps) + beta``.
"""

from authors import batchnorm
from reprokit.bughunt import derive, patch_source

BatchNorm = patch_source(batchnorm.BatchNorm,
                         ("mean, var = self.running_mean, self.running_var",
                          "mean, var = x.mean(dim=0), x.var(dim=0, unbiased=False)"))

implementation = derive(batchnorm, BatchNorm=BatchNorm)
