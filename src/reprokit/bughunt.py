"""Level 4, the bug hunt: run a student's tests against wheats and chaffs.

A *wheat* is a correct implementation of the authors' API that differs from the
authors' code in legitimate ways (another random stream, another minibatch order); a
*chaff* is the authors' code with one planted reproducibility bug. A good test suite
passes on every wheat and fails on as many chaffs as it can. Scoring follows that:
one wheat failing zeroes the score (the suite rejects correct code), and each chaff
caught earns credit.

* :func:`derive` writes a chaff in a few lines: the base module with one function
  replaced, rebound so the base's internal calls see the replacement.
* :func:`compile_implementation` turns a wheat or chaff file into anonymous bytecode in the
  trusted process: one flat module, no docstrings, comments, file name or line numbers;
  :func:`load_compiled` runs it in the process that runs the tests. Behaviour is all a
  test can tell apart (see docs/security.md, "Level 4").
* :func:`run_tests_against` calls each test with reprokit's fixtures, seeded, under a
  CPU-time limit (with a wall-clock net), and returns plain outcomes.
* :func:`hunt` runs the tests against every wheat and chaff, each in its own forked
  process with fresh folders (:func:`enter_fresh_run`), in an order drawn per submission
  (:func:`draw_order`), and returns a :class:`HuntReport` (``score``, ``summary``).
* :func:`load_implementation` executes a file's source as it stands, for use outside
  grading.

Tests are written as under pytest with reprokit's plugin (``def test_x(implementation,
tiny_digits): ...``), so the same function runs with
``pytest --reprokit-impl=chaffs/public/x.py`` and here.
"""

from __future__ import annotations
import __future__

import ast
import contextlib
import copy
import hashlib
import inspect
import io
import json
import linecache
import marshal
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
    "compile_implementation",
    "derive",
    "display_name",
    "draw_order",
    "enter_fresh_run",
    "flatten_implementation",
    "hunt",
    "load_compiled",
    "load_implementation",
    "patch_source",
    "run_compiled",
    "run_tests_against",
    "tests_digest",
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


def patch_source(function: Any, *edits: tuple[str, str],
                 names: Mapping[str, Any] | None = None) -> Any:
    """``function`` recompiled from its own source with text ``edits`` applied.

    Each edit is ``(old, new)``: ``old`` must occur exactly once in the function's source;
    a multi-line ``new`` is indented like the line where ``old`` starts. The result reads
    the function's module globals (plus ``names``), so a chaff shows its bug as a diff of
    the authors' code and stays in step when the authors edit other lines::

        train = patch_source(randlabels.train, ("opt.zero_grad()", "pass"))

    ``function`` may also be a class of the module (a bug in a layer's ``forward``):
    the whole class is recompiled with the edits, and :func:`derive` puts it in place.
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
    if isinstance(function, type):  # a class has no __globals__: its module's are the same
        namespace = dict(vars(sys.modules[function.__module__]))
    else:
        namespace = dict(function.__globals__)
    namespace.update(names or {})
    flags = __future__.annotations.compiler_flag  # annotations stay strings, as in most modules
    exec(compile(source, f"<patched {function.__name__}>", "exec", flags=flags, dont_inherit=True),
         namespace)
    patched = namespace[function.__name__]
    patched.__module__ = function.__module__
    return patched


# --------------------------------------------------------------------------- loading


def _exec_module(name: str, code: types.CodeType) -> types.ModuleType:
    """Run ``code`` in a fresh module ``name`` (file ``"<name>"``, the neutral docstring), in
    ``sys.modules`` only while it executes (dataclasses and typing look it up then)."""
    module = types.ModuleType(name, NEUTRAL_DOC)
    module.__file__ = f"<{name}>"
    previous = sys.modules.get(name)
    sys.modules[name] = module
    try:
        exec(code, module.__dict__)
    finally:
        if previous is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = previous
    return module


def load_implementation(source: str, name: str = "implementation") -> types.ModuleType:
    """Execute an implementation's source in a fresh module named ``name``.

    The module's ``__file__`` is ``"<implementation>"`` and its docstring is neutral
    (:data:`NEUTRAL_DOC`), and it is not left in ``sys.modules``, so a test cannot tell
    from the module which file it came from. If the source defines ``implementation``
    as a module (a :func:`derive` result), that module is returned instead.
    """
    if not isinstance(source, str):
        raise TypeError(f"load_implementation: expected the source as str, got {type(source).__name__}")
    module = _exec_module(name, compile(source, f"<{name}>", "exec"))
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


# --------------------------------------------------------------------------- compiling


class _Anonymise(ast.NodeTransformer):
    """Drops docstrings and puts every node on line 1, column 0 of ``<implementation>``."""

    def _strip_doc(self, node: Any) -> Any:
        body = node.body
        if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
        return node

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            self._strip_doc(node)
        super().generic_visit(node)
        for attr in ("lineno", "end_lineno"):
            if attr in node._attributes:
                setattr(node, attr, 1)
        for attr in ("col_offset", "end_col_offset"):
            if attr in node._attributes:
                setattr(node, attr, 0)
        return node


def _module_file(start: Path, dotted: str) -> Path:
    """The file of module ``dotted`` (``authors.randlabels``) in ``start`` or a folder above it."""
    parts = dotted.split(".")
    for folder in [start, *start.parents]:
        for candidate in (folder.joinpath(*parts).with_suffix(".py"),
                          folder.joinpath(*parts, "__init__.py")):
            if candidate.is_file():
                return candidate
    raise ImplementationError(f"cannot find module {dotted!r} in {start} or a folder above it")


def _patched_def(base_source: str, base_tree: ast.Module, call: ast.Call, where: str
                 ) -> tuple[ast.stmt, list[ast.stmt]]:
    """The ``def`` that ``patch_source(base.f, (old, new), ..., names={...})`` produces, as AST,
    plus the assignments its ``names`` need (the same text edits :func:`patch_source` makes)."""
    import textwrap

    target = call.args[0] if call.args else None
    if not isinstance(target, ast.Attribute):
        raise ImplementationError(f"{where}: patch_source's first argument must be base.function")
    node = next((n for n in base_tree.body
                 if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                 and n.name == target.attr), None)
    if node is None:
        raise ImplementationError(f"{where}: the authors' module has no function or class "
                                  f"{target.attr!r}")
    lines = base_source.splitlines(keepends=True)
    first = min([d.lineno for d in node.decorator_list] + [node.lineno])
    source = textwrap.dedent("".join(lines[first - 1:node.end_lineno]))
    for arg in call.args[1:]:
        old, new = ast.literal_eval(arg)
        found = source.count(old)
        if found != 1:
            raise ImplementationError(f"{where}: expected {old!r} exactly once in "
                                      f"{target.attr}'s source, found it {found} times")
        start = source.index(old)
        line_start = source.rfind("\n", 0, start) + 1
        indent = source[line_start:start] if not source[line_start:start].strip() else ""
        source = source.replace(old, new.replace("\n", "\n" + indent))
    extra: list[ast.stmt] = []
    for kw in call.keywords:
        if kw.arg == "names" and isinstance(kw.value, ast.Dict):
            for key, value in zip(kw.value.keys, kw.value.values, strict=True):
                name = ast.literal_eval(key)
                if not (isinstance(value, ast.Name) and value.id == name):
                    extra.append(ast.Assign([ast.Name(name, ast.Store())], value))
    return ast.parse(source).body[0], extra


def _is_call_to(node: Any, name: str) -> bool:
    return (isinstance(node, ast.Call) and
            (isinstance(node.func, ast.Name) and node.func.id == name
             or isinstance(node.func, ast.Attribute) and node.func.attr == name))


class _BaseAttributes(ast.NodeTransformer):
    """``randlabels.NUM_CLASSES`` becomes ``NUM_CLASSES``: in the flat module it is one name."""

    def __init__(self, alias: str):
        self.alias, self.bare = alias, False

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if isinstance(node.value, ast.Name) and node.value.id == self.alias:
            return ast.copy_location(ast.Name(node.attr, type(node.ctx)()), node)
        return self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id == self.alias:
            self.bare = True
        return node


def flatten_implementation(path: Path | str) -> ast.Module:
    """One self-contained module (as AST) equivalent to the implementation file at ``path``.

    A plain module is itself. A file ending ``implementation = derive(base, name=value, ...)``
    becomes the base module's source with each replaced top-level definition swapped, in
    place, for its replacement: a ``def`` from the file (renamed to ``name``), a
    :func:`patch_source` edit of the base's own function (the same text edit), or any other
    expression assigned to ``name``. The file's other imports (not reprokit's, not the
    base's) join the base's imports; its other top-level statements go last. Docstrings and
    comments are gone and every node sits on line 1 of ``<implementation>``, so every
    wheat and chaff compiles to code objects that differ only where their code does.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    where = path.name
    try:
        tree = ast.parse(text)
    except SyntaxError as e:
        raise ImplementationError(f"{where} does not parse: {e}") from None
    derive_at = next((i for i, s in enumerate(tree.body) if isinstance(s, ast.Assign)
                      and [getattr(t, "id", None) for t in s.targets] == ["implementation"]
                      and _is_call_to(s.value, "derive")), None)
    if derive_at is None:
        return _Anonymise().visit(tree)
    call = tree.body[derive_at].value
    if not call.args or not isinstance(call.args[0], ast.Name):
        raise ImplementationError(f"{where}: derive's first argument must be the base module's name")
    alias = call.args[0].id
    base_module = None
    imports: list[ast.stmt] = []
    for stmt in tree.body:
        if isinstance(stmt, ast.ImportFrom) and not stmt.level:
            if (stmt.module or "").split(".")[0] == "reprokit":
                continue
            bound = [a for a in stmt.names if (a.asname or a.name) == alias]
            if bound:
                base_module = f"{stmt.module}.{bound[0].name}"
                continue
            imports.append(stmt)
        elif isinstance(stmt, ast.Import):
            if any(a.name.split(".")[0] == "reprokit" for a in stmt.names):
                continue
            bound = [a for a in stmt.names
                     if a.asname == alias or a.asname is None and a.name == alias]
            if bound:
                base_module = bound[0].name
                continue
            imports.append(stmt)
    if base_module is None:
        raise ImplementationError(f"{where}: no import binds the base module {alias!r}")
    base_file = _module_file(path.parent, base_module)
    base_source = base_file.read_text(encoding="utf-8")
    base_tree = ast.parse(base_source)

    local: dict[str, ast.stmt] = {}
    for stmt in tree.body[:derive_at]:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            local[stmt.name] = stmt
        elif (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
              and isinstance(stmt.targets[0], ast.Name)):
            local[stmt.targets[0].id] = stmt
    replacements: dict[str, list[ast.stmt]] = {}
    used: set[str] = set()
    for kw in call.keywords:
        if kw.arg is None:
            raise ImplementationError(f"{where}: derive(**...) cannot be compiled; name each replacement")
        value = kw.value
        if isinstance(value, ast.Name) and value.id in local:
            used.add(value.id)
            value_stmt = local[value.id]
            if isinstance(value_stmt, ast.Assign):
                value = value_stmt.value
            else:
                node = copy.deepcopy(value_stmt)
                node.name = kw.arg
                replacements[kw.arg] = [node]
                continue
        if _is_call_to(value, "patch_source"):
            node, extra = _patched_def(base_source, base_tree, value, where)
            node.name = kw.arg
            replacements[kw.arg] = [*extra, node]
        else:
            replacements[kw.arg] = [ast.Assign([ast.Name(kw.arg, ast.Store())], value)]
    rest = [s for s in tree.body[:derive_at] + tree.body[derive_at + 1:]
            if not isinstance(s, (ast.Import, ast.ImportFrom))
            and not (isinstance(s, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                     and s.name in used)
            and not (isinstance(s, ast.Assign) and len(s.targets) == 1
                     and getattr(s.targets[0], "id", None) in used)
            and not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    rewrite = _BaseAttributes(alias)
    for stmts in [*replacements.values(), rest]:
        for stmt in stmts:
            rewrite.visit(stmt)

    body: list[ast.stmt] = []
    seen_imports = {ast.dump(s) for s in base_tree.body if isinstance(s, (ast.Import, ast.ImportFrom))}
    pending = set(replacements)
    prelude_done = False
    for stmt in base_tree.body:
        is_prelude = (isinstance(stmt, (ast.Import, ast.ImportFrom))
                      or isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant))
        if not prelude_done and not is_prelude:
            prelude_done = True
            body += [s for s in imports if ast.dump(s) not in seen_imports]
            if rewrite.bare:  # the file reads the base module itself: here, that is this module
                body += ast.parse(f"{alias} = __import__('sys').modules[__name__]").body
        names = ([stmt.name] if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                 else [t.id for t in getattr(stmt, "targets", []) if isinstance(t, ast.Name)]
                 if isinstance(stmt, ast.Assign) else
                 [stmt.target.id] if isinstance(stmt, ast.AnnAssign)
                 and isinstance(stmt.target, ast.Name) else [])
        hit = [n for n in names if n in pending]
        if hit:
            for n in hit:
                body += replacements[n]
                pending.discard(n)
        else:
            body.append(stmt)
    for n in sorted(pending):  # replaced names the base did not define at top level
        body += replacements[n]
    body += rest
    module = ast.Module(body=body, type_ignores=[])
    return _Anonymise().visit(module)


def compile_implementation(path: Path | str) -> bytes:
    """The implementation file at ``path`` as marshalled, anonymous bytecode.

    This is what crosses into the process that runs a student's tests: no source text,
    docstring, comment, file name or line number, and no base module to import. Run it
    with :func:`load_compiled`. Raises :class:`ImplementationError` if it does not compile.
    """
    tree = flatten_implementation(path)
    try:
        code = compile(ast.fix_missing_locations(tree), "<implementation>", "exec",
                       dont_inherit=True)
    except (SyntaxError, ValueError, TypeError) as e:
        raise ImplementationError(f"{Path(path).name} does not compile: {e}") from None
    return marshal.dumps(code)


def load_compiled(code: bytes, name: str = "implementation") -> types.ModuleType:
    """Execute :func:`compile_implementation`'s bytes in a fresh module named ``name``.

    Every implementation loads the same way: ``__file__`` ``"<implementation>"``, the
    neutral docstring :data:`NEUTRAL_DOC`, not left in ``sys.modules``.
    """
    if not isinstance(code, bytes):
        raise TypeError(f"load_compiled: expected bytes, got {type(code).__name__}")
    body = marshal.loads(code)
    if not isinstance(body, types.CodeType):
        raise TypeError("load_compiled: the bytes do not hold a code object")
    module = _exec_module(name, body)
    module.__doc__ = NEUTRAL_DOC
    return module


# --------------------------------------------------------------------------- running tests


class _TestTimeout(BaseException):
    """Raised inside a test that ran past its limit (a BaseException: ``except Exception`` cannot swallow it)."""


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`_TestTimeout` in the block once it has spent ``seconds`` CPU-seconds (all
    threads of this process), or :data:`reprokit.cputime.WALL_FACTOR` times that in wall time
    (a test that sleeps or blocks). CPU time, so a busy machine does not stop a test that an
    idle one lets finish. Main thread only; elsewhere no limit."""
    if (seconds is None or seconds <= 0 or not hasattr(signal, "setitimer")
            or threading.current_thread() is not threading.main_thread()):
        yield
        return
    from reprokit.cputime import WALL_FACTOR

    def expire(signum: int, frame: Any) -> None:
        raise _TestTimeout(signum)

    timers = ((signal.ITIMER_PROF, signal.SIGPROF, seconds),
              (signal.ITIMER_REAL, signal.SIGALRM, WALL_FACTOR * seconds))
    start = time.monotonic()
    saved = []
    for timer, sig, limit in timers:
        handler = signal.signal(sig, expire)
        saved.append((timer, sig, handler, *signal.setitimer(timer, limit)))
    try:
        yield
    finally:
        for timer, sig, handler, old_delay, old_interval in saved:
            signal.setitimer(timer, 0)
            signal.signal(sig, handler)
            if old_delay > 0:  # someone else's timer was running: give it back what is left
                left = old_delay - (time.monotonic() - start)
                signal.setitimer(timer, max(left, 1e-3), old_interval)


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
    except _TestTimeout as e:
        if e.args and e.args[0] == signal.SIGALRM:
            from reprokit.cputime import WALL_FACTOR

            return {"status": "timeout", "message": f"{name} waited more than "
                    f"{WALL_FACTOR * timeout_s:g} s (wall time) and was stopped"}
        return {"status": "timeout", "message": f"{name} used more than {timeout_s:g} CPU-seconds "
                "and was stopped"}
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
    after ``timeout_s`` CPU-seconds, or ten times that in wall time (in the main thread). Output the
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


def enter_fresh_run(root: str) -> None:
    """Make this (forked) process a fresh place to run one implementation's tests.

    Its work dir, ``HOME`` and ``TMPDIR`` (and :mod:`tempfile`'s folder) become new empty
    folders under ``root``, which the parent removes afterwards; it may start no process or
    thread that could outlive it and carry state to the next run (``RLIMIT_NPROC`` 0,
    enforced for every uid but root); and no process of its uid may read its memory
    (not dumpable). Called by the runner before it loads the implementation.
    """
    import resource
    import tempfile

    work, tmp = os.path.join(root, "work"), os.path.join(root, "tmp")
    os.makedirs(work, mode=0o700, exist_ok=True)
    os.makedirs(tmp, mode=0o700, exist_ok=True)
    os.chdir(work)
    os.environ.update({"HOME": work, "TMPDIR": tmp, "TEMP": tmp, "TMP": tmp,
                       "MPLCONFIGDIR": tmp})
    tempfile.tempdir = tmp
    with contextlib.suppress(ValueError, OSError, AttributeError):
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0


def run_compiled(tests: Mapping[str, Callable[..., Any]], code: bytes, timeout_s: float,
                 root: str) -> dict[str, Any]:
    """In a forked runner: enter a fresh run under ``root``, load ``code`` and run ``tests``.

    Returns ``{"ok": outcomes}`` or ``{"load_error": message}`` (JSON-ready). The caller
    forked this process for this one implementation and discards it afterwards.
    """
    enter_fresh_run(root)
    try:
        impl = load_compiled(code)
    except BaseException as e:  # noqa: BLE001
        return {"load_error": f"{type(e).__name__}: {e}"}
    del code
    return {"ok": run_tests_against(tests, impl, timeout_s=timeout_s)}


def _run_in_fork(tests: Mapping[str, Callable[..., Any]], code: bytes, timeout_s: float
                 ) -> dict[str, Outcome]:
    """Run ``tests`` on ``code`` in a forked child with a fresh folder; read JSON back."""
    import shutil
    import tempfile

    names = list(tests)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    root = tempfile.mkdtemp(prefix="reprokit-run-")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child (coverage cannot see it)
        exit_code = 0
        try:
            os.close(r)
            os.setpgid(0, 0)
            sys.stdout = sys.stderr = io.StringIO()  # a kernel's streams belong to the parent
            _forget_callers(sys._getframe(1))
            from reprokit.sandbox import one_thread_after_fork

            one_thread_after_fork()  # and parallel graders do not contend
            payload = json.dumps(run_compiled(tests, code, timeout_s, root))
        except BaseException as e:  # noqa: BLE001
            payload = json.dumps({"error": f"{type(e).__name__}: {e}"})
        try:
            data = payload.encode()
            while data:
                data = data[os.write(w, data):]
        except BaseException:  # noqa: BLE001
            exit_code = 1
        finally:
            os._exit(exit_code)
    os.close(w)
    # Per-test limits run inside the child; this outer limit catches what they cannot
    # (a test that swallows the timeout, a hang inside C code).
    from reprokit.cputime import WALL_FACTOR

    deadline = time.monotonic() + WALL_FACTOR * (timeout_s * max(1, len(names)) + 30.0)
    chunks: list[bytes] = []
    killed = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
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
        for kill in (os.killpg, os.kill):  # the child and anything it started
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        shutil.rmtree(root, ignore_errors=True)
    if killed:
        return _all(names, "timeout", "the tests did not finish on this implementation in time "
                                      "and were stopped")
    return _parse_run(b"".join(chunks).decode(errors="replace"), names)


def _forget_callers(frame: types.FrameType | None) -> None:  # pragma: no cover - in the child
    """In a forked child that never returns: set the locals of ``frame`` and every frame
    above it to None, and empty the compile and outcome caches, so a test that walks up its
    stack (or asks ``gc``) finds none of the hunt (the other implementations, their kinds,
    the files). Module-level frames keep their globals and closures their cells: the tests
    need them."""
    import ctypes

    _COMPILED.clear()
    _CACHE.clear()
    while frame is not None:
        if frame.f_locals is not frame.f_globals:
            with contextlib.suppress(Exception):
                shared = set(frame.f_code.co_cellvars) | set(frame.f_code.co_freevars)
                values = frame.f_locals
                for name in list(values):  # closures (tests defined there) keep their cells
                    if name not in shared:
                        values[name] = None
                ctypes.pythonapi.PyFrame_LocalsToFast(ctypes.py_object(frame), ctypes.c_int(0))
        frame = frame.f_back


def _parse_run(text: str, names: Sequence[str]) -> dict[str, Outcome]:
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        return _all(names, "error", "the process running the tests ended abruptly "
                                    "(os._exit, a crash or running out of memory)")
    if "load_error" in parsed:
        raise ImplementationError(f"the implementation could not be loaded: {parsed['load_error']}")
    if "error" in parsed:
        return _all(names, "error", f"running the tests failed: {parsed['error']}")
    return _valid(parsed.get("ok"), names)


def _run_in_process(tests: Mapping[str, Callable[..., Any]], code: bytes, timeout_s: float
                    ) -> dict[str, Outcome]:
    names = list(tests)
    try:
        impl = load_compiled(code)
    except Exception as e:  # noqa: BLE001
        raise ImplementationError(
            f"the implementation could not be loaded: {type(e).__name__}: {e}") from e
    return _valid(run_tests_against(tests, impl, timeout_s=timeout_s), names)


def _code_fingerprint(code: types.CodeType) -> bytes:
    """A code object's bytecode, names and constants, without its file name or line numbers."""
    parts = [code.co_code, repr(code.co_names).encode(), repr(code.co_varnames).encode()]
    for const in code.co_consts:
        parts.append(_code_fingerprint(const) if isinstance(const, types.CodeType)
                     else repr(const).encode())
    return b"\0".join(parts)


def tests_digest(tests: Mapping[str, Callable[..., Any]]) -> str:
    """A digest of the test functions' source text (else their code): what seeds the order."""
    h = hashlib.sha256()
    for name in sorted(tests):
        fn = tests[name]
        try:
            text = inspect.getsource(fn).encode()
        except (OSError, TypeError):
            code = getattr(fn, "__code__", None)
            text = _code_fingerprint(code) if isinstance(code, types.CodeType) else b""
        h.update(name.encode() + b"\0" + hashlib.sha256(text).digest())
    return h.hexdigest()


def draw_order(codes: Sequence[bytes], digest: str, secret: bytes = b"") -> list[int]:
    """The order in which to run implementations ``codes``: a permutation drawn from the
    tests' ``digest`` (one per submission, so a regrade repeats it), the implementations'
    own code (hidden ones are secret) and ``secret``. A student who knows the algorithm
    cannot compute it without the hidden material, and a new submission draws anew."""
    key = hashlib.sha256(secret + b"\0" + digest.encode())
    for code in sorted(hashlib.sha256(c).digest() for c in codes):
        key.update(code)
    seed = key.digest()
    return sorted(range(len(codes)),
                  key=lambda i: (hashlib.sha256(seed + hashlib.sha256(codes[i]).digest()).digest(), i))


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


_COMPILED: dict[str, bytes] = {}


def _compiled(kind: str, path: Path) -> bytes:
    """:func:`compile_implementation` of ``path``, cached by the file's content."""
    try:
        text = path.read_bytes()
    except OSError as e:
        raise FileNotFoundError(f"bug hunt: cannot read {kind} {path}: {e}") from e
    key = hashlib.sha256(text + b"\0" + str(path.resolve()).encode()).hexdigest()
    if key not in _COMPILED:
        try:
            _COMPILED[key] = compile_implementation(path)
        except ImplementationError as e:
            raise ImplementationError(f"{kind} {path}: {e}") from None
    return _COMPILED[key]


def _cache_key(named: Mapping[str, Callable[..., Any]], code: bytes, timeout_s: float,
               runner: Any) -> tuple:
    # The entry keeps the functions alive, so their ids cannot be reused while it exists.
    return (tuple((n, id(f)) for n, f in named.items()),
            hashlib.sha256(code).hexdigest(), float(timeout_s), runner is not None)


def hunt(tests: Mapping[str, Callable[..., Any]] | Sequence[Callable[..., Any]],
         wheats: Sequence[Path | str], chaffs: Sequence[Path | str], *,
         timeout_s: float = 20.0,
         runner: Callable[[list[str], bytes], Mapping[str, Any]] | None = None,
         reveal: bool = False, preload: Sequence[str] = PRELOAD,
         cache: bool = False, secret: bytes = b"") -> HuntReport:
    """Run ``tests`` against every wheat and chaff file; return a :class:`HuntReport`.

    ``tests`` is a dict ``{name: function}`` or a list of functions (named by
    ``__name__``). Each implementation file is compiled here, in the caller's process,
    by :func:`compile_implementation`: what reaches the tests is anonymous bytecode,
    never the file, its source, its name or its docstring. The tests run against each
    one through :func:`run_compiled` in a forked child with fresh folders, so nothing a
    test does (files, processes, module state, ``os._exit``, a crash) reaches the next
    implementation; without ``os.fork`` they run in this process.
    ``runner(test_names, code)``, if given, runs them instead; tests that are the
    sandbox's remote proxies (attribute ``_reprokit_remote``) are dispatched to it.

    Implementations run in an order drawn by :func:`draw_order` from the tests' source
    (so each submission gets its own, and a regrade the same), the implementations' code
    and ``secret``; wheats and chaffs are interleaved, and the report lists them in
    their usual order whatever the run order was.

    With ``reveal`` each implementation is named by the first line of its docstring;
    otherwise as ``wheat 1``, ``hidden chaff 2`` ... (for material students must not see).
    ``preload`` names modules to import here first (see :data:`PRELOAD`). With ``cache``
    the outcomes of these very test functions on an implementation with the same code
    are reused from an earlier call in this process (several graded tests share one hunt).
    """
    named = _name_tests(tests)
    names = list(named)
    remote = getattr(named[names[0]], "_reprokit_remote", None) if names else None
    if runner is None and remote is not None:
        def runner(test_names: list[str], code: bytes) -> Mapping[str, Any]:
            return remote.run_tests_against({n: named[n] for n in test_names}, code, timeout_s)

    items: list[tuple[str, Path, str]] = []
    for kind, paths in (("wheat", wheats), ("chaff", chaffs)):
        for i, path in enumerate(paths, 1):
            path = Path(path)
            label = (display_name(path) if reveal
                     else f"wheat {i}" if kind == "wheat" else f"hidden chaff {i}")
            items.append((kind, path, label))
    report = HuntReport(tests=names)
    if not names:
        report.results = [ImplementationResult(kind, label, {}) for kind, _, label in items]
        return report
    codes = [_compiled(kind, path) for kind, path, _ in items]
    if remote is not None and hasattr(remote, "tests_digest"):
        digest = str(remote.tests_digest({n: named[n] for n in names}))
    else:
        digest = tests_digest(named)
    outcomes_by_item: dict[int, dict[str, Outcome]] = {}
    for index in draw_order(codes, digest, secret):
        kind, path, _ = items[index]
        code = codes[index]
        key = _cache_key(named, code, timeout_s, runner)
        hit = _CACHE.get(key) if cache else None
        outcomes: dict[str, Outcome]
        if hit is not None and all(a is b for a, b in zip(hit[0], named.values(), strict=True)):
            outcomes = copy.deepcopy(hit[1])
        elif runner is not None:
            try:
                ran = dict(runner(names, code))
                if "__load_error__" in ran:
                    raise ImplementationError(
                        f"the implementation could not be loaded: {ran['__load_error__']}")
                outcomes = _valid(ran, names)
            except ImplementationError as e:
                raise ImplementationError(f"{kind} {path}: {e}") from None
            except Exception as e:  # noqa: BLE001 - the tests' process failed
                outcomes = _all(names, "error", f"{type(e).__name__}: {e}")
        elif hasattr(os, "fork"):
            if preload:
                _preload(preload)
                preload = ()
            try:
                outcomes = _run_in_fork(named, code, timeout_s)
            except ImplementationError as e:
                raise ImplementationError(f"{kind} {path}: {e}") from None
        else:  # pragma: no cover - Windows
            outcomes = _run_in_process(named, code, timeout_s)
        if cache and hit is None:
            _CACHE[key] = (list(named.values()), copy.deepcopy(outcomes))
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
        outcomes_by_item[index] = outcomes
    report.results = [ImplementationResult(kind, label, outcomes_by_item[i])
                      for i, (kind, _, label) in enumerate(items)]
    return report
