"""reprokit: published ML results as autograded reproducibility assignments."""

__version__ = "0.1.0"
