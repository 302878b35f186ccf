"""Gamma and beta stored as plain tensors

The planted bug: ``BatchNorm`` keeps gamma (``weight``) and beta (``bias``) as plain tensors
instead of ``nn.Parameter``s. They are not in ``model.parameters()``, so the optimiser never
updates them and the layer can never learn to undo the normalisation (Sec. 3: "to make sure
that the transformation inserted in the network can represent the identity transform"):
every sigmoid input stays at mean 0 and variance 1 over each batch for ever. Caught by
counting a layer's learnable parameters (2 per feature), or by checking that they get a
gradient and move in training.
"""

from authors import batchnorm
from reprokit.bughunt import derive, patch_source

BatchNorm = patch_source(
    batchnorm.BatchNorm,
    ("self.weight = nn.Parameter(torch.ones(num_features))", "self.weight = torch.ones(num_features)"),
    ("self.bias = nn.Parameter(torch.zeros(num_features))", "self.bias = torch.zeros(num_features)"),
)

implementation = derive(batchnorm, BatchNorm=BatchNorm)
