"""Evaluation switched to eval mode with train(False)

Twin of a hidden chaff: ``evaluate`` calls ``model.train(False)``, which is ``model.eval()``.
Correct.
"""

from authors import batchnorm
from reprokit.bughunt import derive, patch_source

evaluate = patch_source(batchnorm.evaluate, ("model.eval()", "model.train(False)"))

implementation = derive(batchnorm, evaluate=evaluate)
