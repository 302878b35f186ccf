"""Level 4, the bug hunt: run a student's tests against wheats and chaffs.

A *wheat* is a correct implementation of the authors' API that differs from the
authors' code in legitimate ways (another random stream, another minibatch order); a
*chaff* is the authors' code with one planted reproducibility bug. A good test suite
passes on every wheat and fails on as many chaffs as it can. Scoring follows that:
one wheat failing zeroes the score (the suite rejects correct code), and each chaff
caught earns credit.

* :func:`derive` writes a chaff in a few lines: the base module with one function
  replaced, rebound so the base's internal calls see the replacement.
* :func:`load_implementation` executes an implementation's source in a fresh module
  with a neutral name, so a test cannot learn which file it runs against.
* :func:`run_tests_against` calls each test with reprokit's fixtures, seeded, under a
  wall-clock limit, and returns plain outcomes.
* :func:`hunt` runs the tests against every wheat and chaff, each in its own forked
  process, and returns a :class:`HuntReport` (``score``, ``summary``).

Tests are written as under pytest with reprokit's plugin (``def test_x(implementation,
tiny_digits): ...``), so the same function runs with
``pytest --reprokit-impl=chaffs/public/x.py`` and here.
"""

from __future__ import annotations
import __future__

import contextlib
import copy
import hashlib
import inspect
import io
import json
import linecache
import os
import select
import signal
import sys
import threading
import time
import traceback
import types
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

__all__ = [
    "FIXTURES",
    "HuntReport",
    "ImplementationError",
    "ImplementationResult",
    "Outcome",
    "derive",
    "display_name",
    "hunt",
    "load_implementation",
    "patch_source",
    "run_tests_against",
]

#: The seed every test runs under (also the value of the ``seed`` fixture).
SEED = 0
#: Test outcomes, from best to worst.
STATUSES = ("passed", "failed", "error", "timeout")
#: What an implementation's module docstring reads as once loaded (hides the chaff's explanation).
NEUTRAL_DOC = "The implementation under test."
_MESSAGE_LIMIT = 600


class ImplementationError(RuntimeError):
    """A wheat or chaff file does not load: the autograder's material is broken, not the tests.

    Raised rather than scored, because a chaff that fails to load would otherwise count as
    caught by every test (free points) and a wheat as failed by every test (zero for all).
    """


class Outcome(TypedDict):
    """One test's result on one implementation: ``status`` is one of :data:`STATUSES`."""

    status: str
    message: str


# --------------------------------------------------------------------------- derive


def _code_names(code: types.CodeType) -> set[str]:
    """Global names a code object (and the code nested in it) may read."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _code_names(const)
    return names


def _rebind_function(fn: types.FunctionType, namespace: dict[str, Any], module: str
                     ) -> types.FunctionType:
    new = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
    new.__kwdefaults__ = fn.__kwdefaults__
    new.__dict__.update(fn.__dict__)
    new.__doc__ = fn.__doc__
    new.__qualname__ = fn.__qualname__
    new.__annotations__ = dict(fn.__annotations__)
    new.__module__ = module
    return new


def _class_reads(cls: type) -> set[str]:
    names: set[str] = set()
    for value in vars(cls).values():
        fn = value.__func__ if isinstance(value, (staticmethod, classmethod)) else value
        if isinstance(fn, property):
            for part in (fn.fget, fn.fset, fn.fdel):
                if isinstance(part, types.FunctionType):
                    names |= _code_names(part.__code__)
        elif isinstance(fn, types.FunctionType):
            names |= _code_names(fn.__code__)
    return names


def _rebind_class(cls: type, namespace: dict[str, Any], module: str, base_globals: dict) -> type:
    """A subclass of ``cls`` whose own methods read ``namespace`` instead of the base's globals.

    A subclass keeps ``super()`` right (the methods' ``__class__`` cell still names
    ``cls``, and the MRO goes on from there) and keeps ``isinstance(x, cls)`` true.
    """
    body: dict[str, Any] = {"__module__": module, "__qualname__": cls.__qualname__,
                            "__doc__": cls.__doc__}
    for key, value in vars(cls).items():
        wrapper = type(value) if isinstance(value, (staticmethod, classmethod)) else None
        fn = value.__func__ if wrapper is not None else value
        if isinstance(fn, types.FunctionType) and fn.__globals__ is base_globals:
            rebound = _rebind_function(fn, namespace, module)
            body[key] = wrapper(rebound) if wrapper is not None else rebound
        elif isinstance(fn, property) and any(
                isinstance(p, types.FunctionType) and p.__globals__ is base_globals
                for p in (fn.fget, fn.fset, fn.fdel)):
            parts = [_rebind_function(p, namespace, module)
                     if isinstance(p, types.FunctionType) and p.__globals__ is base_globals else p
                     for p in (fn.fget, fn.fset, fn.fdel)]
            body[key] = property(*parts, doc=fn.__doc__)
    return type(cls)(cls.__name__, (cls,), body)


def derive(base: types.ModuleType, name: str = "implementation", **replacements: Any
           ) -> types.ModuleType:
    """A copy of module ``base`` with ``replacements`` applied, whose internal calls see them.

    Every function defined in ``base`` is rebound to a copy of the base's globals in which
    the replacements are set, so ``derive(randlabels, corrupt_labels=buggy)`` gives a
    module whose ``make_data`` calls ``buggy``. A class defined in ``base`` whose methods
    read a rebound name is replaced by a subclass with rebound methods (``super()`` and
    ``isinstance`` keep working). Replacement functions defined elsewhere (in a chaff
    file) are rebound too: they read the derived module's names, overlaid with their own
    file's globals, overlaid with the derived API, so a replaced ``make_data`` calling
    ``corrupt_labels`` sees the derived one without importing it.
    Plain ``dict``/``list``/``set`` constants (``DEFAULTS``) are copied, so editing them
    in the derived module leaves the base alone. ``base`` itself is not changed.
    """
    unknown = sorted(set(replacements) - set(vars(base)))
    if unknown:
        raise AttributeError(
            f"derive: {base.__name__} has no {', '.join(map(repr, unknown))} to replace "
            f"(its public names: {', '.join(n for n in vars(base) if not n.startswith('_'))})")
    base_globals = vars(base)
    module = types.ModuleType(name, base.__doc__)
    ns = module.__dict__
    for key, value in base_globals.items():
        if key in ("__name__", "__doc__", "__spec__", "__loader__", "__file__", "__cached__",
                   "__package__"):
            continue
        ns[key] = type(value)(value) if type(value) in (dict, list, set) else value
    ns["__file__"] = f"<{name}>"
    ns["__package__"] = ""

    def defined_here(value: Any) -> bool:
        if isinstance(value, types.FunctionType):
            return value.__globals__ is base_globals
        return isinstance(value, type) and value.__module__ == base.__name__

    rebound = {k for k, v in base_globals.items() if defined_here(v)} | set(replacements)
    for key, value in base_globals.items():
        if isinstance(value, types.FunctionType) and defined_here(value) and key not in replacements:
            ns[key] = _rebind_function(value, ns, name)
    # Classes: rebind those that read a rebound name (a fixed point: classes read classes).
    classes = {k: v for k, v in base_globals.items()
               if isinstance(v, type) and defined_here(v) and k not in replacements}
    needs: set[str] = set()
    changed = True
    while changed:
        changed = False
        for key, cls in classes.items():
            if key not in needs and _class_reads(cls) & ((rebound - set(classes)) | needs):
                needs.add(key)
                changed = True
    for key in needs:
        ns[key] = _rebind_class(classes[key], ns, name, base_globals)
    # Replacements: functions from another file see their own globals plus the derived API.
    api = {k: ns[k] for k in rebound if k in ns}
    overlays: dict[int, dict[str, Any]] = {}
    for key, value in replacements.items():
        if isinstance(value, types.FunctionType) and value.__globals__ is not base_globals:
            overlay = overlays.get(id(value.__globals__))
            if overlay is None:  # the derived module's names, then the file's own on top
                overlay = overlays[id(value.__globals__)] = {**ns, **value.__globals__}
            value = _rebind_function(value, overlay, name)
        ns[key] = value
        api[key] = value
    for overlay in overlays.values():
        for key in api:  # the API (rebound and replaced) always means the derived one
            overlay[key] = ns[key]
    return module


def patch_source(function: types.FunctionType, *edits: tuple[str, str],
                 names: Mapping[str, Any] | None = None) -> types.FunctionType:
    """``function`` recompiled from its own source with text ``edits`` applied.

    Each edit is ``(old, new)``: ``old`` must occur exactly once in the function's source;
    a multi-line ``new`` is indented like the line where ``old`` starts. The result reads
    the function's module globals (plus ``names``), so a chaff shows its bug as a diff of
    the authors' code and stays in step when the authors edit other lines::

        train = patch_source(randlabels.train, ("opt.zero_grad()", "pass"))
    """
    import textwrap

    source = textwrap.dedent(inspect.getsource(function))
    for old, new in edits:
        found = source.count(old)
        if found != 1:
            raise ValueError(
                f"patch_source: expected {old!r} exactly once in {function.__qualname__}'s "
                f"source, found it {found} times (did the authors' code change?)")
        start = source.index(old)
        line_start = source.rfind("\n", 0, start) + 1
        indent = source[line_start:start] if not source[line_start:start].strip() else ""
        new = new.replace("\n", "\n" + indent)
        source = source.replace(old, new)
    namespace = dict(function.__globals__)
    namespace.update(names or {})
    flags = __future__.annotations.compiler_flag  # annotations stay strings, as in most modules
    exec(compile(source, f"<patched {function.__name__}>", "exec", flags=flags, dont_inherit=True),
         namespace)
    patched = namespace[function.__name__]
    patched.__module__ = function.__module__
    return patched


# --------------------------------------------------------------------------- loading


def load_implementation(source: str, name: str = "implementation") -> types.ModuleType:
    """Execute an implementation's source in a fresh module named ``name``.

    The module's ``__file__`` is ``"<implementation>"`` and its docstring is neutral
    (:data:`NEUTRAL_DOC`), and it is not left in ``sys.modules``, so a test cannot tell
    from the module which file it came from. If the source defines ``implementation``
    as a module (a :func:`derive` result), that module is returned instead.
    """
    if not isinstance(source, str):
        raise TypeError(f"load_implementation: expected the source as str, got {type(source).__name__}")
    module = types.ModuleType(name, NEUTRAL_DOC)
    module.__file__ = f"<{name}>"
    code = compile(source, f"<{name}>", "exec")
    previous = sys.modules.get(name)
    sys.modules[name] = module  # dataclasses and typing look the module up while it executes
    try:
        exec(code, module.__dict__)
    finally:
        if previous is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = previous
    result = module.__dict__.get("implementation")
    if isinstance(result, types.ModuleType):
        module = result
    module.__doc__ = NEUTRAL_DOC
    return module


def display_name(path: Path | str) -> str:
    """The first line of an implementation file's module docstring (else the file's stem)."""
    path = Path(path)
    try:
        import ast

        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    except (OSError, SyntaxError, ValueError):
        doc = None
    first = doc.strip().splitlines()[0].strip() if doc and doc.strip() else ""
    return first.rstrip(".") or path.stem


# --------------------------------------------------------------------------- running tests


class _TestTimeout(BaseException):
    """Raised inside a test that ran past its limit (a BaseException: ``except Exception`` cannot swallow it)."""


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`_TestTimeout` in the block after ``seconds`` (main thread only; elsewhere no limit)."""
    if (seconds is None or seconds <= 0 or not hasattr(signal, "setitimer")
            or threading.current_thread() is not threading.main_thread()):
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise _TestTimeout()

    start = time.monotonic()
    old_handler = signal.signal(signal.SIGALRM, expire)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        if old_delay > 0:  # someone else's timer was running: give it back what is left
            left = old_delay - (time.monotonic() - start)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3), old_interval)


def _seeded_block(seed: int) -> contextlib.AbstractContextManager[Any]:
    try:
        from reprokit.seeding import seeded
    except ImportError:  # pragma: no cover - seeding ships with reprokit
        import torch

        @contextlib.contextmanager
        def fallback() -> Iterator[None]:
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                yield

        return fallback()
    return seeded(seed)


@contextlib.contextmanager
def _grading_profile() -> Iterator[None]:
    """Derandomized hypothesis while the tests run, if the tests use hypothesis at all."""
    if "hypothesis" not in sys.modules:
        yield
        return
    from hypothesis import settings

    from reprokit.seeding import register_hypothesis_profiles

    previous = settings.get_current_profile_name()
    register_hypothesis_profiles()
    settings.load_profile("reprokit-grading")
    try:
        yield
    finally:
        settings.load_profile(previous)


def _fixture_makers(implementation: types.ModuleType) -> dict[str, Callable[[], Any]]:
    import numpy as np

    makers: dict[str, Callable[[], Any]] = {
        "implementation": lambda: implementation,
        "seed": lambda: SEED,
        "reprokit_seed": lambda: SEED,
        "rng": lambda: np.random.default_rng(SEED),
        "seeded": lambda: np.random.default_rng(SEED),
    }
    try:
        from reprokit.data import tiny_digits
    except ImportError:  # pragma: no cover - data ships with reprokit
        pass
    else:
        makers["tiny_digits"] = lambda: tiny_digits(seed=SEED)
    return makers


#: The fixtures a test may ask for by parameter name.
FIXTURES = ("implementation", "seed", "reprokit_seed", "rng", "seeded", "tiny_digits")


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 3] + "..."


def _assertion_message(e: AssertionError) -> str:
    if str(e).strip():
        return _clip(str(e))
    # A bare `assert a == b` has no message: show the line that failed.
    tb = traceback.extract_tb(e.__traceback__)
    if tb:
        frame = tb[-1]
        line = frame.line or linecache.getline(frame.filename, frame.lineno).strip()
        return _clip(f"assert failed in {frame.name}: {line}" if line
                     else f"assert failed in {frame.name} (line {frame.lineno})")
    return "assert failed"


def _run_one(name: str, fn: Callable[..., Any], makers: Mapping[str, Callable[[], Any]],
             timeout_s: float) -> Outcome:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError) as e:
        return {"status": "error", "message": f"{name} cannot be called as a test: {e}"}
    kwargs: dict[str, Any] = {}
    for p in params.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.name in makers:
            continue
        if p.default is not p.empty:
            continue
        return {"status": "error", "message": (
            f"{name} asks for {p.name!r}, which is not a reprokit fixture "
            f"(available: {', '.join(sorted(makers))})")}
    try:
        with _seeded_block(SEED), _time_limit(timeout_s):
            for p in params.values():
                if p.name in makers and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                    kwargs[p.name] = makers[p.name]()
            fn(**kwargs)
    except _TestTimeout:
        return {"status": "timeout", "message": f"{name} ran longer than {timeout_s:g} s and was stopped"}
    except AssertionError as e:
        return {"status": "failed", "message": _assertion_message(e)}
    except BaseException as e:  # noqa: BLE001 - a test may raise anything, SystemExit included
        return {"status": "error", "message": _clip(f"{type(e).__name__}: {e}")}
    return {"status": "passed", "message": ""}


def run_tests_against(tests: Mapping[str, Callable[..., Any]], implementation: types.ModuleType,
                      *, timeout_s: float = 20.0) -> dict[str, Outcome]:
    """Call each test with its fixtures against ``implementation``; return outcomes by name.

    Parameters are resolved by name: ``implementation`` (the module), ``seed`` and
    ``reprokit_seed`` (0), ``rng`` and ``seeded`` (a NumPy Generator seeded 0) and
    ``tiny_digits`` (``reprokit.data.tiny_digits(seed=0)``); a parameter with a default
    keeps it; any other name is an ``error`` outcome. Each test runs inside
    ``reprokit.seeding.seeded(0)`` (every RNG restored afterwards), with hypothesis's
    derandomized ``reprokit-grading`` profile if hypothesis is loaded, and is stopped
    after ``timeout_s`` seconds of wall-clock time (in the main thread). Output the
    tests print is discarded. Outcomes: ``passed``, ``failed`` (an AssertionError and
    its message), ``error`` (any other exception: type and message) or ``timeout``.
    """
    makers = _fixture_makers(implementation)
    out: dict[str, Outcome] = {}
    with _grading_profile():
        for name, fn in tests.items():
            captured = io.StringIO()
            with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
                out[str(name)] = _run_one(str(name), fn, makers, timeout_s)
    return out


# --------------------------------------------------------------------------- the hunt


@dataclass
class ImplementationResult:
    """The outcomes of every test on one wheat or chaff."""

    kind: str  # "wheat" or "chaff"
    name: str  # what students see: the docstring's first line, or "hidden chaff 3"
    outcomes: dict[str, Outcome]

    @property
    def label(self) -> str:
        """How the summary names it: ``chaff 'labels re-drawn every epoch'``, ``wheat 2``."""
        if self.name.startswith(("wheat ", "hidden chaff ")):
            return self.name
        return f"{self.kind} '{self.name}'"

    def failing(self) -> list[str]:
        """Tests that did not pass (failed, error or timeout)."""
        return [t for t, o in self.outcomes.items() if o["status"] != "passed"]


@dataclass
class HuntReport:
    """Every test's outcome on every wheat and chaff, with the score and a readable summary."""

    tests: list[str]
    results: list[ImplementationResult] = field(default_factory=list)

    @property
    def wheats(self) -> list[ImplementationResult]:
        """Results on the correct implementations."""
        return [r for r in self.results if r.kind == "wheat"]

    @property
    def chaffs(self) -> list[ImplementationResult]:
        """Results on the planted bugs."""
        return [r for r in self.results if r.kind == "chaff"]

    @property
    def wheat_failures(self) -> list[tuple[str, str, str]]:
        """(wheat, test, message) for each test that did not pass on a correct implementation."""
        return [(r.name, t, _describe(r.outcomes[t])) for r in self.wheats for t in r.failing()]

    @property
    def caught(self) -> dict[str, list[str]]:
        """Chaff -> the tests that failed, errored or timed out on it (empty: not caught)."""
        return {r.name: r.failing() for r in self.chaffs}

    @property
    def n_caught(self) -> int:
        """How many chaffs at least one test caught."""
        return sum(bool(tests) for tests in self.caught.values())

    def score(self, points_per_chaff: float = 1.0) -> float:
        """``points_per_chaff`` per chaff caught; 0 if any test fails on any wheat."""
        if self.wheat_failures or not self.tests:
            return 0.0
        return float(points_per_chaff) * self.n_caught

    def summary(self) -> str:
        """A text table a student can act on: each wheat's verdict, each chaff's catchers."""
        lines = [f"Bug hunt: {len(self.tests)} test(s) against {len(self.wheats)} correct "
                 f"implementation(s) (wheats) and {len(self.chaffs)} planted bug(s) (chaffs)"]
        if not self.tests:
            lines.append("  no tests found: define functions named test_... and list them")
        if self.wheats:
            lines.append("wheats: correct code, every test must pass")
        for r in self.wheats:
            bad = r.failing()
            if not bad:
                lines.append(f"  {r.label}: all {len(r.outcomes)} test(s) pass")
            for t in bad:
                lines.append(f"  {r.label} failed {t}: your test rejects a correct implementation: "
                             f"{_describe(r.outcomes[t])}")
        if self.chaffs:
            lines.append("chaffs: planted bugs, each caught earns credit")
        for r in self.chaffs:
            bad = r.failing()
            if bad:
                lines.append(f"  {r.label} caught by {', '.join(bad)}")
            else:
                lines.append(f"  {r.label} NOT caught: every test passed on it")
        if self.wheat_failures:
            lines.append(f"score: 0 (caught {self.n_caught} of {len(self.chaffs)} chaffs, but a "
                         "test failed on a correct implementation; a test must accept every "
                         "correct implementation, e.g. not pin exact random draws)")
        else:
            lines.append(f"score: caught {self.n_caught} of {len(self.chaffs)} chaffs")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data."""
        return {"tests": list(self.tests),
                "results": [{"kind": r.kind, "name": r.name, "outcomes": r.outcomes}
                            for r in self.results]}


def _describe(outcome: Outcome) -> str:
    status, message = outcome["status"], outcome.get("message", "")
    if status == "failed":
        return message or "assert failed"
    return f"{status}: {message}" if message else status


def _name_tests(tests: Mapping[str, Callable[..., Any]] | Sequence[Callable[..., Any]]
                ) -> dict[str, Callable[..., Any]]:
    if isinstance(tests, Mapping):
        return {str(k): v for k, v in tests.items()}
    if isinstance(tests, (str, bytes)) or not isinstance(tests, Sequence):
        raise TypeError(
            "hunt: expected the tests as a dict {name: function} or a list of functions, "
            f"got {type(tests).__name__}")
    named: dict[str, Callable[..., Any]] = {}
    for i, fn in enumerate(tests, 1):
        name = str(getattr(fn, "__name__", "") or f"test #{i}")
        if name in named:
            name = f"{name} #{i}"
        named[name] = fn
    return named


def _valid(outcomes: Any, names: Sequence[str]) -> dict[str, Outcome]:
    """Outcomes for exactly ``names``, as plain str dicts (missing ones become errors)."""
    out: dict[str, Outcome] = {}
    for name in names:
        o = outcomes.get(name) if isinstance(outcomes, dict) else None
        if (isinstance(o, dict) and o.get("status") in STATUSES
                and isinstance(o.get("message", ""), str)):
            out[name] = {"status": str(o["status"]), "message": _clip(str(o.get("message", "")))}
        else:
            out[name] = {"status": "error", "message": "the test produced no result"}
    return out


def _all(names: Sequence[str], status: str, message: str) -> dict[str, Outcome]:
    return {n: {"status": status, "message": _clip(message)} for n in names}


def _run_in_fork(tests: Mapping[str, Callable[..., Any]], source: str, timeout_s: float
                 ) -> dict[str, Outcome]:
    """Load ``source`` and run ``tests`` in a child process; the parent only reads JSON back."""
    names = list(tests)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child (coverage cannot see it)
        code = 0
        try:
            os.close(r)
            sys.stdout = sys.stderr = io.StringIO()  # a kernel's streams belong to the parent
            from reprokit.sandbox import one_thread_after_fork

            one_thread_after_fork()  # and parallel graders do not contend
            try:
                impl = load_implementation(source)
            except BaseException as e:  # noqa: BLE001
                payload = json.dumps({"load_error": f"{type(e).__name__}: {e}"})
            else:
                payload = json.dumps({"ok": run_tests_against(tests, impl, timeout_s=timeout_s)})
        except BaseException as e:  # noqa: BLE001
            payload = json.dumps({"error": f"{type(e).__name__}: {e}"})
        try:
            data = payload.encode()
            while data:
                data = data[os.write(w, data):]
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    # Per-test limits run inside the child; this outer limit catches what they cannot
    # (a test that swallows the timeout, a hang inside C code).
    deadline = time.monotonic() + timeout_s * max(1, len(names)) + 30.0
    chunks: list[bytes] = []
    killed = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                killed = True
                break
            ready, _, _ = select.select([r], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(r, 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
    finally:
        os.close(r)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
    if killed:
        return _all(names, "timeout", "the tests did not finish on this implementation in time "
                                      "and were stopped")
    try:
        parsed = json.loads(b"".join(chunks).decode())
    except ValueError:
        return _all(names, "error", "the process running the tests ended abruptly "
                                    "(os._exit, a crash or running out of memory)")
    if "load_error" in parsed:
        raise ImplementationError(f"the implementation could not be loaded: {parsed['load_error']}")
    if "error" in parsed:
        return _all(names, "error", f"running the tests failed: {parsed['error']}")
    return _valid(parsed.get("ok"), names)


def _run_in_process(tests: Mapping[str, Callable[..., Any]], source: str, timeout_s: float
                    ) -> dict[str, Outcome]:
    names = list(tests)
    try:
        impl = load_implementation(source)
    except Exception as e:  # noqa: BLE001
        raise ImplementationError(
            f"the implementation could not be loaded: {type(e).__name__}: {e}") from e
    return _valid(run_tests_against(tests, impl, timeout_s=timeout_s), names)


#: Modules imported lazily on first use that cost seconds (torch's first optimiser imports
#: ``torch._dynamo``; ``load_digits`` needs ``sklearn.datasets``). :func:`hunt` imports them
#: once in the parent, where available, so forked children do not each pay for them.
#: ``hypothesis`` is warmed up by running one tiny derandomized property (its first run in
#: a process costs about a second, which every child would pay again).
PRELOAD = ("torch._dynamo", "torch.optim", "sklearn.datasets", "reprokit.properties",
           "hypothesis")


def _warm_hypothesis() -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=3, derandomize=True, database=None, deadline=None)
    @given(st.integers(0, 9), st.floats(0.0, 1.0), st.sampled_from([0, 1]))
    def warm(a: int, b: float, c: int) -> None:
        pass

    warm()


_PRELOADED: set[str] = set()


def _preload(modules: Sequence[str]) -> None:
    import importlib

    for name in modules:
        if name in _PRELOADED:
            continue
        _PRELOADED.add(name)
        root = name.split(".")[0]
        if root == "torch" and "torch" not in sys.modules:
            continue  # only warm up torch where it is already in use
        with contextlib.suppress(Exception):
            importlib.import_module(name)
            if name == "hypothesis":
                _warm_hypothesis()


_CACHE: OrderedDict[tuple, tuple[list, dict[str, Outcome]]] = OrderedDict()
_CACHE_SIZE = 64


def _cache_key(named: Mapping[str, Callable[..., Any]], source: str, timeout_s: float,
               runner: Any) -> tuple:
    # The entry keeps the functions alive, so their ids cannot be reused while it exists.
    return (tuple((n, id(f)) for n, f in named.items()),
            hashlib.sha256(source.encode()).hexdigest(), float(timeout_s),
            runner is not None)


def hunt(tests: Mapping[str, Callable[..., Any]] | Sequence[Callable[..., Any]],
         wheats: Sequence[Path | str], chaffs: Sequence[Path | str], *,
         timeout_s: float = 20.0,
         runner: Callable[[list[str], str], Mapping[str, Any]] | None = None,
         reveal: bool = False, preload: Sequence[str] = PRELOAD,
         cache: bool = False) -> HuntReport:
    """Run ``tests`` against every wheat and chaff file; return a :class:`HuntReport`.

    ``tests`` is a dict ``{name: function}`` or a list of functions (named by
    ``__name__``). Each implementation file is loaded with :func:`load_implementation`
    and the tests run against it through :func:`run_tests_against` in a forked child
    process, so nothing a test does (editing a module, ``os._exit``, a crash) reaches
    the next implementation; without ``os.fork`` they run in this process.
    ``runner(test_names, source)``, if given, runs them instead; tests that are the
    sandbox's remote proxies (attribute ``_reprokit_remote``) are dispatched to it.

    With ``reveal`` each implementation is named by the first line of its docstring;
    otherwise as ``wheat 1``, ``hidden chaff 2`` ... (for material students must not see).
    ``preload`` names modules to import here first (see :data:`PRELOAD`). With ``cache``
    the outcomes of these very test functions on an implementation with the same source
    are reused from an earlier call in this process (several graded tests share one hunt).
    """
    named = _name_tests(tests)
    names = list(named)
    if runner is None and names:
        remote = getattr(named[names[0]], "_reprokit_remote", None)
        if remote is not None:
            def runner(test_names: list[str], source: str) -> Mapping[str, Any]:
                return remote.run_tests_against({n: named[n] for n in test_names}, source,
                                                timeout_s)

    report = HuntReport(tests=names)
    for kind, paths in (("wheat", wheats), ("chaff", chaffs)):
        for i, path in enumerate(paths, 1):
            path = Path(path)
            if reveal:
                label = display_name(path)
            else:
                label = f"wheat {i}" if kind == "wheat" else f"hidden chaff {i}"
            outcomes: dict[str, Outcome]
            if not names:
                outcomes = {}
            else:
                try:
                    source = path.read_text(encoding="utf-8")
                except OSError as e:
                    raise FileNotFoundError(f"bug hunt: cannot read {kind} {path}: {e}") from e
                key = _cache_key(named, source, timeout_s, runner)
                hit = _CACHE.get(key) if cache else None
                if hit is not None and all(a is b for a, b in zip(hit[0], named.values(),
                                                                   strict=True)):
                    outcomes = copy.deepcopy(hit[1])
                elif runner is not None:
                    try:
                        outcomes = _valid(dict(runner(names, source)), names)
                    except Exception as e:  # noqa: BLE001 - the tests' process failed
                        outcomes = _all(names, "error", f"{type(e).__name__}: {e}")
                elif hasattr(os, "fork"):
                    if preload:
                        _preload(preload)
                        preload = ()
                    try:
                        outcomes = _run_in_fork(named, source, timeout_s)
                    except ImplementationError as e:
                        raise ImplementationError(f"{kind} {path}: {e}") from None
                else:  # pragma: no cover - Windows
                    outcomes = _run_in_process(named, source, timeout_s)
                if cache and hit is None:
                    _CACHE[key] = (list(named.values()), copy.deepcopy(outcomes))
                    while len(_CACHE) > _CACHE_SIZE:
                        _CACHE.popitem(last=False)
            report.results.append(ImplementationResult(kind, label, outcomes))
    return report
