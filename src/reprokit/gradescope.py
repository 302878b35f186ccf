"""Gradescope's entry point: ``python3 -m reprokit.gradescope`` (called by ``run_autograder``).

Gradescope lays a container out as ``/autograder/{source,submission,results}`` and
runs ``run_autograder`` as root. This grades the one notebook in ``submission/``
with :func:`reprokit.grading.grade` against ``source/`` and writes
``results/results.json``. ``source/`` is first made private to root, so the
submission (run as an unprivileged uid) cannot read hidden tests or chaffs.
Set ``REPROKIT_AUTOGRADER_ROOT`` to use another root (the layout tests do).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from reprokit.grading import GradeResult, QuestionScore, grade


def main(root: str | Path | None = None) -> int:
    """Grade ``<root>/submission`` and write ``<root>/results/results.json``; returns 0."""
    root = Path(root or os.environ.get("REPROKIT_AUTOGRADER_ROOT", "/autograder"))
    source, submission, results = root / "source", root / "submission", root / "results"
    results.mkdir(parents=True, exist_ok=True)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        os.chmod(source, 0o700)
    config = {}
    if (source / "otter_config.json").exists():
        config = json.loads((source / "otter_config.json").read_text())
    try:
        result = grade(submission, source)
    except Exception as e:  # noqa: BLE001 - always leave a results.json behind
        result = GradeResult("error", {"autograder": QuestionScore("autograder", 0.0, 0.0)},
                             0.0, 0.0, 0.0, f"the autograder failed: {type(e).__name__}: {e}")
    payload = result.to_gradescope(show_hidden=bool(config.get("show_hidden", False)))
    tmp = results / "results.json.tmp"
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, results / "results.json")
    print(f"reprokit: {result.status}, {result.score:g} / {result.possible:g}. {result.message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
