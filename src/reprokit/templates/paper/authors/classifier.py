"""The authors' code of the worked example: a one-hidden-layer MLP on scikit-learn's 8x8 digits.

This file stands in for the code a paper's authors publish. Replace it with yours: one module
a student reads in one sitting, names that match the paper's symbols, the paper's
hyperparameters as ``DEFAULTS``, comments that cite the section they implement.

The example's "paper" claims (``paper.yaml``): the MLP classifies held-out digits far above
chance, and a wider hidden layer classifies them better.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

NUM_CLASSES = 10
#: The "paper's" hyperparameters (Sec. 4 of your paper, say), at digits scale.
DEFAULTS = {"hidden": 32, "dropout": 0.0, "lr": 1e-2, "batch_size": 64, "epochs": 10,
            "n_train": None}


@dataclass
class Split:
    """Standardised digits: training and test images (rows of 64 pixels) and labels."""

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor


def load_split(seed: int = 0, n_train: int | None = None, test_fraction: float = 0.25) -> Split:
    """A seeded train/test split of the digits, standardised with the training statistics only."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)  # ships with scikit-learn: nothing downloads
    X = torch.tensor(X, dtype=torch.float32)
    y = torch.tensor(y, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = round(test_fraction * len(y))
    test, train_rows = order[:n_test], order[n_test:]
    if n_train is not None:
        train_rows = train_rows[:n_train]
    mean = X[train_rows].mean(dim=0)
    std = X[train_rows].std(dim=0).clamp_min(1e-6)  # constant pixels: divide by ~0 never
    return Split((X[train_rows] - mean) / std, y[train_rows], (X[test] - mean) / std, y[test],
                 mean, std)


class MLP(nn.Module):
    """64 pixels -> ``hidden`` ReLU units -> 10 class logits (dropout after the ReLU)."""

    def __init__(self, hidden: int = DEFAULTS["hidden"], dropout: float = 0.0) -> None:
        super().__init__()
        self.hidden = nn.Linear(64, hidden)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(torch.relu(self.hidden(x))))


def train(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float,
          batch_size: int, seed: int = 0) -> list[float]:
    """Adam on cross-entropy, minibatches in a new order every epoch (drawn from ``seed``).

    Trains ``model`` in place; returns the last minibatch's loss of each epoch.
    """
    order = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(epochs):
        for idx in torch.randperm(len(y), generator=order).split(batch_size):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(X[idx]), y[idx])
            loss.backward()
            opt.step()
        losses.append(loss.item())
    return losses


def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy of ``model`` on ``(X, y)`` in eval mode; the model's mode is restored."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        accuracy = (model(X).argmax(dim=1) == y).float().mean().item()
    model.train(was_training)
    return accuracy


def run_experiment(seed: int = 0, **overrides) -> dict:
    """Train one MLP with ``DEFAULTS | overrides``; ``seed`` fixes the initial weights, the
    dropout masks and the minibatch order (the split is always ``load_split(seed=0)``).

    Returns ``{"seed", "train_acc", "test_acc", "state_dict"}``.
    """
    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"run_experiment: unknown settings {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    cfg = DEFAULTS | overrides
    split = load_split(seed=0, n_train=cfg["n_train"])
    with torch.random.fork_rng(devices=[]):  # seed the initialisation without touching the caller's RNG
        torch.manual_seed(seed)
        model = MLP(cfg["hidden"], cfg["dropout"])
        train(model, split.X_train, split.y_train, epochs=cfg["epochs"], lr=cfg["lr"],
              batch_size=cfg["batch_size"], seed=seed)
    return {"seed": seed,
            "train_acc": evaluate(model, split.X_train, split.y_train),
            "test_acc": evaluate(model, split.X_test, split.y_test),
            "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()}}
