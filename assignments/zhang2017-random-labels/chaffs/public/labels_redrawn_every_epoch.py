"""Labels re-drawn every epoch

The planted bug: ``train`` corrupts the clean training labels again at the start of every
epoch (with a new seed each time) instead of using the labels ``make_data`` corrupted once.

Why it matters: Zhang et al. (2017, Sec. 2) fix the random labels once, before training; the
network then memorises one arbitrary labelling (Table 1: 100 % training accuracy). Labels that
change every epoch carry no information the network could memorise, so training accuracy on
the fixed labels stays near chance and claim (a) looks "not reproduced" for a reason that is
not in the paper. The code still runs, the loss still goes down a little, nothing crashes.

How a test can see it: train on fully random labels (p = 1) long enough for the authors' code
to reach 100 % on ``data.y_train``, then check ``evaluate(model, data.X_train, data.y_train)``.
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
        for epoch in range(epochs):
            model.train()
            y_epoch = corrupt_labels(data.y_train_clean, data.p, data.seed + epoch)
            total = 0.0
            for idx in torch.randperm(n, generator=g).split(batch_size):
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(data.X_train[idx]), y_epoch[idx])
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
            history["loss"].append(total / n)
            history["train_acc"].append(evaluate(model, data.X_train, data.y_train))
            if log_test:
                history["test_acc"].append(evaluate(model, data.X_test, data.y_test))
    return history


implementation = derive(randlabels, train=train)
