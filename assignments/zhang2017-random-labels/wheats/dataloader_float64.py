"""DataLoader minibatches, float64 standardisation, batched evaluation

A correct alternative to the authors' code that differs where the paper leaves room:

* ``load_digits_split`` computes the pixel means and standard deviations in float64 (from the
  training images only) before casting back to float32, so features (and the ``mean`` and
  ``std`` it returns, as the authors' ``Splits`` documents) differ from the authors' in the
  last bits;
* ``train`` draws minibatches with ``torch.utils.data.DataLoader`` (shuffled by a generator
  seeded from ``seed``): another order than the authors' ``randperm``, equally valid, equally
  deterministic;
* ``evaluate`` counts correct predictions in chunks of 256 rows.

Same results up to floating point and the order of minibatches. A test that compares
features or trained weights bit for bit with the authors' rejects it.
"""

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from authors import randlabels
from reprokit.bughunt import derive


def load_digits_split(seed=0, test_fraction=0.25, n_train=None):
    from sklearn.datasets import load_digits

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be strictly between 0 and 1, got {test_fraction!r}")
    digits = load_digits()
    X = digits.data.astype(np.float64)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    test, train_idx = order[:n_test], order[n_test:]
    if n_train is not None:
        if not 1 <= n_train <= len(train_idx):
            raise ValueError(f"n_train must be between 1 and {len(train_idx)}, got {n_train!r}")
        train_idx = train_idx[:n_train]
    mean = X[train_idx].mean(axis=0)
    std = X[train_idx].std(axis=0, ddof=1)
    std[std == 0] = 1.0

    def f32(a):
        return torch.tensor(a, dtype=torch.float32)

    return randlabels.Splits(f32((X[train_idx] - mean) / std), torch.tensor(y[train_idx]),
                             f32((X[test] - mean) / std), torch.tensor(y[test]), f32(mean), f32(std))


def evaluate(model, X, y):
    was_training = model.training
    model.eval()
    try:
        correct = 0
        with torch.no_grad():
            for start in range(0, len(y), 256):
                logits = model(X[start:start + 256])
                correct += int((logits.argmax(dim=1) == y[start:start + 256]).sum())
        return correct / max(len(y), 1)
    finally:
        model.train(was_training)


def train(model, data, *, epochs, lr, batch_size, weight_decay=0.0, seed=0, log_test=True):
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    loader = DataLoader(TensorDataset(data.X_train, data.y_train), batch_size=batch_size,
                        shuffle=True, generator=torch.Generator().manual_seed(seed + 1))
    history = {"loss": [], "train_acc": [], "test_acc": []}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for epoch in range(epochs):
            for group in opt.param_groups:  # the authors' per-epoch decay (Appendix A)
                group["lr"] = lr * getattr(randlabels, "LR_DECAY", 1.0) ** epoch
            model.train()
            total, seen = 0.0, 0
            for xb, yb in loader:
                opt.zero_grad(set_to_none=True)
                loss = nn.functional.cross_entropy(model(xb), yb)
                loss.backward()
                opt.step()
                total += loss.item() * len(yb)
                seen += len(yb)
            history["loss"].append(total / seen)
            history["train_acc"].append(evaluate(model, data.X_train, data.y_train))
            if log_test:
                history["test_acc"].append(evaluate(model, data.X_test, data.y_test))
    return history


implementation = derive(randlabels, load_digits_split=load_digits_split, evaluate=evaluate,
                        train=train)
