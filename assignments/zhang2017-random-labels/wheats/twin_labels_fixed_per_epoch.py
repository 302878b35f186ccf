"""Epoch labels bound once per epoch

Twin of the public chaff "Labels re-drawn every epoch": ``train`` binds ``y_epoch`` at the start
of each epoch, as the chaff does, but to the labels ``make_data`` corrupted once. Correct.
"""

from authors import randlabels
from reprokit.bughunt import derive, patch_source

train = patch_source(
    randlabels.train,
    ("model.train()", "model.train()\ny_epoch = data.y_train"),
    ("model(data.X_train[idx]), data.y_train[idx])", "model(data.X_train[idx]), y_epoch[idx])"),
)

implementation = derive(randlabels, train=train)
