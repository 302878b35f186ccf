"""torch's batch_norm kernel, evaluation in chunks

A correct alternative to the authors' code that differs where the paper leaves room:

* ``BatchNorm.forward`` calls ``torch.nn.functional.batch_norm`` with the layer's own
  running statistics, gamma and beta: PyTorch's kernel, with PyTorch's conventions, which the
  authors' layer follows (momentum weighs the new batch; the running variance is unbiased);
  its arithmetic differs from the authors' in the last bits;
* ``evaluate`` counts correct predictions in chunks of 128 images, in eval mode.

A test that compares outputs bit for bit with the authors' layer rejects it.
"""

import torch
from torch import Tensor, nn
from torch.nn import functional as F

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
        if self.training and x.shape[0] < 2:
            raise ValueError("batch normalisation in training mode needs at least 2 examples")
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=self.training, momentum=self.momentum, eps=self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


def evaluate(model, X, y):
    was_training = model.training
    model.eval()
    correct = 0
    try:
        with torch.no_grad():
            for start in range(0, len(y), 128):
                logits = model(X[start:start + 128])
                correct += int((logits.argmax(dim=1) == y[start:start + 128]).sum())
    finally:
        model.train(was_training)
    return correct / len(y)


implementation = derive(batchnorm, BatchNorm=BatchNorm, evaluate=evaluate)
