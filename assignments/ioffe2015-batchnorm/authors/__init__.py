"""The authors' code for Ioffe & Szegedy (2015), "Batch Normalization: Accelerating Deep
Network Training by Reducing Internal Covariate Shift" (ICML), scaled down to
scikit-learn's bundled 8x8 digits.

Import it as ``from authors import batchnorm`` or ``from authors.batchnorm import ...``.
"""

from . import batchnorm
from .batchnorm import (
    DEFAULTS,
    MLP,
    NUM_CLASSES,
    BatchNorm,
    Splits,
    build_model,
    epochs_to_reach,
    evaluate,
    load_digits_split,
    run_experiment,
    sigmoid_input_percentiles,
    train,
)

__all__ = [
    "DEFAULTS",
    "MLP",
    "NUM_CLASSES",
    "BatchNorm",
    "Splits",
    "batchnorm",
    "build_model",
    "epochs_to_reach",
    "evaluate",
    "load_digits_split",
    "run_experiment",
    "sigmoid_input_percentiles",
    "train",
]
