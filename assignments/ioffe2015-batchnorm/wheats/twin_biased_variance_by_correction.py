"""Biased batch variance written with correction=0

Twin of a hidden chaff: ``BatchNorm.forward`` takes the biased batch variance as
``x.var(dim=0, correction=0)``, the same value as ``unbiased=False``. Correct.
"""

from authors import batchnorm
from reprokit.bughunt import derive, patch_source

BatchNorm = patch_source(batchnorm.BatchNorm,
                         ("var = x.var(dim=0, unbiased=False)", "var = x.var(dim=0, correction=0)"))

implementation = derive(batchnorm, BatchNorm=BatchNorm)
