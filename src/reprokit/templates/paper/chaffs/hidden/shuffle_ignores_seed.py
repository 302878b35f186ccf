"""Minibatch order drawn from the global generator

The planted bug: ``train`` draws each epoch's minibatch order from torch's global random
generator instead of a generator seeded with ``seed``, so two runs with the same seed train
differently whenever anything else drew a random number in between. Caught by training twice
with the same seed, drawing from torch's generator in between, and comparing the weights.
"""

from authors import classifier

from reprokit.bughunt import derive, patch_source

train = patch_source(classifier.train,
                     ("torch.randperm(len(y), generator=order)", "torch.randperm(len(y))"))

implementation = derive(classifier, train=train)
