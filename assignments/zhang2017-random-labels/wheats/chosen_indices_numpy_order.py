"""Corruption by index sampling, numpy minibatch order

A correct alternative to the authors' code:

* ``corrupt_labels`` first chooses WHICH labels to replace (each independently with
  probability p, as a Bernoulli draw from a torch generator seeded with ``seed + 1``), then
  draws only those replacements uniformly from all K classes; same distribution as Sec. 2,
  another random stream;
* ``train`` shuffles each epoch with ``numpy.random.default_rng(seed).permutation``.

A test that pins the authors' exact labels or exact weights rejects this correct version.
"""

import numpy as np
import torch
from torch import nn

from authors import randlabels
from reprokit.bughunt import derive


def corrupt_labels(y, p, seed, num_classes=randlabels.NUM_CLASSES):
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p is a probability: expected a number in [0, 1], got {p!r}")
    g = torch.Generator().manual_seed(seed + 1)
    out = y.clone()
    chosen = torch.bernoulli(torch.full(y.shape, float(p)), generator=g).bool()
    out[chosen] = torch.randint(0, num_classes, (int(chosen.sum()),), generator=g, dtype=y.dtype)
    return out


def train(model, data, *, epochs, lr, batch_size, weight_decay=0.0, seed=0, log_test=True):
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    n = len(data.y_train)
    history = {"loss": [], "train_acc": [], "test_acc": []}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for epoch in range(epochs):
            for group in opt.param_groups:  # the authors' per-epoch decay (Appendix A)
                group["lr"] = lr * getattr(randlabels, "LR_DECAY", 1.0) ** epoch
            model.train()
            order = torch.from_numpy(rng.permutation(n))
            losses = []
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                for param in model.parameters():
                    param.grad = None
                loss = nn.functional.cross_entropy(model(data.X_train[idx]), data.y_train[idx],
                                                   reduction="sum")
                (loss / len(idx)).backward()
                opt.step()
                losses.append(loss.item())
            history["loss"].append(sum(losses) / n)
            history["train_acc"].append(evaluate(model, data.X_train, data.y_train))
            if log_test:
                history["test_acc"].append(evaluate(model, data.X_test, data.y_test))
    return history


implementation = derive(randlabels, corrupt_labels=corrupt_labels, train=train)
