"""The graded tests every paper's master notebooks repeat, each as one call.

A master notebook's exception-based test stays short: it names the notebook's values it
needs, calls one helper here, and lets the helper's message speak. The helpers are the
patterns the first paper's notebooks wrote out by hand, once per question or per chaff:

* :func:`assert_choice` -- a multiple-choice answer: the public test checks that it is
  one of the letters offered (``answer=None``), the hidden test that it is the right one;
* :func:`assert_public_hunt` -- level 4, the public test: the student's tests pass on the
  authors' code and catch at least one public chaff, exactly as under ``grader.check``;
* :func:`assert_hidden_chaff_caught` -- level 4, one hidden test per hidden chaff: no
  test fails on a wheat, and the chaff numbered ``index`` is caught;
* :func:`submission_rng` -- a ``random.Random`` seeded by what the submission reported,
  so a grader re-runs rows it draws (any row can be drawn; a regrade draws the same);
  :func:`rows_to_rerun` draws several at once (one drawn row lets made-up rows through);
* :func:`into_model` -- a state dict the student's code returned, loaded into the
  grader's own copy of the authors' model, with a message a student can act on;
* :func:`assert_own_code` -- a re-implementation that calls the code it re-implements
  (the authors' module, ``torch.nn.functional.batch_norm``, ...) is refused.

Every helper treats the student's values as untrusted (through :mod:`reprokit.plain` and
:mod:`reprokit.audit`) and finds shipped material with
:func:`reprokit.grading.material_path`, so it works under ``otter run``, under
``reprokit grade`` (in the trusted grader, against the sandbox's proxies) and under the
student's ``grader.check``.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "assert_choice",
    "assert_hidden_chaff_caught",
    "assert_own_code",
    "assert_public_hunt",
    "hunt_tests",
    "into_model",
    "rows_to_rerun",
    "submission_rng",
]


def assert_choice(value: Any, name: str, answer: str | None = None,
                  options: str | tuple[str, ...] = "abcd") -> str:
    """A multiple-choice answer read with :func:`reprokit.plain.as_choice` (``"B"``,
    ``"(b)"``, ``" b "`` all read as ``"b"``); returns the letter.

    Without ``answer`` it only checks that ``value`` is one of ``options`` (the public
    test: the message lists the options). With ``answer`` it also asserts that the letter
    is ``answer`` (the hidden test: the message does not reveal the right letter).
    """
    from reprokit.plain import UntrustedValue, as_choice

    try:
        letter = as_choice(value, name, options)
    except UntrustedValue as e:
        raise AssertionError(str(e)) from None
    if answer is not None:
        assert letter == answer.lower(), f"{name} = {letter!r} is not the expected answer"
    return letter


def hunt_tests(TESTS: Any) -> Mapping[str, Callable[..., Any]]:
    """The student's ``TESTS`` (``{name: test function}``), checked to be a non-empty dict
    of functions; an :class:`AssertionError` says what to do otherwise."""
    assert isinstance(TESTS, dict) and TESTS, (
        "expected TESTS = {name: test function, ...}: run the cell that collects your tests")
    assert all(callable(fn) for fn in TESTS.values()), "every value in TESTS must be a function"
    return TESTS


def _files(folder: str) -> list[Path]:
    from reprokit.grading import material_path

    path = material_path(folder)
    return sorted(path.glob("*.py")) if path.is_dir() else []


def assert_public_hunt(TESTS: Any, authors: str, *, chaffs: str = "chaffs/public",
                       secret_from: str = "wheats", min_caught: int = 1) -> Any:
    """Level 4's public test: every test passes on the authors' code (``authors``, a path
    such as ``"authors/classifier.py"``) and at least ``min_caught`` public chaffs fail one.

    The same check runs under ``grader.check`` and at grading. At grading the run order is
    also keyed by the hidden material (``secret_from``), which students do not have.
    Returns the :class:`reprokit.bughunt.HuntReport`.
    """
    from reprokit.bughunt import hunt
    from reprokit.grading import material_path

    tests = hunt_tests(TESTS)
    secret = b"".join(p.read_bytes() for p in _files(secret_from))
    report = hunt(tests, [material_path(authors)], _files(chaffs), reveal=True, cache=True,
                  secret=secret)
    assert not report.wheat_failures, report.summary()
    assert report.n_caught >= min_caught, report.summary()
    return report


def assert_hidden_chaff_caught(TESTS: Any, index: int, *, n_chaffs: int | None = None,
                               wheats: str = "wheats", chaffs: str = "chaffs/hidden",
                               min_wheats: int = 1) -> Any:
    """Level 4's hidden test for hidden chaff number ``index`` (1-based, in file-name
    order): no test fails on any wheat, and at least one fails on that chaff.

    Write one such test per hidden chaff, one point each: a student earns a point per
    chaff caught, and none while a test rejects a correct implementation. ``n_chaffs``
    (the number of hidden chaffs the level ships) turns missing material into a clear
    error instead of a lost point. The hunt runs once per submission: the tests of the
    other chaffs reuse its outcomes (``cache``). Returns the report.
    """
    from reprokit.bughunt import hunt

    tests = hunt_tests(TESTS)
    wheat_files, chaff_files = _files(wheats), _files(chaffs)
    assert len(wheat_files) >= min_wheats and chaff_files, "autograder material is missing"
    assert n_chaffs is None or len(chaff_files) == n_chaffs, (
        f"autograder material is missing: {len(chaff_files)} hidden chaffs, expected {n_chaffs}")
    assert 1 <= index <= len(chaff_files), f"there is no hidden chaff {index}"
    report = hunt(tests, wheat_files, chaff_files, cache=True)
    assert not report.wheat_failures, report.summary()
    assert report.caught[f"hidden chaff {index}"], report.summary()
    return report


def submission_rng(reported: Any, salt: str = "") -> random.Random:
    """A ``random.Random`` seeded by the submission's reported values (made plain first).

    A hidden test that re-runs rows of a table the student reported draws them with it
    (:func:`rows_to_rerun`): every row can be drawn, and the same submission always draws
    the same rows, so its grade does not change on a regrade.
    """
    from reprokit.plain import plain

    text = json.dumps(plain(reported, "reported values"), sort_keys=True, default=str)
    return random.Random(hashlib.sha256((salt + text).encode()).digest())


def rows_to_rerun(reported: Any, n_rows: int, k: int, salt: str = "") -> list[int]:
    """The indices of ``k`` of a reported table's ``n_rows`` rows (every row when
    ``n_rows <= k``), in order, drawn with :func:`submission_rng`: the rows a hidden test
    re-runs with the authors' code.

    Re-run as many as the grading budget allows. One drawn row lets made-up rows through
    most of the time: an outside audit made up 3 of 8 rows of a BatchNorm table and kept
    full marks. With ``m`` made-up rows of ``n``, the chance that none is drawn is
    ``C(n - m, k) / C(n, k)``, and 0 once ``m > n - k``.
    """
    if n_rows < 1 or k < 1:
        raise ValueError(f"need at least one row and k >= 1, got n_rows={n_rows}, k={k}")
    return sorted(submission_rng(reported, salt).sample(range(n_rows), min(k, n_rows)))


def into_model(value: Any, model: Any, what: str = "state_dict") -> Any:
    """Load the state dict a student's function returned into ``model`` (the grader's own
    copy of the authors' class, built by the test); returns ``model``.

    A value that is not a dict of tensors, or whose names and shapes do not fit ``model``,
    raises an :class:`AssertionError` that says so and what to return instead.
    """
    import torch

    from reprokit.plain import UntrustedValue, as_state_dict

    try:
        state = as_state_dict(value, what)
    except UntrustedValue as e:
        raise AssertionError(f"{e}: return model.state_dict()") from None
    try:
        model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    except RuntimeError as e:
        raise AssertionError(
            f"{what} does not fit the authors' architecture {type(model).__name__}: "
            f"{str(e)[:300]}. Build the network with the authors' class and return its "
            "state_dict()") from None
    return model


def assert_own_code(fn: Any, args: tuple = (), kwargs: dict | None = None, *,
                    forbidden: Mapping[str, list[str]] | None = None,
                    forbidden_c: tuple[str, ...] | list[str] = (),
                    forbidden_ops: tuple[str, ...] | list[str] = (),
                    what: str = "your function") -> Any:
    """Call a re-implementation once and refuse it if it reaches code it must not use.

    ``forbidden`` maps a file-path suffix to function names
    (``{"authors/classifier.py": ["MLP.forward"]}``, ``"*"`` for all), ``forbidden_c``
    names built-in functions (``"batch_norm"``), ``forbidden_ops`` parts of ATen operator
    names (:data:`reprokit.audit.TORCH_NORM_OPS` refuses torch's batch norm through
    ``nn.BatchNorm1d``, a subclass, ``F.batch_norm`` or ``torch.ops.aten`` alike); a call is
    seen however it was reached (an import, an alias, a method). Returns the call's value (untrusted: read it with
    :mod:`reprokit.plain`). A fairness check paired with checks of results, not a
    security boundary (see :func:`reprokit.audit.observe_call`).
    """
    from reprokit.audit import observe_call

    seen = observe_call(fn, tuple(args), dict(kwargs or {}), watch_calls=dict(forbidden or {}),
                        watch_c_calls=list(forbidden_c), watch_ops=list(forbidden_ops))
    used = seen.reached
    assert not used, (
        f"{what} calls code it should re-implement ({', '.join(used)}); this level asks for "
        "your own implementation, written from the paper's text")
    return seen.value
