"""Momentum convention inverted

The planted bug: the running statistics are updated as
``running = momentum * running + (1 - momentum) * batch``, the convention where momentum is
the decay of the old estimate, while the layer's ``momentum`` (0.1, as in PyTorch) is the
weight of the new batch. The population estimates follow the last few batches almost
entirely (weight 0.9 on the newest), so inference depends on which batches came last.
Caught by one training step from fresh statistics: the running mean must be 0.1 times the
batch mean, as ``torch.nn.BatchNorm1d``'s is.
"""

from authors import batchnorm
from reprokit.bughunt import derive, patch_source

BatchNorm = patch_source(
    batchnorm.BatchNorm,
    ("self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)",
     "self.running_mean.mul_(self.momentum).add_((1 - self.momentum) * mean)"),
    ("self.running_var.mul_(1 - self.momentum).add_(self.momentum * var * m / (m - 1))",
     "self.running_var.mul_(self.momentum).add_((1 - self.momentum) * var * m / (m - 1))"),
)

implementation = derive(batchnorm, BatchNorm=BatchNorm)
