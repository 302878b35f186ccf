"""Mini-batch order ignores the seed

The planted bug: ``train`` shuffles the training set each epoch with ``torch.randperm(n)``
from torch's global random generator instead of the generator seeded with ``seed``.

Why it matters: a reproduction must be re-runnable. The authors' ``train`` promises that the
mini-batch order is drawn from ``seed`` alone, so that the same call gives the same network
and the same accuracy curve (Fig. 1(a)), and that repeating a run over seeds measures the
spread of a claim. Here the order depends on whatever state the global generator was left
in by earlier code: two identical calls train two different networks, and a number in a
table cannot be re-created. Training still works as well as before, so accuracy alone shows
nothing.

How a test can see it: run the same small experiment twice (``run_experiment`` with a fixed
``seed`` and one epoch) and compare the trained weights bit for bit
(``reprokit.properties.check_deterministic`` does this).

The code below is the authors' ``train`` with one edit, shown as an (old, new) pair.
"""

from authors import batchnorm
from reprokit.bughunt import derive, patch_source

train = patch_source(batchnorm.train, ("torch.randperm(n, generator=g)", "torch.randperm(n)"))

implementation = derive(batchnorm, train=train)
