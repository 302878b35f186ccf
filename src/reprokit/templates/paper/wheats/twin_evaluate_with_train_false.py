"""Evaluation switched to eval mode with train(False)

Twin of a hidden chaff: the authors' ``evaluate`` with ``model.eval()`` written as
``model.train(False)``, which is the same call. Correct.
"""

from authors import classifier

from reprokit.bughunt import derive, patch_source

evaluate = patch_source(classifier.evaluate, ("model.eval()", "model.train(False)"))

implementation = derive(classifier, evaluate=evaluate)
