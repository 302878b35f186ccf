"""The authors' code (a worked example: replace it with the code of your paper).

Import it as ``from authors import classifier``.
"""

from . import classifier
from .classifier import DEFAULTS, MLP, NUM_CLASSES, Split, evaluate, load_split, run_experiment, train

__all__ = ["DEFAULTS", "MLP", "NUM_CLASSES", "Split", "classifier", "evaluate", "load_split",
           "run_experiment", "train"]
