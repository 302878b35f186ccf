"""The authors' code for Zhang et al. (2017), "Understanding deep learning requires
rethinking generalization" (ICLR), scaled down to scikit-learn's bundled 8x8 digits.

Import it as ``from authors import randlabels`` or ``from authors.randlabels import ...``.
"""

from . import randlabels
from .randlabels import (
    DEFAULTS,
    LR_DECAY,
    MLP,
    NUM_CLASSES,
    CorruptedDigits,
    Splits,
    corrupt_labels,
    epochs_to_fit,
    evaluate,
    load_digits_split,
    make_data,
    run_experiment,
    train,
)

__all__ = [
    "DEFAULTS",
    "LR_DECAY",
    "MLP",
    "NUM_CLASSES",
    "CorruptedDigits",
    "Splits",
    "corrupt_labels",
    "epochs_to_fit",
    "evaluate",
    "load_digits_split",
    "make_data",
    "randlabels",
    "run_experiment",
    "train",
]
