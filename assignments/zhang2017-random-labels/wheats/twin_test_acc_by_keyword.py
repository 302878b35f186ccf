"""Logged test accuracy computed with keyword arguments

Twin of a hidden chaff: ``train`` logs ``evaluate(model, X=data.X_test, y=data.y_test)``, the
test split, where the chaff pasted the training split. Correct.
"""

from authors import randlabels
from reprokit.bughunt import derive, patch_source

train = patch_source(
    randlabels.train,
    ('history["test_acc"].append(evaluate(model, data.X_test, data.y_test))',
     'history["test_acc"].append(evaluate(model, X=data.X_test, y=data.y_test))'),
)

implementation = derive(randlabels, train=train)
