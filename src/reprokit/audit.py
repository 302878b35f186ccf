"""Audit which data splits a student's code read.

A hyperparameter search (level 3) must choose on a validation split and never look
at the test split: a configuration picked by test accuracy reports an optimistic
test number (the test set has become part of the training procedure). The grader
cannot see *how* a student's ``search`` picked its answer, but it can hand it a
:class:`RecordingSplits` and ask afterwards which splits were read::

    splits = RecordingSplits(train=(X_tr, y_tr), val=(X_va, y_va), test=(X_te, y_te))
    search(splits, grid)
    splits.assert_not_accessed("test")

Every way of reaching the data goes through one recorded accessor: attribute reads
(``splits.test``, ``getattr(splits, "test")``), item reads (``splits["test"]``),
iteration and unpacking (``train, val, test = splits``), ``vars(splits)`` and
``splits.__dict__``. Each returns fresh clones, so a student who changes a returned
tensor in place changes nothing the grader (or the next read) sees.

The instance holds no ``__dict__`` and no readable attribute that leads to the data
or to the access log, so ordinary Python (``vars``, ``dir``, ``copy``, attribute
assignment) can neither read the data unrecorded nor erase the record. Code that
calls ``object.__getattribute__`` on private slots can still get around this in the
same process; that is why the class carries ``__reprokit_callback__ = True``: in
reprokit's sandbox the object stays with the trusted grader and the student's code
only receives a proxy that calls back for each attribute read.
"""

from __future__ import annotations

import functools
import random as _random
import sys as _sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["RecordingSplits", "SPLIT_NAMES"]

#: the splits a :class:`RecordingSplits` holds, in order
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")

# Names readable on an instance without touching the data. Everything else that is
# not a split (or a dunder Python itself needs) raises AttributeError.
_PUBLIC = frozenset({"accessed", "accesses", "assert_not_accessed"})


def _as_pair(pair: Any, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate one ``(X, y)`` pair and return grader-owned clones of it."""
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise TypeError(
            f"RecordingSplits({name}=...): expected a pair (X, y) of tensors, "
            f"got {type(pair).__name__}"
        )
    X, y = (torch.as_tensor(t).detach().clone() for t in pair)
    if X.shape[:1] != y.shape[:1]:
        raise ValueError(
            f"RecordingSplits({name}=...): X has {X.shape[0]} rows but y has "
            f"{y.shape[0] if y.dim() else 'no'} labels; they must match"
        )
    return X, y


class RecordingSplits:
    """Train, validation and test data that remember which of them were read.

    ``splits.train``, ``splits.val`` and ``splits.test`` each return a new
    ``(X, y)`` tuple of cloned tensors and record the read. ``accessed`` is the set
    of split names read so far; ``accesses`` is every read in order, as
    ``(split, how)`` pairs such as ``("test", "splits['test']")``.
    """

    __slots__ = ("_RecordingSplits__fetch",)
    #: tells reprokit's sandbox to keep this object in the trusted grader and give
    #: the student's code a call-back proxy instead (see module docstring)
    __reprokit_callback__ = True

    def __init__(
        self,
        train: tuple[torch.Tensor, torch.Tensor],
        val: tuple[torch.Tensor, torch.Tensor],
        test: tuple[torch.Tensor, torch.Tensor],
    ) -> None:
        pairs = zip(SPLIT_NAMES, (train, val, test), strict=True)
        stored = {name: _as_pair(pair, name) for name, pair in pairs}
        log: list[tuple[str, str]] = []

        # The data and the log live only in this closure: no attribute leads to them.
        def fetch(name: str, how: str) -> Any:
            if name == "__log__":
                return tuple(log)
            X, y = stored[name]
            log.append((name, how))
            return X.clone(), y.clone()

        object.__setattr__(self, "_RecordingSplits__fetch", fetch)

    # -- the recorded accessors ------------------------------------------------

    def __getattribute__(self, name: str) -> Any:
        fetch = object.__getattribute__(self, "_RecordingSplits__fetch")
        if name in SPLIT_NAMES:
            return fetch(name, f".{name}")
        if name == "__dict__":
            # vars(splits) / splits.__dict__: hand over every split, record every one
            return {n: fetch(n, "vars() / __dict__") for n in SPLIT_NAMES}
        if name == "_RecordingSplits__fetch":
            raise AttributeError(
                "RecordingSplits keeps its data private; read splits.train or splits.val"
            )
        return object.__getattribute__(self, name)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"RecordingSplits has no attribute {name!r}: it holds the splits "
            f"{', '.join(SPLIT_NAMES)} (e.g. X_train, y_train = splits.train)"
        )

    def __getitem__(self, key: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if type(key) is str and key in SPLIT_NAMES:
            fetch = object.__getattribute__(self, "_RecordingSplits__fetch")
            return fetch(key, f"splits[{key!r}]")
        raise KeyError(
            f"RecordingSplits has splits {', '.join(map(repr, SPLIT_NAMES))}; got {key!r}"
        )

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        fetch = object.__getattribute__(self, "_RecordingSplits__fetch")
        for name in SPLIT_NAMES:
            yield fetch(name, "iteration / unpacking")

    def __len__(self) -> int:
        return len(SPLIT_NAMES)

    def __contains__(self, key: object) -> bool:
        return key in SPLIT_NAMES

    def __dir__(self) -> list[str]:
        return sorted({*SPLIT_NAMES, *_PUBLIC})

    def __repr__(self) -> str:
        return f"RecordingSplits({', '.join(SPLIT_NAMES)}; read so far: {sorted(self.accessed)})"

    # -- the record cannot be replaced or copied away ----------------------------

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"RecordingSplits is read-only (cannot set {name!r})")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"RecordingSplits is read-only (cannot delete {name!r})")

    def __copy__(self) -> RecordingSplits:
        # A copy shares the record: reads through it are still reads of this data.
        return self

    def __deepcopy__(self, memo: dict) -> RecordingSplits:
        return self

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError(
            "RecordingSplits cannot be pickled; read the (X, y) tensors you need from "
            "splits.train / splits.val and pass those on"
        )

    # -- what the grader asks afterwards ----------------------------------------

    @property
    def accesses(self) -> tuple[tuple[str, str], ...]:
        """Every read so far, in order, as ``(split, how)`` pairs."""
        return object.__getattribute__(self, "_RecordingSplits__fetch")("__log__", "")

    @property
    def accessed(self) -> frozenset[str]:
        """The names of the splits read so far."""
        return frozenset(split for split, _ in self.accesses)

    def assert_not_accessed(self, split: str) -> None:
        """Raise ``AssertionError`` if ``split`` was read, saying how it was read."""
        if split not in SPLIT_NAMES:
            raise ValueError(f"unknown split {split!r}; expected one of {SPLIT_NAMES}")
        hows = list(dict.fromkeys(how for name, how in self.accesses if name == split))
        if not hows:
            return
        advice = (
            "select hyperparameters on the validation split only (splits.val); "
            "evaluate the chosen configuration on test once, outside the search"
            if split == "test"
            else f"this step should not use the {split} split"
        )
        raise AssertionError(
            f"your search read the {split} split (via {', '.join(hows)}) — {advice}"
        )


# ----------------------------------------------------------------------------- side effects
#
# What a student's function did besides returning a value: did it move a global random
# generator, call a function it was asked not to use (the authors' training loop in a
# re-implementation, a data loader inside a search), or open a data file? The answer must
# be the same under ``otter run`` (the function runs in this process) and under
# ``reprokit grade`` (it runs in a sandbox session, another process): so the observation is
# always made in the process where the function runs. In the sandbox the grader sends an
# ``observe`` request and the session runs :func:`observe_here` around the call.
#
# This is a fairness check, not a security boundary: the observer runs next to the
# student's code, which could switch it off on purpose (``sys.setprofile(None)``, patching
# this module in its own process). Graded tests pair it with checks of the results.

__all__ += ["Observation", "observe_call", "observe_here", "RNG_NAMES", "TORCH_NORM_OPS"]

#: the global generators whose state :func:`observe_call` compares before and after
RNG_NAMES: tuple[str, ...] = ("torch", "numpy", "random")

#: ``watch_ops`` that catch torch's own normalisation layers, whichever way they are reached:
#: ``nn.BatchNorm1d``/``2d``/``3d`` (or a subclass), ``F.batch_norm``, ``torch.batch_norm``,
#: ``torch.native_batch_norm``, ``torch.ops.aten.*``, ``F.instance_norm`` (which runs batch
#: norm), ``F.layer_norm`` and ``F.group_norm`` (which normalise a transposed batch just as well)
TORCH_NORM_OPS: tuple[str, ...] = ("batch_norm", "layer_norm", "group_norm", "instance_norm")


@dataclass(frozen=True)
class Observation:
    """What one call of a student's function did.

    ``value`` is what it returned; ``rng_changed`` the global generators (of
    :data:`RNG_NAMES`) whose state differs after the call; ``calls`` every watched
    function it called, as ``"file:qualname"`` (first call of each, in order);
    ``opened`` every watched file it opened; ``c_calls`` how often each watched built-in
    (C) function or method was called, by name (``{"softmax": 2, "randperm": 3}``);
    ``captured`` one dict per call of a function in ``capture_args``, in order:
    ``{"function": "file:qualname", "args": {name: value}, "training": bool or None,
    "grad": bool}`` (the arguments as passed, ``self`` left out; ``training`` is
    ``self.training`` for a module's method; ``grad`` whether autograd was on);
    ``ops`` how often each watched ATen operator ran, by name (``{"native_batch_norm": 1}``).
    """

    value: Any
    rng_changed: tuple[str, ...] = ()
    calls: tuple[str, ...] = field(default_factory=tuple)
    opened: tuple[str, ...] = field(default_factory=tuple)
    c_calls: dict[str, int] = field(default_factory=dict)
    captured: tuple[dict, ...] = field(default_factory=tuple)
    ops: dict[str, int] = field(default_factory=dict)

    @property
    def reached(self) -> list[str]:
        """Every watched thing the call reached, for a message: the functions (``calls``),
        the built-ins that ran (``c_calls``) and ATen operators as ``"torch's <op>"``."""
        return [*self.calls, *(name for name, n in self.c_calls.items() if n),
                *(f"torch's {op}" for op in self.ops)]


def _rng_states() -> dict[str, Any]:
    import numpy as np

    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state().clone(),
            "numpy": (np_state[0], np_state[1].copy(), *np_state[2:]),
            "random": _random.getstate()}


def _same_state(name: str, a: Any, b: Any) -> bool:
    if name == "torch":
        return bool(torch.equal(a, b))
    if name == "numpy":
        import numpy as np

        return a[0] == b[0] and bool(np.array_equal(a[1], b[1])) and tuple(a[2:]) == tuple(b[2:])
    return a == b


_SENTINEL_SEED = 0x5EED0B5  # an unusual seed: a student's own seed is unlikely to match it


def _set_rng_states(seed: int) -> None:
    import numpy as np

    torch.manual_seed(seed)
    np.random.seed(seed)
    _random.seed(seed)


def _restore_rng_states(states: dict[str, Any]) -> None:
    import numpy as np

    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    _random.setstate(states["random"])


_OPEN_WATCH: list[list] = []  # stack of [substrings, seen] for the audit hook


def _audit_open(event: str, args: tuple) -> None:
    if event != "open" or not _OPEN_WATCH:
        return
    path = args[0] if args else None
    if isinstance(path, bytes):
        path = path.decode(errors="replace")
    if not isinstance(path, str):
        return
    for watch, seen in _OPEN_WATCH:
        if any(w in path for w in watch) and path not in seen:
            seen.append(path)


_HOOKED = False


#: The built-ins that start a thread. A dispatch mode (``watch_ops``) and the profiler
#: (``watch_calls``) see only the calling thread, so a thread started by the observed call is
#: itself recorded, as an operator that could not be watched.
_THREAD_STARTS = frozenset({"start_new_thread", "start_joinable_thread"})
#: How a started thread shows in :attr:`Observation.ops`.
UNWATCHED_THREAD = "operators in a thread it started (not watched)"
#: ... and in :attr:`Observation.calls` when calls are watched.
UNWATCHED_CALLS = "a thread it started (calls there are not watched)"
#: Code objects shorter than this (bytes of bytecode) are too small to call a copy: an honest
#: constructor (``super().__init__()`` and the same attributes in the same order) can match
#: the authors' instruction for instruction; a forward pass or a training loop does not.
_MIN_COPY_BYTES = 600


def _source_for(suffix: str) -> str | None:
    """The text of the watched file ending in ``suffix``: a loaded module's file, else the
    first match below the working folder or a ``sys.path`` entry."""
    from pathlib import Path

    candidates = [getattr(m, "__file__", None) for m in list(_sys.modules.values())]
    paths = [Path(f) for f in candidates if isinstance(f, str) and f.replace("\\", "/").endswith(suffix)]
    paths += [Path(base or ".") / suffix for base in ["", *_sys.path] if isinstance(base, str)]
    for path in paths:
        try:
            return path.read_text()
        except (OSError, UnicodeDecodeError):
            continue
    return None


def _shape(code: Any) -> tuple:
    """A code object's instructions without what the compiler varies for the same source
    (jump offsets, ``LOAD_METHOD`` against ``LOAD_ATTR``, the ``NULL +`` of a global call)
    and without local variable names: the same function, wherever it was compiled."""
    import dis

    jumps = set(dis.hasjrel) | set(dis.hasjabs)
    out = []
    for ins in dis.get_instructions(code):
        op = "LOAD_ATTR" if ins.opname == "LOAD_METHOD" else ins.opname
        if op in ("CACHE", "NOP", "RESUME", "EXTENDED_ARG"):
            continue
        if ins.opcode in jumps or op.startswith(("LOAD_FAST", "STORE_FAST", "DELETE_FAST")):
            out.append((op,))
        else:
            out.append((op, str(ins.argrepr).replace("NULL + ", "").replace(" + NULL", "")))
    return tuple(out)


def _fingerprints(watch_calls: dict[str, set[str]]) -> dict[tuple, str]:
    """The instructions (:func:`_shape`) of every watched function, from its file's source,
    mapped to ``suffix:qualname``. The same source compiled anywhere else (``exec`` of
    ``inspect.getsource`` under another file name, a pasted copy with renamed locals) has
    the same instructions, so a copy is recorded as a call. Comprehensions, lambdas and
    code shorter than :data:`_MIN_COPY_BYTES` are left out: too generic to call a copy."""
    prints: dict[tuple, str] = {}
    for suffix, names in watch_calls.items():
        text = _source_for(suffix)
        if text is not None:
            prints.update(_file_fingerprints(suffix, frozenset(names), text))
    return prints


@functools.lru_cache(maxsize=32)
def _file_fingerprints(suffix: str, names: frozenset[str], text: str) -> dict[tuple, str]:
    """:func:`_fingerprints` for one file's text (a remote layer is observed at every
    request: the file is compiled once)."""
    prints: dict[tuple, str] = {}
    try:
        top = compile(text, suffix, "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return prints
    stack = [top]
    while stack:
        code = stack.pop()
        stack.extend(c for c in code.co_consts if hasattr(c, "co_code"))
        qual = getattr(code, "co_qualname", code.co_name)
        if code is top or code.co_name.startswith("<") or len(code.co_code) < _MIN_COPY_BYTES:
            continue
        if "*" in names or qual in names:
            prints[_shape(code)] = f"{suffix}:{qual}"
    return prints


def _op_recorder(watch: tuple[str, ...], seen: dict[str, int]) -> Any:
    """A torch dispatch mode that counts the ATen operators whose name contains a watched
    string. It sits below every Python entry point (modules, ``torch.nn.functional``,
    ``torch.*``, ``torch.ops.aten``), so it sees an operator however the code reached it,
    backward passes included."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class _Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: Any = None) -> Any:
            name = getattr(getattr(func, "overloadpacket", func), "__name__", str(func))
            if any(w in name for w in watch):
                seen[name] = seen.get(name, 0) + 1
            return func(*args, **(kwargs or {}))

    return _Recorder()


def observe_here(fn: Any, args: tuple = (), kwargs: dict | None = None, *,
                 watch_calls: dict[str, list[str]] | None = None,
                 watch_opens: tuple[str, ...] | list[str] = (),
                 watch_c_calls: tuple[str, ...] | list[str] = (),
                 capture_args: dict[str, list[str]] | None = None,
                 watch_ops: tuple[str, ...] | list[str] = ()) -> Observation:
    """Call ``fn(*args, **kwargs)`` in this process and observe it (see :func:`observe_call`).

    Exceptions from ``fn`` propagate unchanged, after the observers are removed.
    """
    global _HOOKED
    watch_calls = {k.replace("\\", "/"): set(v) for k, v in (watch_calls or {}).items()}
    calls: list[str] = []
    c_names = frozenset(watch_c_calls)
    c_calls: dict[str, int] = {}
    capture = {k.replace("\\", "/"): set(v) for k, v in (capture_args or {}).items()}
    captured: list[dict] = []

    def grab(frame: Any, suffix: str, qual: str) -> None:
        code = frame.f_code
        local = frame.f_locals
        names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
        owner = local.get("self")
        training = getattr(owner, "training", None) if owner is not None else None
        captured.append({
            "function": f"{suffix}:{qual}",
            "args": {n: _detached(local[n]) for n in names if n != "self" and n in local},
            "training": training if type(training) is bool else None,
            "grad": bool(torch.is_grad_enabled()),
        })

    ops: dict[str, int] = {}
    prints = _fingerprints(watch_calls) if watch_calls else {}
    copies: dict[int, tuple[Any, str | None]] = {}  # id(code) -> (code, what it copies)

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "c_call":
            name = getattr(arg, "__name__", None)
            if name in c_names:
                c_calls[name] = c_calls.get(name, 0) + 1
            if name in _THREAD_STARTS:
                if watch_ops:
                    ops[UNWATCHED_THREAD] = ops.get(UNWATCHED_THREAD, 0) + 1
                if watch_calls and UNWATCHED_CALLS not in calls:
                    calls.append(UNWATCHED_CALLS)
            return
        if event != "call":
            return
        code = frame.f_code
        filename = code.co_filename.replace("\\", "/")
        for suffix, names in capture.items():
            if filename.endswith(suffix):
                qual = getattr(code, "co_qualname", code.co_name)
                if qual in names:
                    grab(frame, suffix, qual)
        matched = False
        for suffix, names in watch_calls.items():
            if filename.endswith(suffix):
                matched = True
                qual = getattr(code, "co_qualname", code.co_name)
                if ("*" in names or qual in names) and f"{suffix}:{qual}" not in calls:
                    calls.append(f"{suffix}:{qual}")
        if prints and not matched:
            known = copies.get(id(code))
            if known is None or known[0] is not code:
                shape = None if code.co_name.startswith("<") else _shape(code)
                known = (code, prints.get(shape) if shape else None)
                copies[id(code)] = known
            if known[1] is not None and f"{known[1]} (a copy)" not in calls:
                calls.append(f"{known[1]} (a copy)")

    opened: list[str] = []
    if watch_opens and not _HOOKED:
        _sys.addaudithook(_audit_open)  # once per process; inert while nothing is watched
        _HOOKED = True
    entry = [tuple(watch_opens), opened]
    # Start every generator from one fixed state (and give the caller's back afterwards): a
    # call that re-seeds to the state it found would otherwise look untouched, and both
    # grading paths see the same starting state whatever ran before.
    callers = _rng_states()
    _set_rng_states(_SENTINEL_SEED)
    before = _rng_states()
    previous = _sys.getprofile()
    if watch_opens:
        _OPEN_WATCH.append(entry)
    profiled = bool(watch_calls or c_names or capture or watch_ops)
    recorder = _op_recorder(tuple(watch_ops), ops) if watch_ops else None
    if recorder is not None:
        recorder.__enter__()
    if profiled:
        _sys.setprofile(profile)
    try:
        value = fn(*args, **(kwargs or {}))
    finally:
        if profiled:
            _sys.setprofile(previous)
        if recorder is not None:
            recorder.__exit__(None, None, None)
        if watch_opens and entry in _OPEN_WATCH:
            _OPEN_WATCH.remove(entry)
        after = _rng_states()
        _restore_rng_states(callers)
    changed = tuple(n for n in RNG_NAMES if not _same_state(n, before[n], after[n]))
    return Observation(value, changed, tuple(calls), tuple(opened), dict(c_calls), tuple(captured),
                       dict(ops))


def _detached(x: Any) -> Any:
    """A captured argument as data: tensors detached and copied, the rest as it is."""
    if isinstance(x, torch.Tensor):
        return torch.Tensor.detach(x).clone()
    return x


def observe_call(fn: Any, args: tuple = (), kwargs: dict | None = None, *,
                 watch_calls: dict[str, list[str]] | None = None,
                 watch_opens: tuple[str, ...] | list[str] = (),
                 watch_c_calls: tuple[str, ...] | list[str] = (),
                 capture_args: dict[str, list[str]] | None = None,
                 watch_ops: tuple[str, ...] | list[str] = ()) -> Observation:
    """Call a student's function once and report its side effects as an :class:`Observation`.

    * every global generator (torch's CPU generator, NumPy's legacy global one, Python's
      ``random``) is set to one fixed state before the call and compared with it after;
      the caller's states are restored afterwards, so the grader never sees the call's
      draws;
    * ``watch_calls`` maps a file-path suffix to function names (``"*"`` for all), e.g.
      ``{"authors/randlabels.py": ["train", "corrupt_labels"]}``: every call of a function
      defined there, however the student reached it (``randlabels.train``, a
      ``from ... import``, an alias), is recorded;
    * ``watch_opens`` lists path substrings (e.g. ``"digits.csv"``): every file opened
      whose path contains one is recorded (through a Python audit hook);
    * ``watch_c_calls`` lists names of built-in functions and methods (``"softmax"``,
      ``"randperm"``): how often each was called is counted, whichever module it came from;
    * ``capture_args`` maps a file-path suffix to function names whose arguments are
      recorded at every call (e.g. ``{"authors/randlabels.py": ["MLP.forward"]}``: every
      minibatch the student's loop feeds the authors' network);
    * ``watch_ops`` lists parts of ATen operator names (e.g. :data:`TORCH_NORM_OPS`): how
      often each operator whose name contains one ran is counted, through a torch dispatch
      mode, so a call of torch's batch norm is seen however it was reached (``nn.BatchNorm1d``,
      a subclass of it, ``F.batch_norm``, ``torch.ops.aten.native_batch_norm``, ...).

    Under ``otter run`` ``fn`` is the student's own function and runs here; under
    ``reprokit grade`` it is a proxy and the same observation is made inside the sandbox
    session that runs it, so both paths give the same answer. Exceptions from the
    student's function propagate (in the sandbox as ``StudentError``).
    """
    from reprokit import sandbox

    spec = {"watch_calls": {k: list(v) for k, v in (watch_calls or {}).items()},
            "watch_opens": list(watch_opens), "watch_c_calls": list(watch_c_calls),
            "capture_args": {k: list(v) for k, v in (capture_args or {}).items()},
            "watch_ops": list(watch_ops)}
    if isinstance(fn, sandbox.RemoteFunction):
        out = fn._session.observe(fn._path, tuple(args), dict(kwargs or {}), spec)
        return Observation(out["value"], tuple(out["rng_changed"]), tuple(out["calls"]),
                           tuple(out["opened"]), dict(out.get("c_calls") or {}),
                           tuple(out.get("captured") or ()), dict(out.get("ops") or {}))
    return observe_here(fn, tuple(args), kwargs, **spec)
