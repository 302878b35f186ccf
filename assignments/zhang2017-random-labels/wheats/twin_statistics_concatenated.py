"""Normalisation statistics from a concatenation of the training images

Twin of a hidden chaff: the statistics come from ``torch.cat`` of the training images with an
empty slice of the test images, which is the training images alone. Correct.
"""

from authors import randlabels
from reprokit.bughunt import derive, patch_source

load_digits_split = patch_source(
    randlabels.load_digits_split,
    ("mean = X_train.mean(dim=0)", "mean = torch.cat([X_train, X_test[:0]]).mean(dim=0)"),
    ("std = X_train.std(dim=0)", "std = torch.cat([X_train, X_test[:0]]).std(dim=0)"),
)

implementation = derive(randlabels, load_digits_split=load_digits_split)
