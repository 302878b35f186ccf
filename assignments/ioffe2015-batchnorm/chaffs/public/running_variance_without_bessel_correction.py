"""Running variance without Bessel's correction

The planted bug: ``BatchNorm.forward`` updates ``running_var`` with the biased batch variance
(divided by m) instead of the unbiased one (multiplied by m/(m - 1)).

Why it matters: Alg. 2, step 10, estimates the population variance for inference with the
unbiased estimate, Var[x] = m/(m - 1) E_B[sigma_B^2], and ``torch.nn.BatchNorm1d`` does the
same. With mini-batches of 60 the running variance is 1.7 % too small, so at inference every
feature is scaled up a little and the network seen at test time is not the one the paper
describes. With small batches (m = 4: 25 % too small) the difference shows in accuracy. The
training-mode output is unchanged, so a training curve shows nothing.

How a test can see it: run a fresh layer for one training step with ``momentum=1.0`` (the
running statistics become the batch's) and compare ``running_var`` with
``x.var(dim=0)`` (unbiased), or run a few batches through the layer and through
``torch.nn.BatchNorm1d`` and compare their running statistics.

The code below is the authors' ``BatchNorm`` with one edit, shown as an (old, new) pair.
"""

from authors import batchnorm
from reprokit.bughunt import derive, patch_source

BatchNorm = patch_source(batchnorm.BatchNorm,
                         ("self.momentum * var * m / (m - 1)", "self.momentum * var"))

implementation = derive(batchnorm, BatchNorm=BatchNorm)
