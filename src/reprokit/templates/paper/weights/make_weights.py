"""Make the level-1 weights: the authors' MLP trained with their DEFAULTS and seed 0.

    python weights/make_weights.py            # from the paper folder: (re)write the weights
    python weights/make_weights.py --check    # retrain and compare with the shipped file

The weights are stored as float16 (small enough to ship in every autograder zip); load
them with ``torch.load(path, weights_only=True)`` and ``.float()`` each tensor before
``MLP().load_state_dict``. ``manifest.json`` records the accuracies of the float16 weights
loaded that way. Training runs on one CPU thread, so the same torch version on the same
kind of CPU regenerates the file bit for bit; on another kind, ``--check`` compares the
accuracies in ``TOLERANCES`` instead.
"""

from __future__ import annotations

import hashlib
import io
import sys
from pathlib import Path

import torch

from reprokit.weights import make_weights_main

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from authors import classifier  # noqa: E402

SEED = 0
NAME = "mlp.pt"


def load_weights(path: str | Path) -> classifier.MLP:
    """The authors' MLP with the float16 weights at ``path`` loaded as float32, in eval mode."""
    state = torch.load(path, weights_only=True)
    model = classifier.MLP()
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval()


#: What ``--check`` accepts when retraining on another kind of CPU gives other bytes.
TOLERANCES = {"train_acc": 0.02, "test_acc": 0.02}


def build() -> tuple[dict[str, bytes], dict]:
    """Train the model; return the file to ship (name -> bytes) and the manifest describing it."""
    torch.set_num_threads(1)
    run = classifier.run_experiment(seed=SEED)
    buffer = io.BytesIO()
    torch.save({k: v.to(torch.float16).contiguous() for k, v in run["state_dict"].items()}, buffer)
    data = buffer.getvalue()
    model = classifier.MLP()
    model.load_state_dict({k: v.float() for k, v in torch.load(io.BytesIO(data), weights_only=True).items()})
    split = classifier.load_split(seed=0)
    manifest = {"seed": SEED, "defaults": classifier.DEFAULTS, "torch": torch.__version__,
                "storage": "float16", "file": NAME,
                "train_acc": classifier.evaluate(model, split.X_train, split.y_train),
                "test_acc": classifier.evaluate(model, split.X_test, split.y_test),
                "sha256": hashlib.sha256(data).hexdigest()}
    return {NAME: data}, manifest


def main(argv: list[str] | None = None) -> int:
    """Write the weights and manifest.json, or with --check compare a fresh build to them."""
    return make_weights_main(build, HERE, argv, description=__doc__.splitlines()[0],
                             tolerances=TOLERANCES)


if __name__ == "__main__":
    raise SystemExit(main())
