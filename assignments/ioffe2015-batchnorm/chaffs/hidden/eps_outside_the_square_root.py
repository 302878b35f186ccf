"""Epsilon added outside the square root

The planted bug: ``BatchNorm.forward`` divides by ``sqrt(var) + eps`` instead of
``sqrt(var + eps)`` (Alg. 1). For features whose variance is large against eps nothing
changes, but a feature that barely varies (the digits' border pixels, a saturated unit) is
blown up to unit scale instead of being damped: with variance 1e-6 and eps 1e-5 the output's
spread is 1 instead of 0.3. Caught by normalising a batch of low-variance features and
comparing with the formula (or with ``torch.nn.functional.batch_norm``).
"""

from authors import batchnorm
from reprokit.bughunt import derive, patch_source

BatchNorm = patch_source(batchnorm.BatchNorm,
                         ("x_hat = (x - mean) / torch.sqrt(var + self.eps)",
                          "x_hat = (x - mean) / (torch.sqrt(var) + self.eps)"))

implementation = derive(batchnorm, BatchNorm=BatchNorm)
