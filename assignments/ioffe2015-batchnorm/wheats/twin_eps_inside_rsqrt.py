"""Normalised with rsqrt(var + eps)

Twin of a hidden chaff: ``BatchNorm.forward`` multiplies by ``torch.rsqrt(var + eps)``
instead of dividing by ``torch.sqrt(var + eps)``. Correct.
"""

from authors import batchnorm
from reprokit.bughunt import derive, patch_source

BatchNorm = patch_source(batchnorm.BatchNorm,
                         ("x_hat = (x - mean) / torch.sqrt(var + self.eps)",
                          "x_hat = (x - mean) * torch.rsqrt(var + self.eps)"))

implementation = derive(batchnorm, BatchNorm=BatchNorm)
