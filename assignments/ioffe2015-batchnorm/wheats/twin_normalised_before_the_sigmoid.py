"""Batch normalisation before the sigmoid, one step per line

Twin of the public chaff "Batch normalisation after the sigmoid": ``MLP`` computes
``linear``, then ``norm``, then the sigmoid, one statement each. Correct.
"""

from authors import batchnorm
from reprokit.bughunt import derive, patch_source

MLP = patch_source(
    batchnorm.MLP,
    ("""z = norm(linear(x))
            inputs.append(z)
            x = torch.sigmoid(z)""",
     """z = linear(x)
z = norm(z)
inputs.append(z)
x = z.sigmoid()"""),
    ("x = torch.sigmoid(norm(linear(x)))", "x = norm(linear(x)).sigmoid()"),
)

implementation = derive(batchnorm, MLP=MLP)
