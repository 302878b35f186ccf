"""Statistics in float64 from shifted moments, mini-batches in a NumPy order

A correct alternative to the authors' code that differs where the paper leaves room:

* ``BatchNorm.forward`` computes in float64 and returns float32. The batch variance is
  E[d^2] - E[d]^2 of the inputs shifted by the batch's first row, d = x - x_0 (a shift does
  not change a variance, and it keeps the subtraction from cancelling), clamped at 0; the
  running statistics are updated from the same float64 values;
* ``train`` draws each epoch's mini-batch order from ``numpy.random.default_rng(seed)``:
  another order than the authors' ``randperm``, equally valid, equally deterministic.

Same results up to floating point and the order of mini-batches. A test that compares
outputs or trained weights bit for bit with the authors' rejects it.
"""

import numpy as np
import torch
from torch import Tensor, nn

from authors import batchnorm
from reprokit.bughunt import derive


class BatchNorm(nn.Module):
    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 2 or x.shape[1] != self.num_features:
            raise ValueError(f"expected input of shape (batch, {self.num_features}), got {tuple(x.shape)}")
        xd = x.to(torch.float64)
        if self.training:
            m = x.shape[0]
            if m < 2:
                raise ValueError("batch normalisation in training mode needs at least 2 examples")
            shift = xd[0].detach()
            d = xd - shift
            mean_d = d.mean(dim=0)
            var = ((d * d).mean(dim=0) - mean_d * mean_d).clamp_min(0.0)
            mean = shift + mean_d
            with torch.no_grad():
                new_mean = (1 - self.momentum) * self.running_mean.double() + self.momentum * mean
                new_var = (1 - self.momentum) * self.running_var.double() + self.momentum * var * (m / (m - 1))
                self.running_mean.copy_(new_mean)
                self.running_var.copy_(new_var)
        else:
            mean, var = self.running_mean.double(), self.running_var.double()
        x_hat = (xd - mean) / torch.sqrt(var + self.eps)
        return (self.weight.double() * x_hat + self.bias.double()).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


def train(model, data, *, epochs, lr, batch_size=60, seed=0, log_test=True):
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    n = len(data.y_train)
    history = {"loss": [], "train_acc": [], "test_acc": [], "percentiles": [], "diverged": False}
    for _ in range(epochs):
        model.train()
        total = 0.0
        order = torch.from_numpy(rng.permutation(n))
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            if len(idx) < 2 and model.batch_norm:
                continue
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


implementation = derive(batchnorm, BatchNorm=BatchNorm, train=train)
