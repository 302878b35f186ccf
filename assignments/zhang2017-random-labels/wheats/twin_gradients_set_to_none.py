"""Gradients cleared with set_to_none

Twin of a hidden chaff: ``train`` clears gradients with ``opt.zero_grad(set_to_none=True)``
before every step. Correct.
"""

from authors import randlabels
from reprokit.bughunt import derive, patch_source

train = patch_source(randlabels.train, ("opt.zero_grad()", "opt.zero_grad(set_to_none=True)"))

implementation = derive(randlabels, train=train)
