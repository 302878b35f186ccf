"""Features standardised with statistics of all images, test images included

The planted bug: ``load_split`` computes the mean and standard deviation used to standardise
the pixels over every image, the test images included, instead of over the training images
only.

Why it matters: the test set stands in for data the model has never seen. Statistics taken
from it leak a little of it into training, and the reported test accuracy is then measured on
data that shaped the model: a classic way for a reproduction to look better than the method.

How a test can see it: undo the standardisation of the training images
(``X_train * std + mean``) and compare the mean of those raw pixels with ``split.mean``: with
training statistics they agree.
"""

from authors import classifier

from reprokit.bughunt import derive, patch_source

load_split = patch_source(
    classifier.load_split,
    ("mean = X[train_rows].mean(dim=0)", "mean = X.mean(dim=0)"),
    ("std = X[train_rows].std(dim=0)", "std = X.std(dim=0)"),
)

implementation = derive(classifier, load_split=load_split)
