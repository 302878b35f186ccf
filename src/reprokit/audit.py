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

from collections.abc import Iterator
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
