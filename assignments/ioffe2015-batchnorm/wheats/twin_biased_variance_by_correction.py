"""Biased batch variance written with correction=0

Twin of a hidden chaff: ``BatchNorm.forward`` normalises with the biased batch variance
written as ``x.var(dim=0, correction=0)`` and updates the running variance with torch's
unbiased ``x.var(dim=0)``: the same values as the authors'. Correct.
"""

from authors import batchnorm
from reprokit.bughunt import derive, patch_source

BatchNorm = patch_source(
    batchnorm.BatchNorm,
    ("var = x.var(dim=0, unbiased=False)", "var = x.var(dim=0, correction=0)"),
    ("self.momentum * var * m / (m - 1)", "self.momentum * x.var(dim=0)"),
)

implementation = derive(batchnorm, BatchNorm=BatchNorm)
