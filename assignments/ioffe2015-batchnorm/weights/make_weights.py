"""Regenerate the level-1 material: the authors' network (Sec. 4.1 at digits scale) trained
with and without batch normalisation, and what it did during training (Fig. 1(b, c)).

    python weights/make_weights.py            # from the paper folder: (re)write the files
    python weights/make_weights.py --check    # retrain and compare with the shipped files

Both runs are ``batchnorm.run_experiment(batch_norm, seed=0)`` with the authors' DEFAULTS
(3 hidden layers of 100 sigmoid units, mini-batches of 60, SGD at lr 2.0, 30 epochs).

Files:

* ``with-bn.pt`` / ``without-bn.pt``: the final state dicts, float32 (about 110 KB each, so
  nothing is lost to rounding). Load with ``torch.load(path, weights_only=True)`` into
  ``batchnorm.build_model(batch_norm)`` and call ``.eval()``.
* ``dynamics.json``: per epoch (1 to 30) and per model, what Fig. 1 plots: the test accuracy
  (Fig. 1a), the 15th/50th/85th percentiles of the last hidden layer's first sigmoid input
  over the test images (Fig. 1b, c; exactly the run's ``history["percentiles"]``), and a
  histogram of that sigmoid's input, and of the first unit of every hidden layer, over the
  test images (``HIST_EDGES``), measured in eval mode at the end of each epoch.
* ``manifest.json``: settings, accuracies and the sha256 of every file.

The per-epoch histograms are taken by wrapping ``batchnorm.sigmoid_input_percentiles``,
which the authors' ``train`` calls at the end of every epoch, so the training run is the
authors' own, step for step; the script checks that its weights equal a plain
``run_experiment`` call's.

Training runs on one CPU thread: with more threads torch splits sums differently, so the
weights would depend on the machine's core count. One thread, the same torch version and
the same kind of CPU regenerate the files bit for bit; on another kind, ``--check``
compares the numbers in ``TOLERANCES`` instead.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import time
from pathlib import Path

import torch

from reprokit.weights import make_weights_main

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from authors import batchnorm  # noqa: E402

SEED = 0
#: file name -> batch_norm
WEIGHTS = {"with-bn.pt": True, "without-bn.pt": False}
#: histogram bin edges for the sigmoid inputs: 48 bins of width 0.25 over [-6, 6]; values
#: outside are counted in the first or last bin.
HIST_EDGES = [-6.0 + 0.25 * i for i in range(49)]


def load_weights(path: str | Path, batch_norm: bool) -> batchnorm.MLP:
    """The authors' network with the weights at ``path`` loaded, in eval mode."""
    model = batchnorm.build_model(batch_norm)
    model.load_state_dict(torch.load(path, weights_only=True))
    return model.eval()


def _histogram(z: torch.Tensor) -> list[int]:
    edges = torch.tensor(HIST_EDGES)
    clipped = z.clamp(HIST_EDGES[0], HIST_EDGES[-1] - 1e-6)
    idx = torch.bucketize(clipped, edges, right=True) - 1
    return torch.bincount(idx, minlength=len(HIST_EDGES) - 1).tolist()


def _run_recording(batch_norm: bool) -> tuple[dict, list[list[list[int]]]]:
    """``run_experiment(batch_norm, SEED)`` and, per epoch, the histogram of the first unit's
    sigmoid input of each hidden layer over the test images."""
    hists: list[list[list[int]]] = []
    original = batchnorm.sigmoid_input_percentiles

    def recording(model, X, *args, **kwargs):
        was_training = model.training
        model.eval()
        with torch.no_grad():
            hists.append([_histogram(z[:, 0]) for z in model.sigmoid_inputs(X)])
        model.train(was_training)
        return original(model, X, *args, **kwargs)

    batchnorm.sigmoid_input_percentiles = recording
    try:
        run = batchnorm.run_experiment(batch_norm, SEED)
    finally:
        batchnorm.sigmoid_input_percentiles = original
    return run, hists


def _serialise(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save({k: v.contiguous() for k, v in state.items()}, buffer)
    return buffer.getvalue()


#: What ``--check`` accepts when retraining on another kind of CPU gives other bytes: the
#: numbers level 1 and the README quote, per model.
TOLERANCES = {"train_acc": 0.01, "test_acc": 0.02, "epochs_to_90": 2, "diverged": 0}


def build() -> tuple[dict[str, bytes], dict]:
    """Train both models; return the files' bytes and the manifest describing them."""
    torch.set_num_threads(1)
    files: dict[str, bytes] = {}
    manifest: dict = {"seed": SEED, "defaults": dict(batchnorm.DEFAULTS), "torch": torch.__version__,
                      "storage": "float32", "models": {}, "files": {}}
    dynamics: dict = {"seed": SEED, "percentiles_of": "last hidden layer, unit 0, test images, eval mode",
                      "quantiles": [0.15, 0.5, 0.85], "hist_edges": HIST_EDGES,
                      "hist_of": "unit 0 of each hidden layer (first to last), test images, eval mode",
                      "models": {}}
    data = batchnorm.load_digits_split(SEED, batchnorm.DEFAULTS["test_fraction"])
    for name, batch_norm in WEIGHTS.items():
        t0 = time.process_time()
        run, hists = _run_recording(batch_norm)
        plain_run = batchnorm.run_experiment(batch_norm, SEED)
        same = all(torch.equal(run["state_dict"][k], v) for k, v in plain_run["state_dict"].items())
        if not same or run["history"] != plain_run["history"]:
            raise RuntimeError(f"{name}: the recorded run differs from run_experiment's")
        files[name] = _serialise(run["state_dict"])
        model = batchnorm.build_model(batch_norm)
        model.load_state_dict(torch.load(io.BytesIO(files[name]), weights_only=True))
        h = run["history"]
        manifest["models"][name] = {
            "batch_norm": batch_norm,
            "train_acc": batchnorm.evaluate(model, data.X_train, data.y_train),
            "test_acc": batchnorm.evaluate(model, data.X_test, data.y_test),
            "epochs_to_90": batchnorm.epochs_to_reach(h, 0.9),
            "diverged": h["diverged"],
            "train_cpu_seconds_1_thread": round((time.process_time() - t0) / 2, 1),
        }
        dynamics["models"][name] = {
            "batch_norm": batch_norm,
            "epochs": list(range(1, len(h["test_acc"]) + 1)),
            "test_acc": h["test_acc"],
            "train_acc": h["train_acc"],
            "loss": h["loss"],
            "percentiles": h["percentiles"],
            "hist": hists,
        }
    files["dynamics.json"] = (json.dumps(dynamics, separators=(",", ":")) + "\n").encode()
    manifest["files"] = {n: hashlib.sha256(b).hexdigest() for n, b in files.items()}
    return files, manifest


def main(argv: list[str] | None = None) -> int:
    """Write the weights and manifest.json, or with --check compare a fresh build to them."""
    return make_weights_main(build, HERE, argv, description=__doc__.splitlines()[0],
                             tolerances=TOLERANCES)


if __name__ == "__main__":
    raise SystemExit(main())
