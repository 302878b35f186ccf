"""The sandbox's wire format: length-prefixed JSON, never pickle.

Both directions use :func:`encode` / :func:`decode`. Decoding builds only exact
built-in types, NumPy arrays from raw bytes (numeric dtypes from a whitelist) and
torch tensors from those arrays, so a message from an untrusted process can carry
data and nothing that runs code in the reader.
"""

from __future__ import annotations

import base64
import json
import socket
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

MAX_MESSAGE_BYTES = 256 * 1024 * 1024
_HEADER = struct.Struct("!Q")
_DTYPES = {
    name: np.dtype(name)
    for name in (
        "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
        "float16", "float32", "float64",
    )
}


class ProtocolError(RuntimeError):
    """A message broke the protocol (bad framing, bad JSON, too large, unknown tag)."""


class Opaque:
    """Stands for a value the wire cannot carry (a student's own class, a module ...).

    Any use raises a message that names the value and its type, so a test that
    needed it fails with a reason instead of trusting the object.
    """

    __slots__ = ("_label", "_type")

    def __init__(self, label: str, type_name: str):
        object.__setattr__(self, "_label", label)
        object.__setattr__(self, "_type", type_name)

    def _refuse(self, *_a: Any, **_k: Any) -> Any:
        raise TypeError(
            f"`{self._label}` is a {self._type} object; the grader only accepts numbers, "
            "strings, lists, dicts, arrays, tensors and functions"
        )

    __call__ = __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _refuse
    __bool__ = __len__ = __iter__ = __getitem__ = __float__ = __int__ = __index__ = _refuse
    __hash__ = None  # type: ignore[assignment]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        self._refuse()

    def __repr__(self) -> str:
        return f"<{self._type} object `{self._label}` (not available to the grader)>"


def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover
        return None
    return torch


def _array_payload(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a).reshape(a.shape)  # ascontiguousarray makes a 0-d array 1-d
    if a.dtype.name not in _DTYPES:
        a = a.astype(np.float64) if a.dtype.kind in "fc" else a.astype(np.int64)
    return {"dtype": a.dtype.name, "shape": list(a.shape),
            "data": base64.b64encode(a.tobytes()).decode("ascii")}


def _array_from_payload(p: Any) -> np.ndarray:
    if type(p) is not dict or set(p) != {"dtype", "shape", "data"}:
        raise ProtocolError("malformed array")
    dtype = _DTYPES.get(p["dtype"]) if type(p["dtype"]) is str else None
    shape = p["shape"]
    if dtype is None or type(shape) is not list or not all(type(s) is int and s >= 0 for s in shape):
        raise ProtocolError("malformed array header")
    raw = base64.b64decode(p["data"], validate=True) if type(p["data"]) is str else None
    if raw is None or len(raw) != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
        raise ProtocolError("array size does not match its shape")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def encode(x: Any, *, ref: Callable[[Any, str], Any] | None = None, path: str = "value",
           _depth: int = 0) -> Any:
    """Encode ``x`` as JSON-ready data.

    Exact types only. ``ref(obj, path)`` is asked for anything else (functions,
    callback objects); it returns a JSON-ready tag or ``None`` to fall back to an
    opaque marker.
    """
    if _depth > 60:
        return {"__opaque__": [path, "deeply nested value"]}
    t = type(x)
    if x is None or t in (bool, int, str):
        return x
    if t is float:
        return {"__float__": repr(x)} if x != x or x in (float("inf"), float("-inf")) else x
    if isinstance(x, np.generic) and t.__module__ == "numpy" and x.dtype.name in _DTYPES:
        return encode(x.item(), path=path)
    if t is np.ndarray:
        if x.dtype.name in _DTYPES or x.dtype.kind in "biuf":
            return {"__ndarray__": _array_payload(x)}
    torch = _torch()
    if torch is not None and t in (torch.Tensor, torch.nn.Parameter):
        t_ = torch.Tensor.detach(x).cpu()
        if t_.dtype == torch.bfloat16 or t_.is_complex():
            t_ = t_.to(torch.float32)
        return {"__tensor__": _array_payload(t_.numpy())}
    if t in (list, tuple):
        items = [encode(v, ref=ref, path=f"{path}[{i}]", _depth=_depth + 1) for i, v in enumerate(x)]
        return items if t is list else {"__tuple__": items}
    if t in (dict, OrderedDict):
        return {"__dict__": [
            [encode(k, path=path, _depth=_depth + 1),
             encode(v, ref=ref, path=f"{path}[{k!r}]", _depth=_depth + 1)]
            for k, v in x.items()
            if type(k) in (str, int, float, bool) or k is None
        ]}
    if ref is not None:
        tag = ref(x, path)
        if tag is not None:
            return tag
    return {"__opaque__": [path, f"{t.__module__}.{t.__qualname__}"]}


def decode(x: Any, *, resolve: Callable[[str, Any], Any] | None = None, _depth: int = 0) -> Any:
    """Decode data made by :func:`encode`, building only trusted types.

    ``resolve(tag, payload)`` turns reference tags (``__function__``, ``__callback__``,
    ``__ref__``) into objects; without it they decode to :class:`Opaque`.
    """
    if _depth > 80:
        raise ProtocolError("message nested too deeply")
    t = type(x)
    if x is None or t in (bool, int, float, str):
        return x
    if t is list:
        return [decode(v, resolve=resolve, _depth=_depth + 1) for v in x]
    if t is not dict or len(x) != 1:
        raise ProtocolError(f"unexpected value of type {t.__name__}")
    (tag, payload), = x.items()
    if tag == "__float__" and payload in ("nan", "inf", "-inf"):
        return float(payload)
    if tag == "__tuple__" and type(payload) is list:
        return tuple(decode(v, resolve=resolve, _depth=_depth + 1) for v in payload)
    if tag == "__dict__" and type(payload) is list:
        out = {}
        for pair in payload:
            if type(pair) is not list or len(pair) != 2:
                raise ProtocolError("malformed dict")
            k = decode(pair[0], _depth=_depth + 1)
            if type(k) not in (str, int, float, bool) and k is not None:
                raise ProtocolError("malformed dict key")
            out[k] = decode(pair[1], resolve=resolve, _depth=_depth + 1)
        return out
    if tag == "__ndarray__":
        return _array_from_payload(payload)
    if tag == "__tensor__":
        torch = _torch()
        a = _array_from_payload(payload)
        return torch.from_numpy(a) if torch is not None else a
    if tag == "__opaque__" and type(payload) is list and len(payload) == 2:
        return Opaque(str(payload[0]), str(payload[1]))
    if tag in ("__function__", "__callback__", "__ref__"):
        if resolve is None:
            return Opaque(str(payload), "function")
        return resolve(tag, payload)
    raise ProtocolError(f"unknown tag {tag!r}")


def send(sock: socket.socket, message: dict) -> None:
    """Send one message (a JSON-ready dict)."""
    body = json.dumps(message, separators=(",", ":")).encode()
    if len(body) > MAX_MESSAGE_BYTES:
        raise ProtocolError(f"message of {len(body)} bytes is over the limit")
    sock.sendall(_HEADER.pack(len(body)) + body)


class MessageTooLarge(ProtocolError):
    """A message's length prefix, or what its JSON would cost to decode, is over the cap."""


class LateMessage(ProtocolError):
    """A message started to arrive but was not complete by its deadline (a trickled reply)."""


def decoded_size_bound(body: bytes | bytearray) -> int:
    """An upper bound, in bytes, on the memory ``json.loads(body)`` and :func:`decode` take.

    CPython turns a few bytes of JSON into tens of bytes of objects (``[]`` into a 56-byte list,
    ``{}`` into a 64-byte dict, and a pointer to each). Counting the characters that open a
    container or separate values bounds that cost without parsing; measured against
    ``tracemalloc`` on lists, dicts, numbers, strings and arrays (``json.loads`` then
    :func:`decode`), the bound is 1.1-4.4 times the real peak.
    """
    return (3 * len(body) + 128 * body.count(b"[") + 256 * body.count(b"{")
            + 64 * body.count(b",") + 64 * body.count(b":") + 32 * body.count(b'"'))


def _recv_into(sock: socket.socket, view: memoryview, deadline: float | None, started: bool) -> None:
    got = 0
    while got < len(view):
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if started or got:
                    raise LateMessage("the message was not complete by its deadline")
                raise TimeoutError("no message before the deadline")
            sock.settimeout(remaining)
        try:
            n = sock.recv_into(view[got:], min(len(view) - got, 1 << 20))
        except TimeoutError:
            if started or got:
                raise LateMessage("the message was not complete by its deadline") from None
            raise
        if not n:
            raise EOFError("the other side closed the connection")
        got += n


def recv(sock: socket.socket, *, deadline: float | None = None,
         max_bytes: int = MAX_MESSAGE_BYTES, max_decoded_bytes: int | None = None) -> dict:
    """Receive one message.

    ``deadline`` (a :func:`time.monotonic` time) bounds the whole message, however it is split
    into ``recv()`` calls: :class:`TimeoutError` when nothing of it had arrived by then,
    :class:`LateMessage` when part had. Without it the socket's own timeout applies per call.
    A length prefix over ``max_bytes`` is refused before anything is allocated for the body
    (:class:`MessageTooLarge`), and so is a body whose decoded objects could take more than
    ``max_decoded_bytes`` (see :func:`decoded_size_bound`). Raises :class:`EOFError` when the
    other side closed and :class:`ProtocolError` for anything that is not one ASCII JSON object.
    """
    previous = sock.gettimeout()
    try:
        header = bytearray(_HEADER.size)
        _recv_into(sock, memoryview(header), deadline, started=False)
        (n,) = _HEADER.unpack(header)
        if n > max_bytes:
            raise MessageTooLarge(f"message of {n} bytes is over the limit of {max_bytes}")
        body = bytearray(n)
        _recv_into(sock, memoryview(body), deadline, started=True)
    finally:
        if deadline is not None:
            sock.settimeout(previous)
    if not body.isascii():  # send() writes ASCII only; anything else could decode 4x larger
        raise ProtocolError("a message must be ASCII JSON")
    if max_decoded_bytes is not None and decoded_size_bound(body) > max_decoded_bytes:
        raise MessageTooLarge(f"a message of {n} bytes holds too many values to decode "
                              f"(over {max_decoded_bytes} bytes)")
    try:
        msg = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise ProtocolError(f"bad JSON: {str(e)[:200]}") from None
    finally:
        del body
    if type(msg) is not dict:
        raise ProtocolError("a message must be a JSON object")
    return msg
