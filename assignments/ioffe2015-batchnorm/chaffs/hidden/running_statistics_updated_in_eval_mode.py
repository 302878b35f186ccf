"""Running statistics updated in eval mode

The planted bug: ``BatchNorm.forward`` updates ``running_mean`` and ``running_var`` with the
batch statistics on every call, in eval mode too, and only then normalises with them. Every
evaluation (of the test split, of the percentiles) moves the population statistics towards
the data it was asked about, so inference is no longer the fixed map of Alg. 2 and a model's
test accuracy changes each time it is measured. Caught by checking that a forward pass in
eval mode leaves the layer's buffers exactly as they were.
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
    self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
    self.running_var.mul_(1 - self.momentum).add_(self.momentum * var * m / max(m - 1, 1))
if not self.training:
    mean, var = self.running_mean, self.running_var"""),
)

implementation = derive(batchnorm, BatchNorm=BatchNorm)
