"""Running statistics updated in eval mode

The planted bug: the update of ``running_mean`` and ``running_var`` sits at the end of
``BatchNorm.forward``, after the normalisation, outside the ``if self.training`` branch, so
it runs in eval mode too. Each call in eval mode still returns the right output, but moves
the population statistics towards the data it was given: every evaluation (of the test
split, of the percentiles of Fig. 1) changes the network that the next one measures, and
inference is no longer the fixed map of Alg. 2. Caught by checking that a forward pass in
eval mode leaves the layer's running statistics exactly as they were.
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
with torch.no_grad():
    self.running_mean.mul_(1 - self.momentum).add_(self.momentum * x.mean(dim=0))
    self.running_var.mul_(1 - self.momentum).add_(self.momentum * x.var(dim=0))"""),
)

implementation = derive(batchnorm, BatchNorm=BatchNorm)
