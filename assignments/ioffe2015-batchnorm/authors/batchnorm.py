"""Batch normalisation on the 8x8 digits: Ioffe & Szegedy (2015), "Batch Normalization:
Accelerating Deep Network Training by Reducing Internal Covariate Shift", ICML,
https://arxiv.org/abs/1502.03167.

What this file lets you check on a CPU in seconds:

* Sec. 3.1, Alg. 1: in training mode a mini-batch is normalised with its own mean and
  (biased) variance, then scaled by gamma and shifted by beta; running estimates of the
  population mean and (unbiased) variance are kept for inference (Alg. 2), where the layer
  becomes a fixed affine map and one example's output no longer depends on the batch.
* Sec. 3.3: BN(Wu) = BN((aW)u) for any scalar a > 0, and the gradient with respect to the
  scaled weights shrinks by 1/a.
* Sec. 4.1, Fig. 1: a network of 3 fully connected hidden layers of 100 sigmoid units,
  mini-batches of 60, trains faster and reaches a higher test accuracy with BN, and the
  inputs to its sigmoids keep a steadier distribution over training.
* Sec. 4.2.2: BN tolerates much higher learning rates.

Scale: scikit-learn's digits (1,797 images of 8x8 pixels, 10 classes, bundled offline)
stand in for MNIST; the network is the paper's (Sec. 4.1): 3 hidden layers of 100 sigmoid
units, BN before each sigmoid, mini-batches of 60, plain SGD.

Conventions follow PyTorch's ``nn.BatchNorm1d`` so that the two can be compared:
``momentum`` is the weight of the NEW batch statistic in the running average
(``running = (1 - momentum) * running + momentum * batch``), i.e. 1 minus the usual decay,
and the running variance is the unbiased (n - 1) estimate (Alg. 2, step 10: m/(m-1)).

Everything is deterministic on the CPU: the split, the initialisation and the mini-batch
order are drawn from generators seeded by the ``seed`` argument, never from whatever state
the caller left.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

NUM_CLASSES = 10

#: Sec. 4.1 at digits scale: 3 x 100 sigmoid units, mini-batches of 60, SGD.
DEFAULTS: dict = {
    "hidden": (100, 100, 100),
    "batch_norm": True,
    "lr": 2.0,              # the plain network's best rate on digits; BN also trains at 10x
    "batch_size": 60,
    "epochs": 30,
    "test_fraction": 0.25,
}


@dataclass(frozen=True)
class Splits:
    """A train/test split of the digits: ``X_*`` float32 (n, 64), ``y_*`` int64 (n,).
    Pixels are scaled to [0, 1] (divided by 16); nothing is standardised, so that the
    network, not the data pipeline, has to cope with the inputs' scale."""

    X_train: Tensor
    y_train: Tensor
    X_test: Tensor
    y_test: Tensor


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data, bunch.target


def load_digits_split(seed: int = 0, test_fraction: float = 0.25) -> Splits:
    """Shuffle the digits with ``seed`` and hold out ``test_fraction`` for testing."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be strictly between 0 and 1, got {test_fraction!r}")
    pixels, labels = _digits()
    X = torch.tensor(pixels, dtype=torch.float32) / 16.0
    y = torch.tensor(labels, dtype=torch.int64)
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(y)))
    n_test = int(round(test_fraction * len(y)))
    test, train_idx = order[:n_test], order[n_test:]
    return Splits(X[train_idx], y[train_idx].clone(), X[test], y[test].clone())


class BatchNorm(nn.Module):
    """Alg. 1 (training) and Alg. 2 (inference) for inputs of shape (batch, features).

    Training mode: normalise each feature over the mini-batch with the batch mean and the
    biased batch variance, ``x_hat = (x - mean) / sqrt(var + eps)``, return
    ``gamma * x_hat + beta``, and update the running statistics with the unbiased variance.
    Eval mode: use the running statistics instead, so the layer is a fixed affine map."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(num_features))   # gamma
        self.bias = nn.Parameter(torch.zeros(num_features))    # beta
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.num_features:
            raise ValueError(f"expected input of shape (batch, {self.num_features}), got {tuple(x.shape)}")
        if self.training:
            if x.shape[0] < 2:
                raise ValueError("batch normalisation in training mode needs at least 2 examples")
            mean = x.mean(dim=0)
            var = x.var(dim=0, unbiased=False)
            with torch.no_grad():
                m = x.shape[0]
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * var * m / (m - 1))
        else:
            mean, var = self.running_mean, self.running_var
        x_hat = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight * x_hat + self.bias

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class MLP(nn.Module):
    """Sec. 4.1's network: fully connected hidden layers of sigmoid units, with
    ``BatchNorm`` between each linear map and its sigmoid when ``batch_norm`` is True
    (Sec. 3.2: BN goes right before the nonlinearity, and the linear map's bias is dropped
    because beta takes its role)."""

    def __init__(self, in_features: int = 64, hidden: tuple[int, ...] = (100, 100, 100),
                 num_classes: int = NUM_CLASSES, batch_norm: bool = True) -> None:
        super().__init__()
        self.batch_norm = batch_norm
        self.linears = nn.ModuleList()
        self.norms = nn.ModuleList()
        width = in_features
        for h in hidden:
            self.linears.append(nn.Linear(width, h, bias=not batch_norm))
            self.norms.append(BatchNorm(h) if batch_norm else nn.Identity())
            width = h
        self.head = nn.Linear(width, num_classes)

    def sigmoid_inputs(self, x: Tensor) -> list[Tensor]:
        """The input to every hidden layer's sigmoid (after BN when it is on), for
        Fig. 1(b, c); computed in the model's current mode."""
        inputs = []
        for linear, norm in zip(self.linears, self.norms, strict=True):
            z = norm(linear(x))
            inputs.append(z)
            x = torch.sigmoid(z)
        return inputs

    def forward(self, x: Tensor) -> Tensor:
        """Class logits of shape (batch, num_classes)."""
        for linear, norm in zip(self.linears, self.norms, strict=True):
            x = torch.sigmoid(norm(linear(x)))
        return self.head(x)


def evaluate(model: nn.Module, X: Tensor, y: Tensor) -> float:
    """Fraction of ``X`` whose largest logit is the label ``y``, computed in eval mode
    (so BN uses its running statistics) under ``torch.no_grad()``; the model's previous
    train/eval mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return float((model(X).argmax(dim=1) == y).float().mean())
    finally:
        model.train(was_training)


def sigmoid_input_percentiles(model: MLP, X: Tensor, layer: int = -1, unit: int = 0,
                              qs: tuple[float, ...] = (0.15, 0.5, 0.85)) -> list[float]:
    """Fig. 1(b, c): the 15th, 50th and 85th percentiles of the input to one sigmoid
    (hidden ``layer``, ``unit``) over the examples ``X``, measured in eval mode."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            z = model.sigmoid_inputs(X)[layer][:, unit]
            return [float(v) for v in torch.quantile(z, torch.tensor(qs))]
    finally:
        model.train(was_training)


def build_model(batch_norm: bool = True, seed: int = 0, hidden: tuple[int, ...] = (100, 100, 100),
                in_features: int = 64) -> MLP:
    """The network with its initialisation drawn from ``seed`` (the caller's RNG is untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MLP(in_features, tuple(hidden), NUM_CLASSES, batch_norm)


def train(model: MLP, data: Splits, *, epochs: int, lr: float, batch_size: int = 60,
          seed: int = 0, log_test: bool = True) -> dict:
    """Minimise cross-entropy with plain SGD (Sec. 4.1) on mini-batches of ``batch_size``,
    reshuffled each epoch from a ``torch.Generator`` seeded with ``seed``.

    Returns the history per epoch: ``loss`` (mean training loss), ``train_acc``,
    ``test_acc`` (empty when ``log_test`` is False) and ``percentiles`` (Fig. 1(b, c): the
    15/50/85th percentiles of the last hidden layer's first sigmoid input over the test
    images, measured in eval mode). A loss that becomes NaN or infinite ends training
    early: the run has diverged, and ``diverged`` is set to True."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    n = len(data.y_train)
    history: dict = {"loss": [], "train_acc": [], "test_acc": [], "percentiles": [], "diverged": False}
    for _ in range(epochs):
        model.train()
        total = 0.0
        for idx in torch.randperm(n, generator=g).split(batch_size):
            if len(idx) < 2 and model.batch_norm:
                continue  # a batch of one cannot be normalised; drop it
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(data.X_train[idx]), data.y_train[idx])
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        history["loss"].append(total / n)
        if not np.isfinite(total):
            history["diverged"] = True
            break
        history["train_acc"].append(evaluate(model, data.X_train, data.y_train))
        if log_test:
            history["test_acc"].append(evaluate(model, data.X_test, data.y_test))
            history["percentiles"].append(sigmoid_input_percentiles(model, data.X_test))
    return history


def epochs_to_reach(history: dict, accuracy: float, key: str = "test_acc") -> int | None:
    """The first epoch (counting from 1) whose ``key`` accuracy reaches ``accuracy``;
    None if it never does (Fig. 1a's "faster", measured in epochs)."""
    for epoch, acc in enumerate(history[key], start=1):
        if acc >= accuracy:
            return epoch
    return None


def run_experiment(batch_norm: bool = True, seed: int = 0, **overrides) -> dict:
    """One run of Sec. 4.1's experiment at digits scale: split with ``seed``, build the
    network (with or without BN) from ``seed``, train with ``DEFAULTS`` updated by
    ``overrides``. Reports ``train_acc`` and ``test_acc`` after the last epoch, the
    ``history`` and the trained ``state_dict``."""
    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown setting(s) {sorted(unknown)}; expected some of {sorted(DEFAULTS)}")
    cfg = DEFAULTS | overrides | {"batch_norm": batch_norm}
    data = load_digits_split(seed, cfg["test_fraction"])
    model = build_model(cfg["batch_norm"], seed, tuple(cfg["hidden"]), data.X_train.shape[1])
    history = train(model, data, epochs=cfg["epochs"], lr=cfg["lr"], batch_size=cfg["batch_size"],
                    seed=seed)
    return {
        "train_acc": evaluate(model, data.X_train, data.y_train),
        "test_acc": evaluate(model, data.X_test, data.y_test),
        "history": history,
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
    }
