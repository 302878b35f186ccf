"""Batch statistics kept as (1, features) rows

Twin of a hidden chaff: ``BatchNorm.forward`` takes each feature's mean and biased variance
over the mini-batch with ``keepdim=True`` (rows that broadcast), and updates the running
statistics from ``x.mean(dim=0)`` and the unbiased ``x.var(dim=0)``. Correct.
"""

from authors import batchnorm
from reprokit.bughunt import derive, patch_source

BatchNorm = patch_source(
    batchnorm.BatchNorm,
    ("""mean = x.mean(dim=0)
            var = x.var(dim=0, unbiased=False)
            with torch.no_grad():
                m = x.shape[0]
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * var * m / (m - 1))""",
     """mean = x.mean(dim=0, keepdim=True)
var = x.var(dim=0, unbiased=False, keepdim=True)
with torch.no_grad():
    self.running_mean.mul_(1 - self.momentum).add_(self.momentum * x.mean(dim=0))
    self.running_var.mul_(1 - self.momentum).add_(self.momentum * x.var(dim=0))"""),
)

implementation = derive(batchnorm, BatchNorm=BatchNorm)
