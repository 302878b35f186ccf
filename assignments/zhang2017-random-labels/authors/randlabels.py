"""Random labels on the 8x8 digits: Zhang et al. (2017), "Understanding deep learning
requires rethinking generalization", ICLR, https://arxiv.org/abs/1611.03530.

The paper (Sec. 2) trains standard networks on CIFAR10 and ImageNet after replacing some
or all of the training labels by random classes. Its findings, which this file lets you
check on a CPU in seconds:

* Table 1, Fig. 1a: the networks still reach 100 % training accuracy on random labels,
  while the test accuracy falls to chance (10 % for 10 classes).
* Fig. 1a: fitting random labels takes only a small constant factor longer.
* Fig. 1c: test error rises steadily as the fraction of corrupted labels goes from 0 to 1.
* Table 2, Sec. 3: weight decay and dropout do not stop the networks fitting random labels.

Scale: scikit-learn's digits (1,797 images of 8x8 pixels, 10 classes, bundled offline)
stand in for CIFAR10, and the paper's "MLP 1x512 / 3x512" (Table 1) for an MLP with two
hidden layers of 512 units: ~300k parameters for ~1,350 training images, so the model is
over-parameterised as in the paper. The paper trains with SGD + momentum (Appendix A);
here Adam reaches the same end in far fewer epochs, which keeps every run a few seconds.

Everything is deterministic on the CPU: each source of randomness (the split, the label
corruption, the weight initialisation, the minibatch order, dropout) is drawn from a
generator seeded by the ``seed`` argument, never from whatever state the caller left.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

NUM_CLASSES = 10

#: Appendix A decays the learning rate by a factor 0.95 after every epoch; with Adam on
#: digits 0.97 lets random labels fit first. Without a decay, Adam's steps keep their
#: size after the fit and jostle a memorised training set between 99.6 % and 100 %.
LR_DECAY = 0.97

#: The paper's setup scaled to digits: an over-parameterised MLP, no explicit
#: regularisation (Table 1's rows without weight decay or augmentation), Adam.
DEFAULTS: dict = {
    "hidden": (512, 512),   # Table 1 "MLP 1x512", one hidden layer deeper
    "dropout": 0.0,         # Sec. 3: regularisers off unless asked for
    "weight_decay": 0.0,
    "lr": 2e-3,             # Adam, decayed by LR_DECAY per epoch (Appendix A)
    "batch_size": 128,      # a usual CIFAR10 minibatch size
    "epochs": 60,           # random labels fit in ~40 epochs, true ones in ~6 (Fig. 1a)
    "n_train": None,        # all ~1,350 training images
    "test_fraction": 0.25,
}


@dataclass(frozen=True)
class Splits:
    """A train/test split of the digits: ``X_*`` float32 (n, 64), ``y_*`` int64 (n,).
    ``mean`` and ``std`` (64,) are the training pixels' statistics used to standardise
    both splits: a new raw image ``x`` (pixels 0-16) goes in as ``(x - mean) / std``."""

    X_train: Tensor
    y_train: Tensor
    X_test: Tensor
    y_test: Tensor
    mean: Tensor | None = None
    std: Tensor | None = None


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 raw digits (pixels 0-16) and labels, read once per process."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data, bunch.target


def load_digits_split(seed: int = 0, test_fraction: float = 0.25,
                      n_train: int | None = None) -> Splits:
    """Shuffle the digits with ``seed``, hold out ``test_fraction`` for testing, optionally
    keep only the first ``n_train`` training images, and standardise every pixel with the
    mean and standard deviation of the TRAINING images only (the test set stays unseen)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be strictly between 0 and 1, got {test_fraction!r}")
    pixels, labels = _digits()
    X = torch.tensor(pixels, dtype=torch.float32)
    y = torch.tensor(labels, dtype=torch.int64)
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(y)))
    n_test = int(round(test_fraction * len(y)))
    test, train_idx = order[:n_test], order[n_test:]
    if n_train is not None:
        if not 1 <= n_train <= len(train_idx):
            raise ValueError(f"n_train must be between 1 and {len(train_idx)}, got {n_train!r}")
        train_idx = train_idx[:n_train]
    X_train, X_test = X[train_idx], X[test]
    mean = X_train.mean(dim=0)
    std = X_train.std(dim=0)
    std = torch.where(std > 0, std, torch.ones_like(std))  # border pixels are always 0
    return Splits((X_train - mean) / std, y[train_idx].clone(), (X_test - mean) / std, y[test].clone(),
                  mean, std)


def corrupt_labels(y: Tensor, p: float, seed: int, num_classes: int = NUM_CLASSES) -> Tensor:
    """Sec. 2 "partially corrupted labels": each label independently, with probability ``p``,
    is replaced by a class drawn uniformly from all ``num_classes`` (it may land on its
    true class, so a fraction of about p * (1 - 1/K) of the labels actually changes).
    ``p = 1`` gives the paper's "random labels". Returns a new tensor."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p is a probability: expected a number in [0, 1], got {p!r}")
    g = torch.Generator().manual_seed(seed)  # our own generator: the global RNG is untouched
    replace = torch.rand(y.shape, generator=g) < p
    random = torch.randint(0, num_classes, y.shape, generator=g, dtype=y.dtype)
    return torch.where(replace, random, y)


@dataclass
class CorruptedDigits:
    """The digits with training labels corrupted once (``y_train``); the true training
    labels are kept in ``y_train_clean``; test labels are never corrupted."""

    X_train: Tensor
    y_train: Tensor
    y_train_clean: Tensor
    X_test: Tensor
    y_test: Tensor
    p: float
    seed: int


def make_data(p: float, seed: int = 0, *, n_train: int | None = None,
              test_fraction: float = 0.25) -> CorruptedDigits:
    """Split the digits with ``seed`` and corrupt a fraction ``p`` of the training labels.
    The corruption is drawn ONCE here and stays fixed for the whole training run, as in
    Sec. 2 (labels are not re-drawn each epoch, which would make them unlearnable)."""
    s = load_digits_split(seed, test_fraction, n_train)
    return CorruptedDigits(s.X_train, corrupt_labels(s.y_train, p, seed), s.y_train,
                           s.X_test, s.y_test, p, seed)


class MLP(nn.Module):
    """Multi-layer perceptron with ReLU hidden layers (Table 1's "MLP 1x512" family);
    optional dropout after each hidden layer (Table 2's regulariser)."""

    def __init__(self, in_features: int = 64, hidden: tuple[int, ...] = (512, 512),
                 num_classes: int = NUM_CLASSES, dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits of shape (batch, num_classes)."""
        return self.net(x)


def evaluate(model: nn.Module, X: Tensor, y: Tensor) -> float:
    """Fraction of ``X`` whose largest logit is the label ``y``, computed in eval mode
    under ``torch.no_grad()``; the model's previous train/eval mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return float((model(X).argmax(dim=1) == y).float().mean())
    finally:
        model.train(was_training)


def train(model: nn.Module, data: CorruptedDigits, *, epochs: int, lr: float, batch_size: int,
          weight_decay: float = 0.0, seed: int = 0, log_test: bool = True) -> dict:
    """Minimise cross-entropy on the (possibly corrupted) training labels with Adam.

    Minibatches are reshuffled each epoch from a ``torch.Generator`` seeded with ``seed``;
    dropout masks come from a private copy of torch's RNG seeded with ``seed``, so the
    caller's RNG state is left as it was. Returns the history per epoch:
    ``{"loss": [...], "train_acc": [...], "test_acc": [...]}``, where ``train_acc`` is
    measured against the labels the model is trained on (``data.y_train``) and
    ``test_acc`` against the true test labels (empty when ``log_test`` is False)."""
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    n = len(data.y_train)
    history: dict = {"loss": [], "train_acc": [], "test_acc": []}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for epoch in range(epochs):
            for group in opt.param_groups:
                group["lr"] = lr * LR_DECAY**epoch  # Appendix A's schedule
            model.train()
            total = 0.0
            for idx in torch.randperm(n, generator=g).split(batch_size):
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(data.X_train[idx]), data.y_train[idx])
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            history["loss"].append(total / n)
            history["train_acc"].append(evaluate(model, data.X_train, data.y_train))
            if log_test:
                history["test_acc"].append(evaluate(model, data.X_test, data.y_test))
    return history


def epochs_to_fit(history: dict, threshold: float = 1.0) -> int | None:
    """The first epoch (counting from 1) whose training accuracy reaches ``threshold``;
    None if it never does (Fig. 1a's "time to fit", measured in epochs)."""
    for epoch, acc in enumerate(history["train_acc"], start=1):
        if acc >= threshold:
            return epoch
    return None


def run_experiment(p: float = 1.0, seed: int = 0, **overrides) -> dict:
    """One run of the paper's experiment: corrupt a fraction ``p`` of the labels, train an
    MLP from an initialisation seeded by ``seed`` with ``DEFAULTS`` updated by
    ``overrides``, and report ``train_acc``, ``test_acc`` (after the last epoch),
    ``epochs_to_fit``, the ``history`` and the trained ``state_dict``."""
    unknown = set(overrides) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"unknown setting(s) {sorted(unknown)}; expected some of {sorted(DEFAULTS)}")
    cfg = DEFAULTS | overrides
    data = make_data(p, seed, n_train=cfg["n_train"], test_fraction=cfg["test_fraction"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the weight initialisation
        model = MLP(data.X_train.shape[1], tuple(cfg["hidden"]), NUM_CLASSES, cfg["dropout"])
    history = train(model, data, epochs=cfg["epochs"], lr=cfg["lr"], batch_size=cfg["batch_size"],
                    weight_decay=cfg["weight_decay"], seed=seed)
    return {
        "train_acc": evaluate(model, data.X_train, data.y_train),
        "test_acc": evaluate(model, data.X_test, data.y_test),
        "epochs_to_fit": epochs_to_fit(history),
        "history": history,
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
    }
