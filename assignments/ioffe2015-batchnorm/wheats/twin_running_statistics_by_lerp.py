"""Running statistics updated with lerp_

Twin of a hidden chaff: the running statistics move towards the batch statistics with
``running.lerp_(batch, momentum)``, which is ``(1 - momentum) * running + momentum * batch``.
Correct.
"""

from authors import batchnorm
from reprokit.bughunt import derive, patch_source

BatchNorm = patch_source(
    batchnorm.BatchNorm,
    ("self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)",
     "self.running_mean.lerp_(mean, self.momentum)"),
    ("self.running_var.mul_(1 - self.momentum).add_(self.momentum * var * m / (m - 1))",
     "self.running_var.lerp_(var * m / (m - 1), self.momentum)"),
)

implementation = derive(batchnorm, BatchNorm=BatchNorm)
