"""Test labels passed through corrupt_labels with p = 0

Twin of the public chaff "Corruption applied to the test split": ``make_data`` passes the test
labels through ``corrupt_labels`` as the chaff does, but with p = 0, which keeps them. Correct.
"""

from authors import randlabels
from reprokit.bughunt import derive, patch_source

make_data = patch_source(
    randlabels.make_data,
    ("s.X_test, s.y_test,", "s.X_test, corrupt_labels(s.y_test, 0.0, seed + 1),"),
)

implementation = derive(randlabels, make_data=make_data)
