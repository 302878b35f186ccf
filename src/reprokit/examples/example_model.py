"""A tiny over-parameterised MLP: Zhang et al. (2017) "Understanding deep learning requires
rethinking generalization" in miniature, on the 8x8 digits.

The paper (Sec. 2, Table 1, Fig. 1a) trains networks on CIFAR10 and ImageNet whose labels
were replaced by random ones, and finds the training accuracy still reaches 100 % while
the test accuracy falls to chance. Here the same experiment fits in a second on a CPU:
an MLP with far more parameters than training images, full-batch Adam, the digits data.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MLP", "accuracy", "random_labels", "train"]


class MLP(nn.Module):
    """Two hidden ReLU layers; with the defaults ~25k parameters for a few hundred images."""

    def __init__(self, n_in: int = 64, hidden: int = 128, n_classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(n_in, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of shape (batch, n_classes)."""
        return self.net(x)


def random_labels(y: torch.Tensor, n_classes: int = 10, seed: int = 0) -> torch.Tensor:
    """Sec. 3 "random labels": every label replaced by a uniform draw from the classes."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, n_classes, y.shape, generator=g, dtype=y.dtype)


def train(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, steps: int = 300,
          lr: float = 1e-2) -> list[float]:
    """Full-batch Adam on cross-entropy, no regularisation (as in Table 1's rows without
    weight decay or augmentation); returns the loss per step."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(X), y)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@torch.no_grad()
def accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of samples whose largest logit is the label (model put in eval mode)."""
    model.eval()
    return float((model(X).argmax(dim=1) == y).float().mean())
