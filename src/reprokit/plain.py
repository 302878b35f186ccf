"""Turn values a submission produced into plain, trusted Python and NumPy values.

A grader must never compare an object the student made: a class with an ``__eq__``
that always says True, a ``float`` subclass, a tensor subclass that overrides
comparison or a ``__bool__`` that always says True would all pass an ``assert``.
Every hidden test therefore passes student values through :func:`plain` (or one of
the ``as_*`` helpers) first. Each accepts only *exact* types (``type(x) is float``,
never ``isinstance``) and rebuilds the value from primitive data, so what comes out
is made by the grader, not by the student.

These helpers behave the same whether the value is the student's real object (under
``otter run`` or in a notebook) or data that reprokit's sandbox already decoded.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = [
    "UntrustedValue",
    "plain",
    "as_float",
    "as_int",
    "as_bool",
    "as_str",
    "as_array",
    "as_state_dict",
    "as_choice",
    "short_repr",
]

_SCALARS = (bool, int, float, str, type(None))
_NUMPY_SCALARS = (
    np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
    np.uint64, np.float16, np.float32, np.float64,
)
_ARRAY_KINDS = "biuf"  # bool, int, unsigned, float: no objects, strings or voids


class UntrustedValue(TypeError):
    """A value could not be turned into plain data (wrong or user-defined type)."""


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    return torch


def _array_from_tensor(x: Any, what: str) -> np.ndarray:
    torch = _torch()
    if type(x) not in (torch.Tensor, torch.nn.Parameter):
        raise UntrustedValue(
            f"{what}: expected a torch.Tensor, got {type(x).__module__}.{type(x).__qualname__}"
            " (tensor subclasses are not accepted by the grader)"
        )
    # Tensor._base methods dispatch through __torch_function__ only for subclasses,
    # which were refused above, so these calls run torch's own code.
    t = torch.Tensor.detach(x).cpu()
    if t.is_complex() or t.dtype in (torch.bfloat16,):
        t = t.to(torch.float32)
    return _copy_array(t.numpy(), what)


def _copy_array(a: Any, what: str) -> np.ndarray:
    if type(a) is not np.ndarray:
        raise UntrustedValue(
            f"{what}: expected a numpy.ndarray, got {type(a).__module__}.{type(a).__qualname__}"
            " (ndarray subclasses are not accepted by the grader)"
        )
    if a.dtype.kind not in _ARRAY_KINDS:
        raise UntrustedValue(f"{what}: array dtype {a.dtype} is not numeric")
    # Rebuild from raw bytes: the result shares nothing with the student's object.
    return np.frombuffer(a.tobytes(order="C"), dtype=a.dtype.newbyteorder("=")
                         if a.dtype.byteorder not in "=|" else a.dtype).reshape(a.shape).copy()


def plain(x: Any, what: str = "value", _depth: int = 0) -> Any:
    """Return ``x`` rebuilt from exact built-in types.

    Accepted: ``None``, ``bool``, ``int``, ``float``, ``str``, NumPy scalars (as
    Python scalars), ``numpy.ndarray`` and ``torch.Tensor`` (as a new ndarray),
    and ``list``/``tuple``/``dict`` of those (tuples come back as lists, dict keys
    must be ``str`` or ``int``). Anything else raises :class:`UntrustedValue`
    naming the offending type and where it sat (``what``).
    """
    if _depth > 50:
        raise UntrustedValue(f"{what}: nested too deeply")
    t = type(x)
    if t in _SCALARS:
        # bool(x)/int(x)/float(x) on an exact type cannot run student code
        return x if t is type(None) else t(x)
    if t in _NUMPY_SCALARS:
        return x.item()
    if t is np.ndarray:
        return _copy_array(x, what)
    torch = _torch()
    if torch is not None and isinstance(x, torch.Tensor):
        return _array_from_tensor(x, what)
    if t in (list, tuple):
        return [plain(v, f"{what}[{i}]", _depth + 1) for i, v in enumerate(list.__iter__(x) if t is list else tuple.__iter__(x))]
    if t is dict:
        out = {}
        for k, v in dict.items(x):
            if type(k) not in (str, int):
                raise UntrustedValue(f"{what}: dict key {k!r} is not a str or int")
            out[str.__str__(k) if type(k) is str else int(k)] = plain(v, f"{what}[{k!r}]", _depth + 1)
        return out
    if x is Ellipsis:
        raise UntrustedValue(f"{what}: got `...` (is the answer still `...`? replace it with "
                             "your own value)")
    if t.__module__ == "reprokit.wire" and t.__qualname__ == "Opaque":
        raise UntrustedValue(f"{what}: {object.__getattribute__(x, '_type')} values cannot be "
                             "graded (is the answer still `...`?); use numbers, strings, lists, "
                             "dicts, arrays or tensors")
    raise UntrustedValue(
        f"{what}: the grader accepts numbers, strings, lists, dicts, arrays and tensors; "
        f"got {t.__module__}.{t.__qualname__}"
    )


def as_float(x: Any, what: str = "value") -> float:
    """A finite or non-finite Python ``float`` from a number, 0-d array or 1-element tensor."""
    v = plain(x, what)
    if type(v) is np.ndarray:
        if v.size != 1:
            raise UntrustedValue(f"{what}: expected one number, got an array of shape {v.shape}")
        v = v.reshape(()).item()
    if type(v) is bool or type(v) not in (int, float):
        raise UntrustedValue(f"{what}: expected a number, got {type(v).__name__}")
    return float(v)


def as_int(x: Any, what: str = "value") -> int:
    """A Python ``int``; a float is accepted only when it is integral."""
    v = as_float(x, what) if type(plain(x, what)) is not int else plain(x, what)
    if type(v) is float:
        if not math.isfinite(v) or v != int(v):
            raise UntrustedValue(f"{what}: expected a whole number, got {v!r}")
        v = int(v)
    return v


def as_bool(x: Any, what: str = "value") -> bool:
    """A Python ``bool`` from an exact bool or NumPy bool (no truthiness of objects)."""
    v = plain(x, what)
    if type(v) is not bool:
        raise UntrustedValue(f"{what}: expected True or False, got {type(v).__name__}")
    return v


def as_str(x: Any, what: str = "value") -> str:
    """A Python ``str`` (an exact ``str``; subclasses are rebuilt)."""
    v = plain(x, what)
    if type(v) is not str:
        raise UntrustedValue(f"{what}: expected text, got {type(v).__name__}")
    return v


def as_array(x: Any, what: str = "value", *, dtype: Any = None, ndim: int | None = None) -> np.ndarray:
    """A new ``numpy.ndarray`` from an array, tensor or (nested) list of numbers."""
    v = plain(x, what)
    if type(v) is not np.ndarray:
        try:
            v = np.asarray(v)
        except (ValueError, TypeError) as e:
            raise UntrustedValue(f"{what}: cannot be read as an array ({e})") from None
        if v.dtype.kind not in _ARRAY_KINDS:
            raise UntrustedValue(f"{what}: expected numbers, got an array of {v.dtype}")
    if dtype is not None:
        v = v.astype(dtype)
    if ndim is not None and v.ndim != ndim:
        raise UntrustedValue(f"{what}: expected {ndim} dimension(s), got shape {v.shape}")
    return v


def as_state_dict(x: Any, what: str = "state_dict") -> dict[str, np.ndarray]:
    """A ``{name: ndarray}`` dict from a model's ``state_dict()`` (an ``OrderedDict`` is fine)."""
    if isinstance(x, Mapping) and type(x) is not dict:
        from collections import OrderedDict

        if type(x) is not OrderedDict:
            raise UntrustedValue(f"{what}: expected a dict of tensors, got {type(x).__qualname__}")
        x = dict(OrderedDict.items(x))
    v = plain(x, what)
    if type(v) is not dict or not all(type(k) is str and type(a) is np.ndarray for k, a in v.items()):
        raise UntrustedValue(f"{what}: expected a dict of parameter names to tensors")
    return v


def short_repr(x: Any, limit: int = 200) -> str:
    """``repr(x)`` cut to about ``limit`` characters without losing a string's closing quote.

    ``f"{x!r:.20}"`` cuts a repr in the middle and drops the closing quote (``got 'B``);
    this cuts the value first (a string's text, a list's items) and marks the cut with ``...``.
    """
    if type(x) is str and len(x) > limit:
        return repr(x[:limit]) + "..."
    text = repr(x)
    return text if len(text) <= limit else text[:limit] + "..."


_CHOICE = re.compile(r"""^[\s'"`(\[{]*(?:option\s+|answer\s*:?\s*)?([A-Za-z])[\s'"`)\]}.:]*$""",
                     re.IGNORECASE)


def as_choice(x: Any, what: str = "answer", options: str | tuple[str, ...] = "abcd") -> str:
    """A multiple-choice answer as one lower-case letter from ``options``.

    Case, surrounding blanks, quotes and brackets do not matter: ``"b"``, ``"B"``,
    ``" b "``, ``"(b)"``, ``"b)"``, ``"'b'"``, ``"[B]"``, ``"b."`` all read as ``"b"``.
    Anything else (a number, a list, ``...``, two letters, a letter not offered) raises
    :class:`UntrustedValue` whose message names the options and what was given.
    """
    letters = tuple(o.lower() for o in options)
    listed = ", ".join(f'"{o}"' for o in letters[:-1]) + f' or "{letters[-1]}"' if len(letters) > 1 \
        else f'"{letters[0]}"'
    if x is Ellipsis:
        raise UntrustedValue(f"{what}: got `...` (is the answer still `...`? set it to {listed})")
    v = plain(x, what)
    if type(v) is not str:
        raise UntrustedValue(f"{what} should be one letter, {listed}; got {type(v).__name__} "
                             f"{short_repr(v, 60)}")
    m = _CHOICE.match(v)
    letter = m.group(1).lower() if m else None
    if letter not in letters:
        raise UntrustedValue(f"{what} should be one letter, {listed}; got {short_repr(v, 60)}")
    return letter
