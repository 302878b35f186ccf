"""Gamma and beta registered with register_parameter

Twin of a hidden chaff: ``BatchNorm`` registers gamma and beta with
``self.register_parameter``, the same as assigning ``nn.Parameter``s. Correct.
"""

from authors import batchnorm
from reprokit.bughunt import derive, patch_source

BatchNorm = patch_source(
    batchnorm.BatchNorm,
    ("self.weight = nn.Parameter(torch.ones(num_features))",
     'self.register_parameter("weight", nn.Parameter(torch.ones(num_features)))'),
    ("self.bias = nn.Parameter(torch.zeros(num_features))",
     'self.register_parameter("bias", nn.Parameter(torch.zeros(num_features)))'),
)

implementation = derive(batchnorm, BatchNorm=BatchNorm)
