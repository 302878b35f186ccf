"""Corruption applied to the test split

The planted bug: ``make_data`` corrupts the test labels as well as the training labels.

Why it matters: Zhang et al. (2017, Sec. 2) corrupt only the training labels; the test set
keeps its true labels, which is what makes the test error a measure of generalisation (Fig. 1c:
test error rises with the corruption level because the network learned less of the true rule).
With corrupted test labels the test accuracy measures agreement with noise: at p = 1 it is at
chance whatever the network learned, so claim (b) "reproduces" for the wrong reason, and for
p < 1 the curve of Fig. 1c is distorted.

How a test can see it: ``make_data(p, seed).y_test`` must equal the test labels of the clean
split, e.g. ``make_data(0.0, seed).y_test`` or ``load_digits_split(seed).y_test``, for any p.

The code below is the authors' ``make_data`` with one edit, shown as an (old, new) pair.
"""

from authors import randlabels
from reprokit.bughunt import derive, patch_source

make_data = patch_source(
    randlabels.make_data,
    ("s.X_test, s.y_test,", "s.X_test, corrupt_labels(s.y_test, p, seed + 1),"),
)

implementation = derive(randlabels, make_data=make_data)
