"""Running statistics read with get_buffer

Twin of a hidden chaff: in eval mode ``BatchNorm.forward`` reads the running statistics with
``self.get_buffer(...)``, the same tensors as ``self.running_mean`` and ``self.running_var``.
Correct.
"""

from authors import batchnorm
from reprokit.bughunt import derive, patch_source

BatchNorm = patch_source(batchnorm.BatchNorm,
                         ("mean, var = self.running_mean, self.running_var",
                          'mean, var = self.get_buffer("running_mean"), self.get_buffer("running_var")'))

implementation = derive(batchnorm, BatchNorm=BatchNorm)
