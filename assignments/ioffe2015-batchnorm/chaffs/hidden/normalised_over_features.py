"""Normalised over the features instead of over the mini-batch

The planted bug: in training mode ``BatchNorm.forward`` takes the mean and variance of each
example over its features (``dim=1``), as layer normalisation does, instead of each feature
over the mini-batch (``dim=0``, Alg. 1). The running statistics are still the per-feature
batch statistics, so eval mode looks right, but training normalises something else: the
output of one example no longer depends on the rest of its batch, and a feature's values
over the batch are not centred. Caught by checking that in training mode every feature has
mean 0 and variance 1 over the batch, or that one example's output moves when the others
change (Sec. 3.1).
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
     """mean = x.mean(dim=1, keepdim=True)
var = x.var(dim=1, unbiased=False, keepdim=True)
with torch.no_grad():
    self.running_mean.mul_(1 - self.momentum).add_(self.momentum * x.mean(dim=0))
    self.running_var.mul_(1 - self.momentum).add_(self.momentum * x.var(dim=0))"""),
)

implementation = derive(batchnorm, BatchNorm=BatchNorm)
