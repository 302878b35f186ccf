"""Gradescope's entry point: ``python -m reprokit.gradescope`` (called by ``run_autograder``).

Gradescope lays a container out as ``/autograder/{source,submission,results}`` and
runs ``run_autograder`` as root. This grades the one notebook in ``submission/``
with :func:`reprokit.grading.grade` against ``source/`` and writes
``results/results.json``. ``source/`` is first made private to root, so the
submission (run as an unprivileged uid) cannot read hidden tests or chaffs.

A failure of the autograder itself (anything :func:`~reprokit.grading.grade` raises:
the submission's own faults come back as a status, never as an exception) is loud:
``results.json`` then says the autograder failed and to tell the course staff, carries
no score anywhere (so Gradescope cannot record a grade from it), puts the details in
an entry only instructors see, and the process exits 1.

Set ``REPROKIT_AUTOGRADER_ROOT`` to use another root (the layout tests do).
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

from reprokit import sandbox
from reprokit.grading import GradeResult, grade

#: exit status of ``run_autograder`` when the autograder itself failed
AUTOGRADER_FAILED = 1
STAFF_NOTICE = ("The autograder failed while grading this submission. This is not a problem with "
                "your work, and no grade was recorded. Please tell the course staff (include a "
                "link to this page), then resubmit once they have fixed it.")


def failure_results(error: BaseException) -> dict:
    """``results.json`` for a failure of ours: a notice for the student, the traceback for
    instructors (``hidden``), and no ``score`` key at all."""
    details = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return {
        "output": STAFF_NOTICE,
        "stdout_visibility": "hidden",
        "tests": [
            {"name": "Autograder failure", "output": STAFF_NOTICE, "visibility": "visible",
             "status": "failed"},
            {"name": "Autograder failure: details (instructors only)", "visibility": "hidden",
             "output": f"{type(error).__name__}: {error}\n\nisolation layers: not known (the "
                       f"grader failed before the sandbox reported them; grader running as root: "
                       f"{sandbox.can_drop_privileges()})\n\n{details[-8000:]}"},
        ],
        "extra_data": {"reprokit_status": "autograder-error"},
    }


def _write(results: Path, payload: dict) -> None:
    tmp = results / "results.json.tmp"
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, results / "results.json")


def main(root: str | Path | None = None) -> int:
    """Grade ``<root>/submission`` and write ``<root>/results/results.json``; returns 0, or
    :data:`AUTOGRADER_FAILED` when the autograder failed (and no grade was written)."""
    root = Path(root or os.environ.get("REPROKIT_AUTOGRADER_ROOT", "/autograder"))
    source, submission, results = root / "source", root / "submission", root / "results"
    results.mkdir(parents=True, exist_ok=True)
    try:
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            os.chmod(source, 0o700)
        config = {}
        if (source / "otter_config.json").exists():
            config = json.loads((source / "otter_config.json").read_text())
        result: GradeResult = grade(submission, source)
        payload = result.to_gradescope(show_hidden=bool(config.get("show_hidden", False)))
    except Exception as e:  # noqa: BLE001 - any failure of ours: loud, never a grade
        _write(results, failure_results(e))
        traceback.print_exc()
        print("reprokit: THE AUTOGRADER FAILED; no grade was recorded.", file=sys.stderr)
        return AUTOGRADER_FAILED
    _write(results, payload)
    print(f"reprokit: {result.status}, {result.score:g} / {result.possible:g}. {result.message}")
    print(f"reprokit: isolation layers: {', '.join(result.fingerprint.get('isolation') or []) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
