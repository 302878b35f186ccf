"""Test accuracy measured on the training split

The planted bug: in ``train``'s history, ``test_acc`` is computed on the training images and
labels (a copy-paste slip), so the logged test curve equals the training curve: 100 % on random
labels instead of chance. Caught by comparing ``history["test_acc"][-1]`` with
``evaluate(model, data.X_test, data.y_test)`` after training, or by checking that it stays near
chance on random labels while ``train_acc`` reaches 1.
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
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(data.X_train[idx]), data.y_train[idx])
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            history["loss"].append(total / n)
            history["train_acc"].append(evaluate(model, data.X_train, data.y_train))
            if log_test:
                history["test_acc"].append(evaluate(model, data.X_train, data.y_train))
    return history


implementation = derive(randlabels, train=train)
