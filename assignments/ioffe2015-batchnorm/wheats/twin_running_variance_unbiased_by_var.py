"""Running variance updated with x.var(dim=0)

Twin of the public chaff "Running variance without Bessel's correction": ``running_var`` is
updated with torch's unbiased ``x.var(dim=0)``, which is ``var * m / (m - 1)``. Correct.
"""

from authors import batchnorm
from reprokit.bughunt import derive, patch_source

BatchNorm = patch_source(batchnorm.BatchNorm,
                         ("self.momentum * var * m / (m - 1)", "self.momentum * x.var(dim=0)"))

implementation = derive(batchnorm, BatchNorm=BatchNorm)
