"""Evaluation left in training mode

The planted bug: ``evaluate`` forgets ``model.eval()``. The test split is then normalised with
its own batch statistics instead of the population statistics (Alg. 2), the running
statistics are updated with test data on every call, and a test set of one image cannot be
evaluated at all. Caught by checking that ``evaluate`` leaves the model's buffers untouched,
or that it agrees with an accuracy computed in eval mode by hand.
"""

from authors import batchnorm
from reprokit.bughunt import derive, patch_source

evaluate = patch_source(batchnorm.evaluate, ("model.eval()", "pass"))

implementation = derive(batchnorm, evaluate=evaluate)
