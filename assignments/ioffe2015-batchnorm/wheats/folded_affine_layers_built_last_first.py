"""BN folded into one affine map, layers initialised last to first, NumPy percentiles

A correct alternative to the authors' code that differs where the paper leaves room:

* ``BatchNorm.forward`` folds the normalisation and gamma, beta into one affine map per
  feature, ``x * s + t`` with ``s = gamma / sqrt(var + eps)`` and ``t = beta - mean * s``
  (the form Alg. 2 writes for inference, used in both modes), and moves the running
  statistics with ``lerp_``;
* ``MLP`` creates its layers from the output back to the input, so ``build_model(seed)``
  draws other (equally valid) initial weights than the authors' for the same seed;
* ``sigmoid_input_percentiles`` uses ``numpy.percentile`` (linear interpolation, as
  ``torch.quantile``).

Same behaviour, other numbers: a test that pins the authors' initial weights, trained
weights or accuracies rejects it.
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
        if self.training:
            m = x.shape[0]
            if m < 2:
                raise ValueError("batch normalisation in training mode needs at least 2 examples")
            mean = x.mean(dim=0)
            centred = x - mean
            var = (centred * centred).mean(dim=0)
            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var * (m / (m - 1)), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        scale = self.weight / torch.sqrt(var + self.eps)
        return x * scale + (self.bias - mean * scale)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class MLP(nn.Module):
    def __init__(self, in_features=64, hidden=(100, 100, 100), num_classes=batchnorm.NUM_CLASSES,
                 batch_norm=True):
        super().__init__()
        self.batch_norm = batch_norm
        widths = [in_features, *hidden]
        self.head = nn.Linear(widths[-1], num_classes)
        linears, norms = [], []
        for i in reversed(range(len(hidden))):
            linears.insert(0, nn.Linear(widths[i], widths[i + 1], bias=not batch_norm))
            norms.insert(0, BatchNorm(widths[i + 1]) if batch_norm else nn.Identity())
        self.linears = nn.ModuleList(linears)
        self.norms = nn.ModuleList(norms)

    def sigmoid_inputs(self, x):
        inputs = []
        for linear, norm in zip(self.linears, self.norms, strict=True):
            inputs.append(norm(linear(x)))
            x = torch.sigmoid(inputs[-1])
        return inputs

    def forward(self, x):
        return self.head(torch.sigmoid(self.sigmoid_inputs(x)[-1]))


def sigmoid_input_percentiles(model, X, layer=-1, unit=0, qs=(0.15, 0.5, 0.85)):
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            z = model.sigmoid_inputs(X)[layer][:, unit].double().numpy()
    finally:
        model.train(was_training)
    return [float(v) for v in np.percentile(z, [100 * q for q in qs])]


implementation = derive(batchnorm, BatchNorm=BatchNorm, MLP=MLP,
                        sigmoid_input_percentiles=sigmoid_input_percentiles)
