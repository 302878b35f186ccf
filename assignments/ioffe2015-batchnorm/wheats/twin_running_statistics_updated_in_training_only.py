"""Batch statistics computed in both modes, running statistics updated in training only

Twin of a hidden chaff: ``BatchNorm.forward`` computes the batch statistics in either mode
(and ignores them in eval mode), but updates the running statistics only in training mode.
Correct.
"""

from authors import batchnorm
from reprokit.bughunt import derive, patch_source

BatchNorm = patch_source(
    batchnorm.BatchNorm,
    ("""if self.training:
            if x.shape[0] < 2:
                raise ValueError("batch normalisation in training mode needs at least 2 examples")
            mean = x.mean(dim=0)
            var = x.var(dim=0, unbiased=False)
            with torch.no_grad():
                m = x.shape[0]
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * var * m / (m - 1))
        else:
            mean, var = self.running_mean, self.running_var""",
     """if self.training and x.shape[0] < 2:
    raise ValueError("batch normalisation in training mode needs at least 2 examples")
mean = x.mean(dim=0)
var = x.var(dim=0, unbiased=False)
with torch.no_grad():
    m = x.shape[0]
    if self.training:
        self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
        self.running_var.mul_(1 - self.momentum).add_(self.momentum * var * m / max(m - 1, 1))
if not self.training:
    mean, var = self.running_mean, self.running_var"""),
)

implementation = derive(batchnorm, BatchNorm=BatchNorm)
