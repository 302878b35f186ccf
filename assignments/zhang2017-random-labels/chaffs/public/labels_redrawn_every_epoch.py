"""Labels re-drawn every epoch

The planted bug: ``train`` corrupts the clean training labels again at the start of every
epoch (with a new seed each time) and trains on those, instead of on the labels ``make_data``
corrupted once (``data.y_train``).

Why it matters: Zhang et al. (2017, Sec. 2) fix the random labels once, before training; the
network then memorises one arbitrary labelling (Table 1: 100 % training accuracy). Labels that
change every epoch carry nothing the network could memorise, so training accuracy on the fixed
labels stays near chance and claim (a) looks "not reproduced" for a reason that is not in the
paper. The code still runs, the loss still goes down a little, nothing crashes.

How a test can see it: train on fully random labels (p = 1) long enough for the authors' code
to reach 100 % on ``data.y_train``, then check ``evaluate(model, data.X_train, data.y_train)``.

The code below is the authors' ``train`` with two edits, shown as (old, new) pairs.
"""

from authors import randlabels
from reprokit.bughunt import derive, patch_source

train = patch_source(
    randlabels.train,
    # at the start of each epoch: draw a fresh corruption of the clean labels ...
    ("model.train()",
     "model.train()\n"
     "y_epoch = corrupt_labels(data.y_train_clean, data.p, data.seed + len(history['loss']))"),
    # ... and train on it instead of on the fixed data.y_train
    ("model(data.X_train[idx]), data.y_train[idx])", "model(data.X_train[idx]), y_epoch[idx])"),
)

implementation = derive(randlabels, train=train)
