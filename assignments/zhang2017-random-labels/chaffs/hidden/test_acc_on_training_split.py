"""Test accuracy measured on the training split

The planted bug: in ``train``'s history, ``test_acc`` is computed on the training images and
labels (a copy-paste slip), so the logged test curve equals the training curve: 100 % on random
labels instead of chance. Caught by comparing ``history["test_acc"][-1]`` with
``evaluate(model, data.X_test, data.y_test)`` after training, or by checking that it stays near
chance on random labels while ``train_acc`` reaches 1.
"""

from authors import randlabels
from reprokit.bughunt import derive, patch_source

train = patch_source(
    randlabels.train,
    ('history["test_acc"].append(evaluate(model, data.X_test, data.y_test))',
     'history["test_acc"].append(evaluate(model, data.X_train, data.y_train))'),
)

implementation = derive(randlabels, train=train)
