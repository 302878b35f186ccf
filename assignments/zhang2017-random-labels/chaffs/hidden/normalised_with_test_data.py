"""Test images used for the normalisation statistics

The planted bug: ``load_digits_split`` standardises with the mean and standard deviation of ALL
images (training and test) instead of the training images only: information from the test set
leaks into training. Caught by checking that the training features have per-pixel mean 0 and
standard deviation 1 (they are off by a few hundredths here), or by recomputing the statistics
from the raw training images.
"""

from authors import randlabels
from reprokit.bughunt import derive, patch_source

load_digits_split = patch_source(
    randlabels.load_digits_split,
    ("mean = X_train.mean(dim=0)", "mean = torch.cat([X_train, X_test]).mean(dim=0)"),
    ("std = X_train.std(dim=0)", "std = torch.cat([X_train, X_test]).std(dim=0)"),
)

implementation = derive(randlabels, load_digits_split=load_digits_split)
