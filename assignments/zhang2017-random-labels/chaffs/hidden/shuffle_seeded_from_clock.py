"""Minibatch order seeded from the clock

The planted bug: ``train`` seeds its shuffling generator with the current time instead of
``seed``, so two identical calls train on different minibatch orders and end with different
weights and accuracies: no run can be repeated exactly. Caught by training twice from the same
initialisation with the same seed and comparing the weights (or by running ``run_experiment``
twice with the same seed).
"""

import time

import torch
from torch import nn

from authors import randlabels
from reprokit.bughunt import derive


def train(model, data, *, epochs, lr, batch_size, weight_decay=0.0, seed=0, log_test=True):
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(time.time_ns() % 2**63)
    n = len(data.y_train)
    history = {"loss": [], "train_acc": [], "test_acc": []}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(epochs):
            model.train()
            total = 0.0
            for idx in torch.randperm(n, generator=g).split(batch_size):
                opt.zero_grad()
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
