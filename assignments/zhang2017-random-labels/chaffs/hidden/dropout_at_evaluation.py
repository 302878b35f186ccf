"""Dropout left on at evaluation

The planted bug: ``evaluate`` forgets ``model.eval()``, so dropout keeps dropping units while
accuracy is measured. With dropout > 0 (Table 2's regularised rows) accuracies are noisy and too
low, and the same model gives a different accuracy on each call. Caught by evaluating a model
with dropout twice, or by comparing with an accuracy computed in eval mode by hand.
"""

from authors import randlabels
from reprokit.bughunt import derive, patch_source

evaluate = patch_source(randlabels.evaluate, ("model.eval()", "pass"))

implementation = derive(randlabels, evaluate=evaluate)
