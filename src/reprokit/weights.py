"""Shipped weights: the command line every paper's ``weights/make_weights.py`` shares.

A paper's ``make_weights.py`` knows how to train its models; it defines ``build()``, which
returns the files to ship (name -> bytes) and a manifest (a JSON-able dict), and ends with
``raise SystemExit(make_weights_main(build, HERE))``. This module then either writes the
files and ``manifest.json`` into the weights folder, or, with ``--check``, rebuilds and
compares with what is shipped, writing nothing.

Training on one CPU thread makes the same torch version on the same kind of CPU regenerate
every file bit for bit. Another kind of CPU (other vector instructions) rounds sums
differently, and a long training run turns that into other weights with the same measured
behaviour. So ``--check`` passes when the files are bit-identical, or, for a paper that
names ``tolerances``, when every measured number the manifest records for each model (an
accuracy, an epoch count) is within its tolerance of the shipped manifest's; it names each
number either way. ``--strict`` asks for bit-identical files only.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["make_weights_main"]

Build = Callable[[], tuple[dict[str, bytes], dict[str, Any]]]


def _measured_drift(shipped: dict[str, Any], rebuilt: dict[str, Any],
                    tolerances: dict[str, float]) -> tuple[list[str], list[str]]:
    """Compare each model's numbers named in ``tolerances``; return (agreeing, drifting)
    lines, one per number, ``model key: shipped -> rebuilt``."""
    agree: list[str] = []
    drift: list[str] = []
    # a manifest without a "models" table describes one model at its top level
    old_models = shipped.get("models", {"model": shipped})
    for model, numbers in rebuilt.get("models", {"model": rebuilt}).items():
        for key, tolerance in tolerances.items():
            if key not in numbers:
                continue
            old = old_models.get(model, {}).get(key)
            line = f"{model} {key}: shipped {old!r}, rebuilt {numbers[key]!r} (tolerance {tolerance})"
            ok = isinstance(old, (int, float)) and abs(numbers[key] - old) <= tolerance
            (agree if ok else drift).append(line)
    return agree, drift


def make_weights_main(build: Build, folder: str | Path, argv: Sequence[str] | None = None, *,
                      description: str = "Train and write the shipped weights.",
                      tolerances: dict[str, float] | None = None) -> int:
    """Run ``build()`` and write its files and ``manifest.json`` into ``folder``; with
    ``--check`` in ``argv``, compare instead and return 1 when a shipped file is missing, or
    differs and a number in ``tolerances`` (manifest key -> largest accepted absolute
    difference, per model) drifted beyond it (always, without ``tolerances`` or with
    ``--strict``). Prints the manifest's ``models`` entry (or the whole manifest) either way."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true", help="retrain and compare; write nothing")
    parser.add_argument("--strict", action="store_true",
                        help="with --check: only bit-identical files pass")
    args = parser.parse_args(argv)
    folder = Path(folder)
    files, manifest = build()
    print(json.dumps(manifest.get("models", manifest), indent=2))
    if args.check:
        missing = [name for name in files if not (folder / name).exists()]
        differ = [name for name, data in files.items()
                  if name not in missing and (folder / name).read_bytes() != data]
        if missing:
            print(f"shipped files missing: {missing}")
            return 1
        if not differ:
            print("regenerated files are bit-identical to the shipped ones")
            return 0
        print(f"regenerated files differ bit-wise from the shipped ones: {differ} "
              "(another torch version, thread count or CPU type?)")
        shipped_manifest = folder / "manifest.json"
        if args.strict or not tolerances or not shipped_manifest.exists():
            return 1
        agree, drift = _measured_drift(json.loads(shipped_manifest.read_text()), manifest,
                                       tolerances)
        for line in agree:
            print(f"  agrees: {line}")
        for line in drift:
            print(f"  DRIFTED: {line}")
        if drift or not agree:
            return 1
        print("every measured number agrees with the shipped manifest within its tolerance")
        return 0
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return 0
