"""Gradients not zeroed between steps

The planted bug: ``train`` never calls ``opt.zero_grad()``, so every step's gradient is the sum
of all gradients so far. Training still runs and the loss may still fall at first, but the
optimisation is not the paper's: fitting random labels becomes slow or fails. Caught by checking
that a short run memorises a small randomly labelled set, or by comparing two full-batch steps
with a hand-written Adam loop.
"""

import torch
from torch import nn

from authors import randlabels
from reprokit.bughunt import derive


def train(model, data, *, epochs, lr, batch_size, weight_decay=0.0, seed=0, log_test=True):
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    n = len(data.y_train)
    history = {"loss": [], "train_acc": [], "test_acc": []}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(epochs):
            model.train()
            total = 0.0
            for idx in torch.randperm(n, generator=g).split(batch_size):
                loss = nn.functional.cross_entropy(model(data.X_train[idx]), data.y_train[idx])
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            history["loss"].append(total / n)
            history["train_acc"].append(evaluate(model, data.X_train, data.y_train))
            if log_test:
                history["test_acc"].append(evaluate(model, data.X_test, data.y_test))
    return history


implementation = derive(randlabels, train=train)
