"""Dropout left on at evaluation

The planted bug: ``evaluate`` forgets ``model.eval()``, so dropout keeps dropping units while
accuracy is measured: with dropout > 0 the accuracy is noisy and too low. Caught by comparing
``evaluate`` on a model with dropout with the accuracy the same model has in eval mode.
"""

from authors import classifier

from reprokit.bughunt import derive, patch_source

evaluate = patch_source(classifier.evaluate, ("model.eval()", "pass"))

implementation = derive(classifier, evaluate=evaluate)
