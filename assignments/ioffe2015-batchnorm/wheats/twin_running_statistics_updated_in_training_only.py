"""Running statistics updated at the end of forward, in training mode only

Twin of a hidden chaff: the update of the running statistics sits at the end of
``BatchNorm.forward``, after the normalisation, guarded by ``if self.training``. Correct.
"""

from authors import batchnorm
from reprokit.bughunt import derive, patch_source

BatchNorm = patch_source(
    batchnorm.BatchNorm,
    ("""with torch.no_grad():
                m = x.shape[0]
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * var * m / (m - 1))""",
     "pass"),
    ("x_hat = (x - mean) / torch.sqrt(var + self.eps)",
     """x_hat = (x - mean) / torch.sqrt(var + self.eps)
if self.training:
    with torch.no_grad():
        self.running_mean.mul_(1 - self.momentum).add_(self.momentum * x.mean(dim=0))
        self.running_var.mul_(1 - self.momentum).add_(self.momentum * x.var(dim=0))"""),
)

implementation = derive(batchnorm, BatchNorm=BatchNorm)
