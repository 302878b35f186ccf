"""Shipped weights: the command line every paper's ``weights/make_weights.py`` shares.

A paper's ``make_weights.py`` knows how to train its models; it defines ``build()``, which
returns the files to ship (name -> bytes) and a manifest (a JSON-able dict), and ends with
``raise SystemExit(make_weights_main(build, HERE))``. This module then either writes the
files and ``manifest.json`` into the weights folder, or, with ``--check``, rebuilds and
compares byte for byte with what is shipped, writing nothing. Training on one CPU thread
makes the same torch version on the same kind of CPU regenerate every file bit for bit.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["make_weights_main"]

Build = Callable[[], tuple[dict[str, bytes], dict[str, Any]]]


def make_weights_main(build: Build, folder: str | Path, argv: Sequence[str] | None = None, *,
                      description: str = "Train and write the shipped weights.") -> int:
    """Run ``build()`` and write its files and ``manifest.json`` into ``folder``; with
    ``--check`` in ``argv``, compare instead and return 1 when a shipped file differs (or is
    missing). Prints the manifest's ``models`` entry (or the whole manifest) either way."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--check", action="store_true", help="retrain and compare; write nothing")
    args = parser.parse_args(argv)
    folder = Path(folder)
    files, manifest = build()
    print(json.dumps(manifest.get("models", manifest), indent=2))
    if args.check:
        differ = [name for name, data in files.items()
                  if not (folder / name).exists() or (folder / name).read_bytes() != data]
        if differ:
            print(f"regenerated files differ from the shipped ones: {differ} "
                  "(another torch version, thread count or CPU type?)")
            return 1
        print("regenerated files are bit-identical to the shipped ones")
        return 0
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return 0
