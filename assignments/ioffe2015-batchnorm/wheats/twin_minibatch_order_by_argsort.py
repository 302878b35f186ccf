"""Mini-batch order from argsort of seeded uniforms

Twin of the public chaff "Mini-batch order ignores the seed": ``train`` draws each epoch's
order as ``torch.argsort(torch.rand(n, generator=g))``, another permutation drawn from the
generator seeded with ``seed``. Correct.
"""

from authors import batchnorm
from reprokit.bughunt import derive, patch_source

train = patch_source(batchnorm.train, ("torch.randperm(n, generator=g)",
                                       "torch.argsort(torch.rand(n, generator=g))"))

implementation = derive(batchnorm, train=train)
