"""Training statistics computed in float64

Twin of the public chaff: the authors' ``load_split`` with the mean and standard deviation of
the training images computed in float64 and rounded back to float32. Correct: the statistics
are the training images' own, to float32 precision.
"""

import torch
from authors import classifier

from reprokit.bughunt import derive, patch_source

load_split = patch_source(
    classifier.load_split,
    ("mean = X[train_rows].mean(dim=0)", "mean = X[train_rows].double().mean(dim=0).float()"),
    ("std = X[train_rows].std(dim=0)", "std = X[train_rows].double().std(dim=0).float()"),
    names={"torch": torch},
)

implementation = derive(classifier, load_split=load_split)
