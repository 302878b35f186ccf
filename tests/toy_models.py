"""Small correct models and realistically broken ones, for testing reprokit.invariants.

Each broken model carries one bug students really write, named in its docstring.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


class MLP(nn.Module):
    """A two-layer perceptron with BatchNorm and dropout between the layers (correct)."""

    def __init__(self, d_in: int = 4, hidden: int = 16, d_out: int = 3, p: float = 0.5) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.drop = nn.Dropout(p)
        self.fc2 = nn.Linear(hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.drop(F.relu(self.bn(self.fc1(x)))))


class BatchCentredMLP(nn.Module):
    """Bug: centres each batch by its own mean in every mode, so samples leak into each other."""

    def __init__(self, d_in: int = 4, hidden: int = 16, d_out: int = 3) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.fc1(x)
        h = h - h.mean(dim=0, keepdim=True)  # "normalise" with batch statistics, always
        return self.fc2(F.relu(h))


class FunctionalDropoutMLP(nn.Module):
    """Bug: ``F.dropout(h, 0.5)`` defaults to ``training=True``, so dropout stays on in eval mode."""

    def __init__(self, d_in: int = 4, hidden: int = 16, d_out: int = 3) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_in, hidden)
        self.fc2 = nn.Linear(hidden, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.dropout(F.relu(self.fc1(x)), 0.5))


class CausalSelfAttention(nn.Module):
    """Single-head causal self-attention over ``(batch, T, d)``, nanoGPT style.

    ``mask_diagonal=1`` blocks every j > i (correct); ``mask_diagonal=2`` is the off-by-one
    bug that lets position i see position i + 1.
    """

    def __init__(self, d: int = 8, mask_diagonal: int = 1) -> None:
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.mask_diagonal = mask_diagonal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, d = x.shape[-2], x.shape[-1]
        q, k, v = self.qkv(x).split(d, dim=-1)
        att = q @ k.transpose(-2, -1) / d**0.5  # Vaswani et al. 2017, Eq. 1
        future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=self.mask_diagonal)
        att = att.masked_fill(future, float("-inf")).softmax(dim=-1)
        return self.proj(att @ v)


class SetAttention(nn.Module):
    """Self-attention over a set ``(batch, n, d)``; ``positional=True`` adds a learned
    position embedding, the bug that makes a set model order-dependent."""

    def __init__(self, d: int = 8, n_max: int = 16, positional: bool = False) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d, num_heads=2, batch_first=True)
        self.pos = nn.Parameter(torch.randn(n_max, d)) if positional else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pos is not None:
            x = x + self.pos[: x.shape[1]]
        return self.attn(x, x, x, need_weights=False)[0]


class HandBatchNorm(nn.Module):
    """Batch normalisation written by hand (Ioffe & Szegedy 2015, Algorithm 1).

    ``bug="unbiased"`` normalises with the unbiased variance; ``bug="centre_only"``
    subtracts the mean and forgets to divide by the standard deviation.
    """

    def __init__(self, eps: float = 1e-5, bug: str | None = None) -> None:
        super().__init__()
        self.eps, self.bug = eps, bug

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(dim=0, keepdim=True)
        if self.bug == "centre_only":
            return x - mu
        var = x.var(dim=0, unbiased=self.bug == "unbiased", keepdim=True)
        return (x - mu) / torch.sqrt(var + self.eps)


class LinearThenNorm(nn.Module):
    """``norm(W u)`` with W bias-free: BN makes it invariant to the scale of W (Sec 3.3)."""

    def __init__(self, norm: nn.Module, d_in: int = 4, d_out: int = 5) -> None:
        super().__init__()
        self.fc = nn.Linear(d_in, d_out, bias=False)
        self.norm = norm

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.norm(self.fc(u))


class SoftmaxClassifier(nn.Module):
    """A linear classifier returning class probabilities along ``dim`` (dim=0 is the bug)."""

    def __init__(self, d_in: int = 4, classes: int = 3, dim: int = -1) -> None:
        super().__init__()
        self.fc = nn.Linear(d_in, classes)
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x).softmax(dim=self.dim)


class HandLogSoftmax(nn.Module):
    """Bug: ``log(softmax(z))`` underflows to -inf for a large logit gap; use log_softmax."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.log(torch.softmax(z, dim=-1))


class _CubeWrongBackward(torch.autograd.Function):
    """x**3 whose backward forgets the factor 3 (the bug)."""

    @staticmethod
    def forward(ctx, x):  # noqa: ANN001, ANN205 - autograd's signature
        ctx.save_for_backward(x)
        return x**3

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        (x,) = ctx.saved_tensors
        return grad * x**2


class _CubeRightBackward(_CubeWrongBackward):
    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001, ANN205
        (x,) = ctx.saved_tensors
        return grad * 3 * x**2


class CubeLayer(nn.Module):
    """Linear then a custom-autograd cube; ``wrong_backward=True`` is the bug."""

    def __init__(self, d_in: int = 3, d_out: int = 2, wrong_backward: bool = False) -> None:
        super().__init__()
        self.fc = nn.Linear(d_in, d_out)
        self.cube = _CubeWrongBackward if wrong_backward else _CubeRightBackward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cube.apply(self.fc(x))


class Standardiser(nn.Module):
    """Standardises inputs with statistics fitted once, then a linear layer.

    ``as_buffer=False`` is the bug: the mean is a plain attribute, so it is not in the
    state dict and a reloaded model forgets it.
    """

    def __init__(self, d_in: int = 4, d_out: int = 2, as_buffer: bool = True) -> None:
        super().__init__()
        self.fc = nn.Linear(d_in, d_out)
        if as_buffer:
            self.register_buffer("mean", torch.zeros(d_in))
        else:
            self.mean = torch.zeros(d_in)

    def fit(self, x: torch.Tensor) -> Standardiser:
        """Remember the mean of ``x``."""
        self.mean.copy_(x.mean(dim=0))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x - self.mean)


class UnseededInit(nn.Module):
    """Bug: initialises its weight from ``np.random.default_rng()`` with no seed."""

    def __init__(self, d_in: int = 4, d_out: int = 2) -> None:
        super().__init__()
        rng = np.random.default_rng()  # fresh OS entropy every time
        self.weight = nn.Parameter(torch.tensor(rng.normal(size=(d_out, d_in)), dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight.T


class FrozenFirstLayer(nn.Module):
    """An MLP whose first layer is frozen (``requires_grad=False``)."""

    def __init__(self, d_in: int = 4, hidden: int = 8, d_out: int = 3) -> None:
        super().__init__()
        self.body = nn.Linear(d_in, hidden)
        self.head = nn.Linear(hidden, d_out)
        self.body.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.tanh(self.body(x)))


def toy_batch(n: int = 8, d_in: int = 4, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A small seeded classification batch (from a private generator)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d_in, generator=g), torch.randint(0, classes, (n,), generator=g)
