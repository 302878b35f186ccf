"""Batch normalisation after the sigmoid

The planted bug: ``MLP`` applies each ``BatchNorm`` to the sigmoid's output instead of to its
input: ``norm(sigmoid(linear(x)))`` instead of ``sigmoid(norm(linear(x)))``, and
``sigmoid_inputs`` returns the raw ``linear(x)``.

Why it matters: Sec. 3.2 adds BN "immediately before the nonlinearity", normalising
``x = Wu + b``, because that input is the one whose distribution drifts and pushes sigmoids
into saturation (Sec. 2 and Fig. 1(b, c)). Normalised after the sigmoid, the inputs of the
sigmoids are whatever the linear maps make of them: they can drift and saturate as in the
plain network, and Fig. 1's percentiles of the sigmoid inputs measure un-normalised values.
The network still trains and reaches a fair accuracy, so nothing looks broken.

How a test can see it: in training mode, the inputs of every sigmoid of a fresh BN network
(``model.sigmoid_inputs(x)``, gamma = 1 and beta = 0) have mean 0 and variance 1 over the
batch, for any input batch, e.g. digits scaled by 10.

The code below is the authors' ``MLP`` with two edits, shown as (old, new) pairs.
"""

from authors import batchnorm
from reprokit.bughunt import derive, patch_source

MLP = patch_source(
    batchnorm.MLP,
    # sigmoid_inputs: the sigmoid now sees linear(x) itself; BN comes after it
    ("""z = norm(linear(x))
            inputs.append(z)
            x = torch.sigmoid(z)""",
     """z = linear(x)
inputs.append(z)
x = norm(torch.sigmoid(z))"""),
    # forward: the same order
    ("x = torch.sigmoid(norm(linear(x)))", "x = norm(torch.sigmoid(linear(x)))"),
)

implementation = derive(batchnorm, MLP=MLP)
