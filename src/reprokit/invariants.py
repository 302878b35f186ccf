"""Invariants of torch models as plain assertion functions.

Each ``check_*`` function tests one promise a method makes (a BatchNorm layer
normalises each feature, a causal attention layer ignores the future, a training step
moves the weights, ...) and raises :class:`InvariantError` (an ``AssertionError``) when
the promise is broken. The message says what the method promises, what was checked,
the smallest input that broke it, the numbers seen, and what to try::

    batch independence violated: output for sample 0 changed by 3.2e-01 when sample 1 changed
      promise: each sample's output depends on that sample alone
      checked: ...
      hint: ...

The functions work without pytest (in a notebook, in an Otter test, in a student's
own test file). Inputs are explicit tensors, so a check can be driven by hypothesis
with the strategies of :mod:`reprokit.strategies`; where a check needs inputs it also
accepts ``None`` and builds a small deterministic example from a seeded
``torch.Generator`` (never the global RNG).

Every check leaves the world as it found it: random number generators and torch's
determinism flags are restored (through :func:`reprokit.seeding.seeded`), and so are
each submodule's ``training`` flag and the model's buffers (BatchNorm's running
statistics). Checks that take a training ``step`` do train the model: that is the
point of calling them.

Threads: a check runs with :data:`CHECK_THREADS` torch intra-op threads (default 1; the
models checked are tiny, where a second thread only waits) and puts the caller's
``torch.get_num_threads()`` back when it returns or raises. Set
``reprokit.invariants.CHECK_THREADS = None`` to leave torch's threads alone.

Under pytest, the frames of this module are hidden from an :class:`InvariantError`'s
traceback (``__tracebackhide__``), so a failure shows the test's line and the message,
not reprokit's source; any other exception raised here (a bug of ours) keeps its full
traceback.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import math
import random
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

__all__ = [
    "InvariantError",
    "check_batch_independence",
    "check_can_overfit",
    "check_causal",
    "check_deterministic",
    "check_eval_deterministic",
    "check_finite",
    "check_gradients",
    "check_loss_decreases",
    "check_normalised",
    "check_outputs_finite",
    "check_parameter_scale_invariance",
    "check_parameters_update",
    "check_permutation_equivariance",
    "check_permutation_invariance",
    "check_probabilities",
    "check_scale_invariance",
    "check_state_dict_roundtrip",
    "example_input",
    "training_step",
    "warm_up",
]

Fn = Callable[..., Any]
F = TypeVar("F", bound=Callable[..., Any])


class InvariantError(AssertionError):
    """An invariant a method promises does not hold; the message says where and by how much.

    Attributes: ``invariant`` (its name, e.g. ``"batch independence"``), ``seen`` (the
    one-line finding), ``promise``, ``checked`` (what was run), ``example`` (the smallest
    input that broke it, as text) and ``hint`` (what to try).
    """

    def __init__(
        self,
        invariant: str,
        seen: str,
        *,
        promise: str,
        checked: str,
        hint: str,
        example: str | None = None,
    ) -> None:
        self.invariant = invariant
        self.seen = seen
        self.promise = promise
        self.checked = checked
        self.example = example
        self.hint = hint
        lines = [
            f"{invariant} violated: {seen}",
            f"  promise: {promise}",
            f"  checked: {checked}",
        ]
        if example:
            lines.append(f"  smallest input that broke it: {example}")
        lines.append(f"  hint: {hint}")
        super().__init__("\n".join(lines))


def _hide_from_traceback(excinfo: Any) -> bool:
    """pytest's ``__tracebackhide__`` hook: hide this module's frames for an InvariantError only."""
    try:
        return bool(excinfo.errisinstance(InvariantError))
    except Exception:  # an odd ExceptionInfo: show everything
        return False


__tracebackhide__ = _hide_from_traceback

#: torch intra-op threads while a check runs (the caller's count is restored afterwards);
#: ``None`` leaves torch's thread count alone.
CHECK_THREADS: int | None = 1


def warm_up() -> float:
    """Pay torch's one-off import of ``torch._dynamo`` now; return the seconds it took.

    torch builds its first optimiser (any ``torch.optim`` class) only after importing
    ``torch._dynamo``: 2 s on an idle laptop core, 6-17 s on a loaded machine. reprokit's
    own defaults (:func:`training_step` without an ``optimizer``, the default training
    of :func:`check_deterministic`) take plain SGD steps and never pay it; call this
    once before timing-sensitive tests (e.g. hypothesis with a deadline) that build
    their own optimiser. Later calls cost nothing.
    """
    import sys
    import time

    if "torch._dynamo" in sys.modules:
        return 0.0
    start = time.perf_counter()
    import torch._dynamo  # noqa: F401

    return time.perf_counter() - start


# --------------------------------------------------------------------------- helpers


_inside = threading.local()  # .depth > 0 while a check runs in this thread


@contextlib.contextmanager
def _fork_rng_seeded(seed: int) -> Iterator[None]:
    """Fallback when :mod:`reprokit.seeding` is missing: torch's CPU RNG only."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield None


def _reseed(seed: int) -> None:
    """Re-seed the generators a forward pass or a training step draws from; cheap.

    ``torch.manual_seed`` also queues a lazy CUDA seeding that records a stack trace
    (~1 ms, far more under hypothesis's deep stacks), so inside a check, whose wrapper
    already saved every state, only the generators in use are re-seeded.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(seed)


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed for a block and restore every RNG state and flag afterwards.

    The outermost call saves and restores through ``reprokit.seeding.snapshot`` /
    ``restore`` (a torch-only ``fork_rng`` fallback if that module is missing) and seeds
    like ``seed_everything`` minus its environment variables; nested calls inside a
    running check only re-seed. ``seed_everything`` itself is not called because its
    ``torch.manual_seed`` formats the whole call stack three times (lazy CUDA, XPU and
    MTIA seeding): ~1 ms in a script, 80 ms per call inside a hypothesis test under pytest.
    """
    if getattr(_inside, "depth", 0) > 0:
        _reseed(seed)
        yield
        return
    try:
        from reprokit.seeding import restore, snapshot
    except ImportError:  # seeding is missing or broken: torch's own fork_rng
        context: contextlib.AbstractContextManager[Any] = _fork_rng_seeded(seed)
    else:
        context = _snapshot_seeded(seed, snapshot, restore)
    with context:
        _inside.depth = getattr(_inside, "depth", 0) + 1
        try:
            yield
        finally:
            _inside.depth -= 1


@contextlib.contextmanager
def _snapshot_seeded(seed: int, snapshot: Callable[[], Any], restore: Callable[[Any], None]) -> Iterator[None]:
    state = snapshot()
    try:
        _reseed(seed)
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            # GPU kernels such as index_add are non-deterministic unless told otherwise; on
            # the CPU every kernel a check runs is deterministic already.
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        yield
    finally:
        restore(state)


@contextlib.contextmanager
def _preserved(model: Any, train_mode: bool | None = None) -> Iterator[None]:
    """Set ``model``'s mode for a block; afterwards restore every submodule's mode and buffers."""
    if not isinstance(model, nn.Module):
        yield
        return
    modes = [(m, m.training) for m in model.modules()]
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    try:
        if train_mode is not None:
            model.train(train_mode)
        yield
    finally:
        for m, mode in modes:
            m.training = mode
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)


def _check(check: F) -> F:
    """Run ``check`` seeded, with :data:`CHECK_THREADS` torch threads; restore RNG states, flags
    and the caller's thread count after.

    The checks run tiny models, where a second intra-op thread only adds waiting: on a
    busy machine (a class being regraded fills every core) a BatchNorm call measured
    15 ms with 2 threads and 16 us with 1.
    """

    @functools.wraps(check)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        threads = torch.get_num_threads()
        wanted = CHECK_THREADS if CHECK_THREADS is not None else threads
        if threads != wanted:
            torch.set_num_threads(wanted)
        try:
            with _seeded(kwargs.get("seed", 0)):
                return check(*args, **kwargs)
        finally:
            if threads != wanted:
                torch.set_num_threads(threads)

    return wrapper  # type: ignore[return-value]


def _flatten(out: Any, path: str = "output") -> list[tuple[str, torch.Tensor]]:
    """Every tensor in a (nested) tuple, list or dict of outputs, with a readable path."""
    if isinstance(out, torch.Tensor):
        return [(path, out)]
    if isinstance(out, (tuple, list)):
        flat: list[tuple[str, torch.Tensor]] = []
        for i, item in enumerate(out):
            flat += _flatten(item, f"{path}[{i}]")
        return flat
    if isinstance(out, dict):
        flat = []
        for key, item in out.items():
            flat += _flatten(item, f"{path}[{key!r}]")
        return flat
    return []


def _outputs(fn: Fn, *inputs: Any) -> list[tuple[str, torch.Tensor]]:
    with torch.no_grad():
        flat = _flatten(fn(*inputs))
    if not flat:
        raise TypeError(
            "expected the model or function to return a tensor (or a tuple/dict of tensors), "
            "got no tensor at all; check what forward() returns"
        )
    return [(p, t.detach()) for p, t in flat]


def _idx(index: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(i)) for i in index) + "]"


def _unravel(flat_index: int, shape: Sequence[int]) -> tuple[int, ...]:
    index = []
    for size in reversed(list(shape)):
        index.append(flat_index % size if size else 0)
        flat_index = flat_index // size if size else 0
    return tuple(reversed(index))


def _fmt(v: float) -> str:
    return f"{v:.3g}" if math.isfinite(v) and abs(v) >= 1e-3 else f"{v:.2e}"


class _Mismatch:
    """Where two tensors differ most beyond tolerance."""

    def __init__(self, diff: float, index: tuple[int, ...], got: float, expected: float) -> None:
        self.diff, self.index, self.got, self.expected = diff, index, got, expected

    def at(self, path: str) -> str:
        return f"{path}{_idx(self.index)}"


def _compare(got: torch.Tensor, expected: torch.Tensor, atol: float, rtol: float) -> _Mismatch | None:
    """None if ``got`` and ``expected`` agree (NaN equals NaN), else the worst entry."""
    if got.shape != expected.shape:
        raise InvariantError(
            "shape consistency",
            f"output shape {tuple(got.shape)} differs from {tuple(expected.shape)}",
            promise="the same model gives outputs of the same shape for inputs of the same shape",
            checked="two forward passes",
            hint="does forward() depend on something other than its input?",
        )
    a = got.detach().to(torch.float64)
    b = expected.detach().to(torch.float64)
    close = torch.isclose(a, b, rtol=rtol, atol=atol, equal_nan=True)
    if bool(close.all()):
        return None
    diff = torch.nan_to_num((a - b).abs(), nan=math.inf)
    diff[close] = -1.0
    flat = int(torch.argmax(diff.reshape(-1)))
    index = _unravel(flat, a.shape)
    return _Mismatch(float(diff.reshape(-1)[flat]), index, float(a.reshape(-1)[flat]),
                     float(b.reshape(-1)[flat]))


def _describe(x: Any) -> str:
    """A tensor as text: the values when small, else shape, dtype and range."""
    if not isinstance(x, torch.Tensor):
        return repr(x)
    if x.numel() <= 16:
        def text(v: Any) -> str:
            if isinstance(v, list):
                return "[" + ", ".join(text(u) for u in v) + "]"
            return f"{v:.4g}" if isinstance(v, float) else str(v)

        return f"{text(x.detach().cpu().tolist())} (shape {tuple(x.shape)}, " \
            f"{str(x.dtype).replace('torch.', '')})"
    xf = x.detach().to(torch.float64)
    return (f"tensor of shape {tuple(x.shape)}, {str(x.dtype).replace('torch.', '')}, "
            f"values in [{_fmt(float(xf.min()))}, {_fmt(float(xf.max()))}]")


def _perturbed(x: torch.Tensor, dim: int, positions: Sequence[int]) -> torch.Tensor:
    """A copy of ``x`` whose slices at ``positions`` along ``dim`` hold other valid values.

    Floats move by at least 1 (``x + 1 + |x|``); integers (token ids, labels) swap to
    another value already present in ``x``, so they stay valid; when every entry holds
    the same value ``v`` (hypothesis shrinks token ids to all zeros) they move to its
    neighbour ``v + 1`` (``v - 1`` when ``v > 0``), which a vocabulary of two or more
    tokens holds; booleans flip.
    """
    x2 = x.clone()
    index = torch.as_tensor(list(positions), dtype=torch.long, device=x.device)
    part = x.index_select(dim, index)
    if x.dtype == torch.bool:
        new = ~part
    elif x.is_floating_point() or x.is_complex():
        new = part + 1.0 + part.abs()
    else:
        lo, hi = x.min(), x.max()
        if bool(lo == hi):
            hi = lo - 1 if int(lo) > 0 else lo + 1
        new = torch.where(part == lo, hi, lo)
    x2.index_copy_(dim, index, new)
    return x2


def _first(model: nn.Module, kinds: tuple[type, ...]) -> nn.Module | None:
    for m in model.modules():
        if isinstance(m, kinds):
            return m
    return None


def example_input(
    model: nn.Module, *, batch: int = 8, length: int = 8, seed: int = 0,
    dtype: torch.dtype | None = None, sequence: bool = False,
) -> torch.Tensor:
    """A small deterministic input for ``model``, inferred from its first layer.

    Embedding -> token ids of shape ``(batch, length)``; Conv1d/2d -> ``(batch, C, length)``
    or ``(batch, C, length, length)``; MultiheadAttention -> ``(batch, length, E)``
    (batch first); Linear/BatchNorm1d/LayerNorm -> ``(batch, features)``, or
    ``(batch, length, features)`` with ``sequence=True``. Values come from a
    ``torch.Generator`` seeded with ``seed``.

    Each guess is tried once on the model (eval mode, no gradients, modes, buffers and
    the global RNG restored) and, when the model refuses it, the next one: a 2-D input
    then a sequence for Linear/LayerNorm (a transformer block whose attention splits
    ``B, T, C``); shorter sequences for an Embedding (a context shorter than
    ``length``); the side lengths of common datasets, 16, 28, 32 and 64, for a
    convolution (MNIST's net needs 28). If none is accepted the first guess is returned,
    and the check reports the model's own error. Raises ``ValueError`` when no such
    layer is found: pass an input explicitly.
    """
    g = torch.Generator().manual_seed(seed)
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    if dtype is None:
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    first = _first(model, (nn.Embedding, nn.Conv1d, nn.Conv2d, nn.MultiheadAttention, nn.Linear,
                           nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm))
    if isinstance(first, nn.Embedding):
        vocab = first.num_embeddings
        lengths = [length] + [n for n in (length // 2, length // 4, 1) if 0 < n < length]
        ids = [torch.randint(0, vocab, (batch, n), generator=torch.Generator().manual_seed(seed))
               .to(device) for n in dict.fromkeys(lengths)]
        return next((t for t in ids if _accepts(model, t)), ids[0])
    sides = list(dict.fromkeys([length, 16, 28, 32, 64]))
    if isinstance(first, (nn.Conv1d, nn.Conv2d, nn.BatchNorm2d)):
        channels = first.num_features if isinstance(first, nn.BatchNorm2d) else first.in_channels
        spatial = 1 if isinstance(first, nn.Conv1d) else 2
        guesses = [torch.randn((batch, channels) + (side,) * spatial,
                               generator=torch.Generator().manual_seed(seed), dtype=dtype)
                   .to(device) for side in sides]
        return next((t for t in guesses if _accepts(model, t)), guesses[0])
    if isinstance(first, nn.MultiheadAttention):
        shape: tuple[int, ...] = (batch, length, first.embed_dim)
    elif isinstance(first, (nn.Linear, nn.LayerNorm)):
        features = (first.in_features,) if isinstance(first, nn.Linear) else \
            tuple(first.normalized_shape)
        if not sequence:
            flat = torch.randn((batch, *features), generator=g, dtype=dtype).to(device)
            if _accepts(model, flat):
                return flat
            g = torch.Generator().manual_seed(seed)
        shape = (batch, length, *features)
    elif isinstance(first, nn.BatchNorm1d):
        shape = (batch, first.num_features)
    else:
        raise ValueError(
            f"cannot guess an input for {type(model).__name__}: expected a first layer of type "
            "Embedding, Conv1d, Conv2d, MultiheadAttention, Linear, BatchNorm or LayerNorm; "
            "pass an input tensor explicitly, e.g. check_...(model, torch.randn(8, 4))"
        )
    return torch.randn(shape, generator=g, dtype=dtype).to(device)


def _accepts(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``model`` runs on ``x`` (eval mode, no gradients; modes, buffers and RNG restored)."""
    try:
        with _preserved(model, False), torch.no_grad(), torch.random.fork_rng(devices=[]):
            model(x)
    except Exception:  # any refusal (a shape error, an assert): guess again
        return False
    return True


def _input_or_example(model: Any, x: torch.Tensor | None, **kwargs: Any) -> torch.Tensor:
    if x is not None:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"expected the input as a torch.Tensor, got {type(x).__name__}")
        return x
    if not isinstance(model, nn.Module):
        raise ValueError(
            "this check needs an input: a plain function's input shape cannot be guessed; "
            "pass one, e.g. check_...(fn, torch.randn(8, 4))"
        )
    return example_input(model, **kwargs)


def _mode(train_mode: bool | None | str) -> str:
    return {None: "the model's current mode", True: "train mode", False: "eval mode",
            _TRAIN_FROZEN_BN: "train mode with BatchNorm held in eval mode"}[train_mode]


_TRAIN_FROZEN_BN = "train-frozen-bn"


def _is_batch_norm(module: nn.Module) -> bool:
    """A BatchNorm layer: torch's, or a hand-written one that keeps running statistics."""
    return isinstance(module, nn.modules.batchnorm._BatchNorm) or any(
        name in ("running_mean", "running_var") for name, _ in module.named_buffers(recurse=False))


def _train_with_frozen_batch_norm(model: nn.Module) -> None:
    """Train mode, except BatchNorm layers, whose batch statistics legitimately mix a batch.

    Call it inside :func:`_preserved`, which puts every module's mode back.
    """
    model.train(True)
    for m in model.modules():
        if _is_batch_norm(m):
            m.train(False)


def _has_train_time_behaviour(model: Fn, x: torch.Tensor, seed: int) -> bool:
    """Whether ``model`` computes something else in train mode (BatchNorm aside) than in eval mode."""
    if not isinstance(model, nn.Module):
        return False
    with _preserved(model, False), _seeded(seed):
        evaluated = _outputs(model, x)
    with _preserved(model):
        _train_with_frozen_batch_norm(model)
        with _seeded(seed):
            trained = _outputs(model, x)
    if [p for p, _ in evaluated] != [p for p, _ in trained]:
        return True  # train mode returns other outputs (e.g. a loss as well)
    return any(a.shape != b.shape or _compare(b, a, 0.0, 0.0) is not None
               for (_, a), (_, b) in zip(evaluated, trained, strict=True))


@_check
def check_batch_independence(
    model: Fn,
    x: torch.Tensor | None = None,
    *,
    dim: int = 0,
    samples: Sequence[int] | None = None,
    train_mode: bool | None | str = "auto",
    atol: float = 1e-6,
    rtol: float = 1e-5,
    seed: int = 0,
) -> None:
    """Each sample's output depends on that sample alone, in eval mode and, where it differs, train mode.

    For each checked sample ``i`` (default: the first and the last), every other sample
    along ``dim`` is replaced by different values; the outputs for ``i`` must not move
    beyond ``atol + rtol * |output|``. On failure the single other sample that moves it
    is found and reported.

    ``train_mode="auto"`` (the default) checks eval mode, then train mode too when the
    model computes something different there (dropout, or code that tests
    ``self.training``); in that train-mode pass BatchNorm layers (torch's, and any module
    with a ``running_mean`` or ``running_var`` buffer, i.e. a hand-written BatchNorm) are
    held in eval mode, because mixing the batch through its statistics is what BatchNorm
    promises. Dropout
    draws the same mask for the original and the changed batch (both run under the same
    seed). ``False`` checks eval mode only, ``True`` plain train mode (where BatchNorm
    mixes the batch and fails the check), ``None`` the model's current mode.
    """
    x = _input_or_example(model, x)
    n = x.shape[dim]
    if n < 2:
        raise ValueError(f"expected a batch of at least 2 samples along dim {dim}, got {n}")
    if train_mode not in (True, False, None, "auto"):
        raise ValueError(f"train_mode: expected True, False, None or 'auto', got {train_mode!r}")
    checked_samples = sorted({0, n - 1}) if samples is None else list(samples)
    modes: list[bool | None | str] = [train_mode]
    if train_mode == "auto":
        modes = [False]
        if _has_train_time_behaviour(model, x, seed):
            modes.append(_TRAIN_FROZEN_BN)
    for mode in modes:
        _batch_independence_in(model, x, mode, dim, n, checked_samples, atol, rtol, seed,
                               auto=train_mode == "auto")


def _batch_independence_in(
    model: Fn, x: torch.Tensor, mode: bool | None | str, dim: int, n: int,
    checked_samples: list[int], atol: float, rtol: float, seed: int, auto: bool,
) -> None:
    frozen = mode == _TRAIN_FROZEN_BN
    with _preserved(model, None if frozen else mode):  # type: ignore[arg-type]
        if frozen:
            _train_with_frozen_batch_norm(model)  # type: ignore[arg-type]
        with _seeded(seed):
            base = _outputs(model, x)
        for i in checked_samples:
            others = [j for j in range(n) if j != i]
            with _seeded(seed):
                moved = _outputs(model, _perturbed(x, dim, others))
            bad = _batch_mismatch(base, moved, i, dim, n, atol, rtol)
            if bad is None:
                continue
            culprit, (path, mm) = others, bad
            for j in others:  # the one other sample that is enough to move sample i
                with _seeded(seed):
                    single = _outputs(model, _perturbed(x, dim, [j]))
                found = _batch_mismatch(base, single, i, dim, n, atol, rtol)
                if found is not None:
                    culprit, (path, mm) = [j], found
                    break
            who = f"sample {culprit[0]}" if len(culprit) == 1 else "the other samples"
            example = _describe(x)
            if len(culprit) == 1 and n > 2:  # do the two samples alone already show it?
                pair = x.index_select(dim, torch.tensor([i, culprit[0]], device=x.device))
                with _seeded(seed):
                    pair_base = _outputs(model, pair)
                with _seeded(seed):
                    pair_moved = _outputs(model, _perturbed(pair, dim, [1]))
                if _batch_mismatch(pair_base, pair_moved, 0, dim, 2, atol, rtol) is not None:
                    example = f"samples {i} and {culprit[0]} alone: {_describe(pair)}"
            mixing = type(model).__name__ if isinstance(model, nn.Module) else "the function"
            if frozen:
                mode_hint = ("the model mixes samples in train mode only (eval mode passed; "
                             "BatchNorm was held in eval mode, so it is not the cause): look for "
                             "code under `if self.training:` that uses batch statistics, e.g. "
                             "x - x.mean(0), and for hand-written normalisation layers. ")
                promise = ("each sample's output depends on that sample alone, in eval mode and "
                           "in train mode apart from BatchNorm's batch statistics")
            else:
                mode_hint = ("model in train mode? BatchNorm mixes a batch in train mode; call "
                             "model.eval(). " if mode is not False else "")
                promise = "in inference each sample's output depends on that sample alone"
            raise InvariantError(
                "batch independence",
                f"output for sample {i} changed by {_fmt(mm.diff)} when {who} changed "
                f"(at {mm.at(path)}: {_fmt(mm.expected)} -> {_fmt(mm.got)}) in {_mode(mode)}",
                promise=promise,
                checked=(f"{mixing} on a batch of {n} along dim {dim} in {_mode(mode)}"
                         f"{' (train_mode=auto)' if auto else ''}; changed {who}, compared "
                         f"sample {i}'s output with atol={atol:g}, rtol={rtol:g}"),
                example=example,
                hint=(mode_hint + "something mixes samples along the batch dimension: "
                      "x.mean(0) / x.std(0) / softmax(dim=0), BatchNorm with "
                      "track_running_stats=False, or a view/reshape that folds the batch into "
                      "another dimension"),
            )


def _batch_mismatch(
    base: list[tuple[str, torch.Tensor]], moved: list[tuple[str, torch.Tensor]],
    i: int, dim: int, n: int, atol: float, rtol: float,
) -> tuple[str, _Mismatch] | None:
    for (path, a), (_, b) in zip(base, moved, strict=True):
        if a.dim() == 0 or a.shape[dim] != n:
            continue  # not a per-sample output (e.g. a batch loss)
        mm = _compare(b.select(dim, i), a.select(dim, i), atol, rtol)
        if mm is not None:
            full = list(mm.index)
            full.insert(dim if dim >= 0 else a.dim() + dim, i)
            mm.index = tuple(full)
            return path, mm
    return None


def _permutation_witness(broken: Callable[[torch.Tensor], Any], p: torch.Tensor, n: int
                         ) -> tuple[Any, torch.Tensor] | None:
    """None when permuting by ``p`` breaks nothing; otherwise what ``broken`` found and the
    permutation to show: a single transposition of two of the first 8 positions when one
    breaks it too (the smallest witness), else ``p``."""
    found = broken(p)
    if found is None:
        return None
    for i in range(min(n, 8)):
        for j in range(i + 1, min(n, 8)):
            q = torch.arange(n)
            q[i], q[j] = j, i
            swap = broken(q)
            if swap is not None:
                return swap, q
    return found, p


@_check
def check_permutation_equivariance(
    fn: Fn,
    x: torch.Tensor | None = None,
    perm: torch.Tensor | Sequence[int] | None = None,
    *,
    dim: int = 0,
    out_dim: int | None = None,
    train_mode: bool | None = False,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    seed: int = 0,
) -> None:
    """Permuting the inputs along ``dim`` permutes the outputs the same way: f(x[p]) = f(x)[p].

    ``perm`` defaults to reversing the order. ``out_dim`` is the outputs' set dimension
    (default ``dim``). On failure the check looks for a single swap of two positions
    that already breaks the promise and reports it.
    """
    x = _input_or_example(fn, x, sequence=dim != 0)
    n = x.shape[dim]
    out_dim = dim if out_dim is None else out_dim
    p = torch.arange(n - 1, -1, -1) if perm is None else torch.as_tensor(perm, dtype=torch.long)
    if sorted(p.tolist()) != list(range(n)):
        raise ValueError(f"perm: expected a permutation of 0..{n - 1}, got {p.tolist()}")

    def broken(q: torch.Tensor) -> tuple[str, _Mismatch] | None:
        with _seeded(seed):
            moved = _outputs(fn, x.index_select(dim, q.to(x.device)))
        for (path, a), (_, b) in zip(base, moved, strict=True):
            if a.dim() == 0 or a.shape[out_dim] != n:
                continue
            mm = _compare(b, a.index_select(out_dim, q.to(a.device)), atol, rtol)
            if mm is not None:
                return path, mm
        return None

    with _preserved(fn, train_mode):
        with _seeded(seed):
            base = _outputs(fn, x)
        witness = _permutation_witness(broken, p, n)
        if witness is None:
            return
        found, shown = witness
    path, mm = found
    pos = mm.index[out_dim]
    raise InvariantError(
        "permutation equivariance",
        f"with the inputs permuted by {shown.tolist()}, {mm.at(path)} is {_fmt(mm.got)} but "
        f"the permuted original output is {_fmt(mm.expected)} (off by {_fmt(mm.diff)}; "
        f"position {pos} holds input {int(shown[pos])})",
        promise=f"f(x permuted along dim {dim}) == f(x) permuted the same way (a set model)",
        checked=f"{n} positions along dim {dim}, outputs along dim {out_dim}, {_mode(train_mode)}, "
                f"atol={atol:g}, rtol={rtol:g}",
        example=_describe(x),
        hint="a positional encoding, a cumulative op (cumsum, an RNN), a causal mask or indexing "
             "by position makes outputs depend on the order; a set model must treat positions alike",
    )


@_check
def check_permutation_invariance(
    fn: Fn,
    x: torch.Tensor | None = None,
    perm: torch.Tensor | Sequence[int] | None = None,
    *,
    dim: int = 0,
    train_mode: bool | None = False,
    atol: float = 1e-5,
    rtol: float = 1e-4,
    seed: int = 0,
) -> None:
    """Permuting the inputs along ``dim`` leaves every output unchanged: f(x[p]) = f(x).

    The promise of set pooling (a sum or mean over elements, attention pooling such as
    the Set Transformer's PMA, a DeepSets readout). ``perm`` defaults to reversing the
    order; for batched sets of shape ``(batch, set, features)`` pass ``dim=1``. On
    failure the check looks for a single swap of two positions that already breaks the
    promise and reports it.
    """
    x = _input_or_example(fn, x, sequence=dim != 0)
    n = x.shape[dim]
    p = torch.arange(n - 1, -1, -1) if perm is None else torch.as_tensor(perm, dtype=torch.long)
    if sorted(p.tolist()) != list(range(n)):
        raise ValueError(f"perm: expected a permutation of 0..{n - 1}, got {p.tolist()}")

    def broken(q: torch.Tensor) -> tuple[str, _Mismatch] | None:
        with _seeded(seed):
            moved = _outputs(fn, x.index_select(dim, q.to(x.device)))
        for (path, a), (_, b) in zip(base, moved, strict=True):
            mm = _compare(b, a, atol, rtol)
            if mm is not None:
                return path, mm
        return None

    with _preserved(fn, train_mode):
        with _seeded(seed):
            base = _outputs(fn, x)
        witness = _permutation_witness(broken, p, n)
        if witness is None:
            return
        found, shown = witness
    path, mm = found
    moved = [k for k in range(n) if int(shown[k]) != k]
    what = (f"swapping positions {moved[0]} and {moved[1]}" if len(moved) == 2
            else f"permuting the inputs by {shown.tolist()}")
    raise InvariantError(
        "permutation invariance",
        f"{what} along dim {dim} changed {mm.at(path)} from {_fmt(mm.expected)} to "
        f"{_fmt(mm.got)} (off by {_fmt(mm.diff)})",
        promise=f"f(x permuted along dim {dim}) == f(x): the output ignores the order of the set",
        checked=f"{n} positions along dim {dim}, {_mode(train_mode)}, atol={atol:g}, rtol={rtol:g}",
        example=_describe(x),
        hint="pooling must treat every element alike: a positional encoding, x[:, 0] / x[:, -1] "
             "(taking one element), a slice that drops elements, a cumulative op or an RNN makes "
             "the result depend on the order; reduce with sum, mean, max or attention over all "
             "elements",
    )


@_check
def check_causal(
    fn: Fn,
    x: torch.Tensor | None = None,
    *,
    dim: int = 1,
    train_mode: bool | None = False,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    seed: int = 0,
) -> None:
    """The output at position t ignores inputs after t (autoregressive models, causal attention).

    For t = 0, 1, ... every input after t along ``dim`` is changed; outputs at positions
    <= t must not move. The first (smallest) leaking position is reported with the single
    future position that leaks into it.
    """
    x = _input_or_example(fn, x, batch=2, sequence=True)
    T = x.shape[dim]
    with _preserved(fn, train_mode):
        with _seeded(seed):
            base = _outputs(fn, x)
        per_position = [(p, o) for p, o in base if o.dim() > dim and o.shape[dim] == T]
        if not per_position:
            raise ValueError(
                f"expected an output with {T} positions along dim {dim} (one per input "
                f"position), got shapes {[tuple(o.shape) for _, o in base]}; set dim=..., or, "
                "if the model returns only the last position at inference (nanoGPT without "
                "targets), wrap it in a function that returns every position's output"
            )

        def leak(future: list[int], t: int) -> tuple[str, _Mismatch] | None:
            with _seeded(seed):
                moved = dict(_outputs(fn, _perturbed(x, dim, future)))
            for path, a in per_position:
                keep = torch.arange(t + 1, device=a.device)
                mm = _compare(moved[path].index_select(dim, keep), a.index_select(dim, keep),
                              atol, rtol)
                if mm is not None:
                    return path, mm
            return None

        for t in range(T - 1):
            found = leak(list(range(t + 1, T)), t)
            if found is None:
                continue
            source = None
            for s in range(t + 1, T):
                single = leak([s], t)
                if single is not None:
                    found, source = single, s
                    break
            path, mm = found
            pos = mm.index[dim]
            example = _describe(x)
            if source is not None:  # the shortest prefix, of the one sample, that still leaks
                small = x.narrow(dim, 0, source + 1)
                if dim % x.dim() != 0 and mm.index[0] < x.shape[0]:
                    small = small.narrow(0, mm.index[0], 1)
                with _seeded(seed):
                    small_base = dict(_outputs(fn, small))
                try:  # an integer prefix of one repeated token cannot be perturbed
                    moved_small = _perturbed(small, dim, [source])
                except ValueError:
                    moved_small = small
                with _seeded(seed):
                    small_moved = dict(_outputs(fn, moved_small))
                keep = torch.arange(t + 1, device=x.device)
                if path in small_base and _compare(
                        small_moved[path].index_select(dim, keep),
                        small_base[path].index_select(dim, keep), atol, rtol) is not None:
                    example = f"positions 0..{source} alone: {_describe(small)}"
            what = f"the input at position {source}" if source is not None else \
                f"the inputs after position {t}"
            raise InvariantError(
                "causality",
                f"output at position {pos} changed by {_fmt(mm.diff)} when {what} changed "
                f"(at {mm.at(path)}: {_fmt(mm.expected)} -> {_fmt(mm.got)}); only positions "
                f"<= {pos} may matter",
                promise="the output at position t depends only on inputs at positions <= t",
                checked=f"{T} positions along dim {dim}, {_mode(train_mode)}, changed the inputs "
                        f"after each t, atol={atol:g}, rtol={rtol:g}",
                example=example,
                hint="the attention mask lets a position see the future: mask[i, j] must block "
                     "j > i (torch.triu(ones(T, T), diagonal=1) marks what to block; diagonal=2 "
                     "lets t see t + 1), the mask must be applied before the softmax, and "
                     "nothing may pool over the whole sequence",
            )


@_check
def check_normalised(
    module: Fn,
    x: torch.Tensor | None = None,
    *,
    feature_dim: int = 1,
    reduce_dims: Sequence[int] | None = None,
    train_mode: bool | None = True,
    mean_atol: float = 1e-3,
    var_atol: float = 1e-2,
    seed: int = 0,
) -> None:
    """Each feature of the output has mean ~0 and (biased) variance ~1, in train mode.

    Statistics are taken over ``reduce_dims`` (default every dim except ``feature_dim``,
    as BatchNorm does, Ioffe & Szegedy 2015 Sec 3, Algorithm 1); for LayerNorm pass
    ``reduce_dims=(-1,)``. ``feature_dim`` and ``reduce_dims`` index the *output*, so a
    module that changes the shape works too: ``nn.Sequential(nn.Conv2d(3, 8, 3),
    nn.BatchNorm2d(8))`` is normalised per output channel (``feature_dim=1``). The default
    input has mean 2 and standard deviation 3, so an identity layer fails. Check a freshly
    built layer: trained affine weights move the statistics on purpose.
    """
    if x is None:
        x = _input_or_example(module, None, batch=32, seed=seed) * 3.0 + 2.0
    with _preserved(module, train_mode), _seeded(seed):
        (path, out), *_ = _outputs(module, x)
    if out.dim() == 0 or not -out.dim() <= feature_dim < out.dim():
        raise ValueError(f"feature_dim={feature_dim}: expected a dim of the output, whose shape "
                         f"is {tuple(out.shape)}")
    dims = tuple(d % out.dim() for d in reduce_dims) if reduce_dims is not None else \
        tuple(d for d in range(out.dim()) if d != feature_dim % out.dim())
    o = out.to(torch.float64)
    mean = o.mean(dim=dims, keepdim=True)
    var = ((o - mean) ** 2).mean(dim=dims, keepdim=True)
    count = o.numel() // mean.numel()
    for name, stat, target, tol in (("mean", mean, 0.0, mean_atol), ("variance", var, 1.0, var_atol)):
        err = (stat - target).abs()
        worst = int(torch.argmax(torch.nan_to_num(err, nan=math.inf).reshape(-1)))
        value = float(stat.reshape(-1)[worst])
        if not abs(value - target) <= tol:
            group = [i for d, i in enumerate(_unravel(worst, stat.shape)) if d not in dims]
            raise InvariantError(
                "normalisation",
                f"{name} of {path} over dims {list(dims)} is {_fmt(value)} for feature "
                f"{_idx(group)} (expected {target:g} ± {tol:g}, over {count} values)",
                promise="each feature is normalised to mean 0 and variance 1 over the batch "
                        "(Ioffe & Szegedy 2015, Algorithm 1)",
                checked=f"input {tuple(x.shape)} with mean {_fmt(float(x.float().mean()))} and "
                        f"std {_fmt(float(x.float().std()))}, output {tuple(out.shape)}, "
                        f"{_mode(train_mode)}, statistics over dims {list(dims)}",
                example=_describe(x),
                hint="normalising over the wrong dimension (BatchNorm reduces over the batch, dim "
                     "0; LayerNorm over features, dim -1)? subtracting the mean but not dividing "
                     "by sqrt(var + eps)? unbiased variance (torch.var's default; BN normalises "
                     "with the biased one)? in eval mode running statistics are used instead",
            )


_NO_EPS = 1e-30  # "eps = 0": BatchNorm refuses eps <= 0 in train mode; 0 / sqrt(1e-30) is still 0


#: Attribute names under which normalisation layers keep their eps: torch's and most
#: hand-written ones use ``eps``; transformers' RMSNorms (Llama, T5, Mistral, ...)
#: ``variance_epsilon``; some others ``epsilon``.
_EPS_NAMES = ("eps", "variance_epsilon", "epsilon")


def _eps_name(module: nn.Module) -> str | None:
    """The attribute holding ``module``'s float eps, or None."""
    return next((a for a in _EPS_NAMES if isinstance(getattr(module, a, None), float)), None)


def _eps_of(module: nn.Module) -> float:
    return float(getattr(module, _eps_name(module) or "eps"))


def _norm_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Modules whose float eps can be read and set: torch's normalisation layers and
    hand-written or library ones that keep their eps as an attribute (:data:`_EPS_NAMES`)."""
    return [(n, m) for n, m in model.named_modules() if _eps_name(m) is not None]


@contextlib.contextmanager
def _batch_variances(layers: list[tuple[str, nn.Module]]) -> Iterator[dict[str, list[float]]]:
    """Record, for each layer, the smallest variance of its input and its relative spread.

    BatchNorm-type layers reduce over every dim but 1, the others over the last dim.
    Each entry of the yielded dict is ``[smallest variance, smallest std / rms]``, the
    second saying how close to constant the flattest group is.
    """
    seen: dict[str, list[float]] = {}
    handles = []

    def hook(name: str, module: nn.Module) -> Callable[..., None]:
        def record(_: nn.Module, inputs: tuple[Any, ...]) -> None:
            if not inputs or not isinstance(inputs[0], torch.Tensor) or inputs[0].dim() < 2:
                return
            t = inputs[0].detach().to(torch.float64)
            per_channel = [d for d in range(t.dim()) if d != 1]
            if isinstance(module, nn.modules.batchnorm._NormBase):
                groupings = [per_channel]
            elif isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
                groupings = [[-1]]
            else:  # hand-written: it may reduce either way
                groupings = [per_channel, [-1]]
            for dims in groupings:
                var = t.var(dim=dims, unbiased=False)
                rms = t.pow(2).mean(dim=dims).sqrt()
                spread = var.sqrt() / rms.clamp_min(1e-300)
                old = seen.get(name, [math.inf, math.inf])
                seen[name] = [min(old[0], float(var.min())), min(old[1], float(spread.min()))]
        return record

    for name, module in layers:
        handles.append(module.register_forward_pre_hook(hook(name, module)))
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def _eps_set(layers: list[tuple[str, nn.Module]], value: float) -> Iterator[None]:
    saved = [(m, name, getattr(m, name)) for _, m in layers if (name := _eps_name(m))]
    try:
        for m, name, _ in saved:
            setattr(m, name, value)
        yield
    finally:
        for m, name, eps in saved:
            setattr(m, name, eps)


def _judge_eps(
    norms: list[tuple[str, nn.Module]], variances: dict[str, list[float]], eps_explains: bool,
    max_eps: float, seen: str, promise: str, checked: str, x: torch.Tensor,
) -> bool:
    """Whether a scale-invariance difference is legitimate, given the normalisation layers.

    True (pass) when eps explains it and every eps is at most ``max_eps`` (a usual eps
    against a near-degenerate batch), or when a normalised channel is constant to float
    precision; raises naming the eps when an eps above ``max_eps`` explains it; False
    when eps does not explain it (the caller reports the difference itself).
    """
    if not norms:
        return False
    if eps_explains:
        big = [(n, m) for n, m in norms if _eps_of(m) > max_eps]
        if not big:
            return True
        layer, module = max(
            big, key=lambda nm: _eps_of(nm[1]) / max(variances.get(nm[0], [1.0])[0], 1e-300))
        var = variances.get(layer, [math.nan])[0]
        raise InvariantError(
            "scale invariance",
            f"{seen}, because of eps: {layer!r} has eps={_eps_of(module):g} against a smallest batch "
            f"variance of {_fmt(var)} (with every eps set to ~0 (1e-30) the outputs agree)",
            promise=promise,
            checked=f"{checked}; again with every normalisation layer's eps set to ~0; "
                    f"eps above max_eps={max_eps:g} is blamed",
            example=_describe(x),
            hint="BN divides by sqrt(var + eps); eps only guards against division by zero and must "
                 "be negligible against the batch variance (PyTorch's default is 1e-5). Pass eps= "
                 "where the layer is built, or raise max_eps if a large eps is intended",
        )
    return any(v[1] < 1e-3 for v in variances.values())  # rounding noise over a constant


def _eps_note(norms: list[tuple[str, nn.Module]]) -> str:
    return ("; the outputs differ with every normalisation layer's eps set to ~0 too, so eps "
            "is not the cause" if norms else "; no normalisation layer with an eps found")


@_check
def check_scale_invariance(
    fn: Fn,
    x: torch.Tensor | None = None,
    *,
    scales: Sequence[float] = (0.5, 2.0, 10.0),
    train_mode: bool | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    max_eps: float = 1e-3,
    seed: int = 0,
) -> None:
    """f(a * x) == f(x) for every positive ``a`` in ``scales`` (e.g. a normalisation layer).

    A normalisation's ``eps`` breaks the identity where the variance it divides by is
    not large against it; as in :func:`check_parameter_scale_invariance`, a difference
    that vanishes with every normalisation layer's ``eps`` set to ~0 passes when each
    ``eps`` is at most ``max_eps`` and is blamed on the largest ``eps`` otherwise.
    """
    x = _input_or_example(fn, x)
    if any(not a > 0 for a in scales):
        raise ValueError(f"scales: expected positive numbers, got {list(scales)}")
    norms = _norm_layers(fn) if isinstance(fn, nn.Module) else []

    def first_change() -> tuple[float, str, _Mismatch] | None:
        with _seeded(seed):
            base = _outputs(fn, x)
        for a in scales:
            with _seeded(seed):
                scaled = _outputs(fn, x * a)
            for (path, o), (_, s) in zip(base, scaled, strict=True):
                mm = _compare(s, o, atol, rtol)
                if mm is not None:
                    return a, path, mm
        return None

    with _preserved(fn, train_mode):
        with _batch_variances(norms) as variances:
            found = first_change()
        if found is None:
            return
        eps_free = None
        if norms:
            with _eps_set(norms, _NO_EPS):
                eps_free = first_change()
    a, path, mm = found if eps_free is None else eps_free
    seen = (f"f({a:g} * x) differs from f(x) by {_fmt(mm.diff)} at {mm.at(path)} "
            f"({_fmt(mm.expected)} -> {_fmt(mm.got)})")
    promise = "scaling the input by a positive factor leaves the output unchanged"
    checked = f"scales {list(scales)}, {_mode(train_mode)}, atol={atol:g}, rtol={rtol:g}"
    if _judge_eps(norms, variances, eps_free is None, max_eps, seen, promise, checked, x):
        return
    raise InvariantError(
        "scale invariance",
        seen,
        promise=promise,
        checked=checked + _eps_note(norms),
        example=_describe(x),
        hint="a bias or eps that does not scale with the input, or statistics that "
             "do not come from this input (running statistics in eval mode)",
    )


@_check
def check_parameter_scale_invariance(
    model: nn.Module,
    x: torch.Tensor | None = None,
    *,
    params: Iterable[str] | None = None,
    scales: Sequence[float] = (0.5, 2.0, 10.0),
    train_mode: bool | None = True,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    max_eps: float = 1e-3,
    seed: int = 0,
) -> None:
    """Scaling the named weights by a > 0 leaves the output unchanged: BN((aW)u) = BN(Wu).

    Ioffe & Szegedy 2015, Sec 3.3: a layer followed by batch normalisation is invariant to
    the scale of its weights, which holds with batch statistics (train mode, the default).
    ``params`` are parameter names (default: every weight matrix or kernel, i.e. every
    parameter called ``*weight`` with two or more dims). Each is scaled in turn and restored.

    The identity is exact only for ``eps = 0``: BN divides by ``sqrt(var + eps)``, and
    where a channel's batch variance is not large against ``eps`` (a near-constant
    input, the kind hypothesis shrinks to) scaling W moves the output legitimately. So
    when outputs differ, the check runs again with every normalisation layer's ``eps``
    set to 0. If they then agree, ``eps`` is the whole cause: the check passes when every
    layer's ``eps`` is at most ``max_eps`` (PyTorch's default is 1e-5) and fails, naming
    the layer and its ``eps``, when one is larger. A batch whose normalised channel is
    constant to float precision (spread below 1e-3 of its size) cannot show the property
    either way and passes.
    """
    x = _input_or_example(model, x)
    named = dict(model.named_parameters())
    names = [n for n, p in named.items() if n.endswith("weight") and p.dim() >= 2] \
        if params is None else list(params)
    missing = [n for n in names if n not in named]
    if missing or not names:
        raise ValueError(f"params: expected names from {sorted(named)}, got {names}")
    norms = _norm_layers(model)

    def first_change() -> tuple[str, float, str, _Mismatch] | None:
        with _seeded(seed):
            base = _outputs(model, x)
        for name in names:
            p = named[name]
            original = p.detach().clone()
            for a in scales:
                with torch.no_grad():
                    p.mul_(a)
                try:
                    with _seeded(seed):
                        scaled = _outputs(model, x)
                finally:
                    with torch.no_grad():
                        p.copy_(original)
                for (path, o), (_, s) in zip(base, scaled, strict=True):
                    mm = _compare(s, o, atol, rtol)
                    if mm is not None:
                        return name, a, path, mm
        return None

    with _preserved(model, train_mode):
        with _batch_variances(norms) as variances:
            found = first_change()
        if found is None:
            return
        eps_free = None
        if norms:
            with _eps_set(norms, _NO_EPS):
                eps_free = first_change()
    name, a, path, mm = found if eps_free is None else eps_free
    promise = ("BN((aW)u) = BN(Wu): a layer followed by batch normalisation is invariant to "
               "the scale of its weights (Ioffe & Szegedy 2015, Sec 3.3)")
    checked = (f"params {names}, scales {list(scales)}, {_mode(train_mode)}, atol={atol:g}, "
               f"rtol={rtol:g}")
    seen = (f"scaling {name!r} by {a:g} changed {mm.at(path)} by {_fmt(mm.diff)} "
            f"({_fmt(mm.expected)} -> {_fmt(mm.got)})")
    if _judge_eps(norms, variances, eps_free is None, max_eps, seen, promise, checked, x):
        return
    raise InvariantError(
        "scale invariance",
        seen,
        promise=promise,
        checked=checked + _eps_note(norms),
        example=_describe(x),
        hint="is the scaled layer followed by a normalisation that divides by the batch standard "
             "deviation? a bias added after the normalisation, a branch that skips it (a "
             "shortcut without BatchNorm) or running statistics (eval mode) break the invariance",
    )


# --------------------------------------------------------------- values and outputs


def _values(obj: Any, x: Any, name: str | None) -> list[tuple[str, torch.Tensor]]:
    if callable(obj) and not isinstance(obj, torch.Tensor):
        if x is None and isinstance(obj, nn.Module):
            x = example_input(obj)
        if x is None:
            raise ValueError("expected an input x to call the function with")
        args = x if isinstance(x, tuple) else (x,)
        return [(p.replace("output", name or "output", 1), t) for p, t in _outputs(obj, *args)]
    flat = _flatten(obj, name or "value")
    if not flat:
        raise TypeError(f"expected a tensor or a tuple/list/dict of tensors, got {type(obj).__name__}")
    return [(p, t.detach()) for p, t in flat]


def _scaled(x: Any, a: float) -> Any:
    """``x`` with every floating-point tensor multiplied by ``a`` (integer inputs unchanged)."""
    if isinstance(x, tuple):
        return tuple(_scaled(t, a) for t in x)
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        return x * a
    return x


def _is_scalable(x: Any) -> bool:
    items = x if isinstance(x, tuple) else (x,)
    return any(isinstance(t, torch.Tensor) and t.is_floating_point() for t in items)


@_check
def check_finite(
    obj: Any, x: Any = None, *, name: str | None = None, scales: Sequence[float] = (1.0, 1e3),
) -> None:
    """Every value is finite: no NaN, no +-Inf; a single bad element is enough to fail.

    ``obj`` is a tensor (or a tuple/list/dict of tensors), or a model/function which is
    called on ``x`` and its outputs checked. A model or function is called on ``x``
    multiplied by each of ``scales`` (floating-point inputs only; token ids stay as they
    are): the default ``(1.0, 1e3)`` also feeds inputs a thousand times larger, where an
    ``exp`` without max-subtraction (a hand-written softmax) overflows while every
    stable float32 computation stays finite. Pass ``scales=(1.0,)`` for a model whose
    valid inputs are bounded. The first non-finite element is reported by index
    (torchtest's ``isfinite(t).any()`` passes if *one* value is finite; this uses
    ``.all()``).
    """
    is_fn = callable(obj) and not isinstance(obj, torch.Tensor)
    if is_fn and x is None and isinstance(obj, nn.Module):
        x = example_input(obj)
    factors = list(scales) if is_fn and _is_scalable(x) else [1.0]
    for a in factors:
        xa = _scaled(x, a) if a != 1.0 else x
        for path, t in _values(obj, xa, name):
            if not (t.is_floating_point() or t.is_complex()):
                continue
            finite = torch.isfinite(t)
            if bool(finite.all()):
                continue
            flat = int(torch.argmin(finite.reshape(-1).to(torch.uint8)))
            index = _unravel(flat, t.shape)
            value = t.reshape(-1)[flat].item()
            bad = int((~finite).sum())
            shown = xa if not isinstance(xa, tuple) else xa[0]
            raise InvariantError(
                "finite values",
                f"{path}{_idx(index)} is {value} ({bad} non-finite of {t.numel()} values)"
                + (f" for the input multiplied by {a:g}" if a != 1.0 else ""),
                promise="every value is a finite number" + (
                    ", for large inputs too" if len(factors) > 1 else ""),
                checked=f"{path}: shape {tuple(t.shape)}, {str(t.dtype).replace('torch.', '')}"
                        + (f"; inputs multiplied by {factors}" if len(factors) > 1 else ""),
                example=_describe(shown) if shown is not None else None,
                hint="exp of a large number overflows (subtract the max before exp, or use "
                     "torch.softmax / log_softmax / logsumexp), log of 0 (clamp(min=eps)), "
                     "division by zero (a variance or norm of a constant input), or a learning "
                     "rate that makes training diverge",
            )


def check_outputs_finite(
    model: Fn, x: Any = None, *, name: str | None = None, scales: Sequence[float] = (1.0, 1e3),
) -> None:
    """``model(x)`` is finite everywhere, for ``x`` and ``1000 * x`` by default; see :func:`check_finite`."""
    if not callable(model) or isinstance(model, torch.Tensor):
        raise TypeError(f"expected a model or function to call, got {type(model).__name__}; "
                        "for tensors use check_finite(tensor)")
    check_finite(model, x, name=name, scales=scales)


@_check
def check_probabilities(
    obj: Any,
    x: Any = None,
    *,
    dim: int = -1,
    atol: float = 1e-6,
    sum_atol: float = 1e-4,
    name: str | None = None,
) -> None:
    """Values lie in [0, 1] and sum to 1 along ``dim`` (a softmax output, a class distribution).

    ``obj`` is a tensor or a model/function called on ``x`` (its first output is checked).
    """
    path, p = _values(obj, x, name or "probabilities")[0]
    check_finite(p, name=path)
    pd = p.to(torch.float64)
    outside = (pd < -atol) | (pd > 1 + atol)
    if bool(outside.any()):
        flat = int(torch.argmax(outside.reshape(-1).to(torch.uint8)))
        index = _unravel(flat, p.shape)
        raise InvariantError(
            "probabilities",
            f"{path}{_idx(index)} is {_fmt(float(pd.reshape(-1)[flat]))}, outside [0, 1] "
            f"({int(outside.sum())} of {p.numel()} values outside)",
            promise="probabilities lie in [0, 1]",
            checked=f"{path}: shape {tuple(p.shape)}, tolerance {atol:g}",
            hint="returning logits or log-probabilities? apply torch.softmax (or sigmoid for "
                 "independent binary outputs) before returning probabilities",
        )
    sums = pd.sum(dim=dim)
    err = (sums - 1.0).abs()
    flat = int(torch.argmax(err.reshape(-1)))
    if float(err.reshape(-1)[flat]) > sum_atol:
        index = _unravel(flat, sums.shape)
        raise InvariantError(
            "probabilities",
            f"{path} sums to {_fmt(float(sums.reshape(-1)[flat]))} along dim {dim} at "
            f"{_idx(index)} (expected 1 ± {sum_atol:g})",
            promise=f"a distribution over dim {dim} sums to 1",
            checked=f"{path}: shape {tuple(p.shape)}, sums along dim {dim}",
            hint="softmax over the wrong dimension (dim=0 normalises over the batch)? sigmoid "
                 "per class instead of softmax? or pass the dim that holds the classes",
        )


@_check
def check_gradients(
    fn: Fn,
    *inputs: torch.Tensor,
    wrt: str = "all",
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    max_entries: int = 16,
    seed: int = 0,
) -> None:
    """Autograd's gradients match central finite differences, in float64.

    ``fn`` (a module or function) runs on a float64 copy of itself and of ``inputs``
    (default for a module: a batch of 2 from :func:`example_input`; integer inputs such as
    token ids stay as they are). Gradients of ``sum(w * fn(inputs))``, for fixed random
    weights ``w``, are compared with ``(f(v + eps) - f(v - eps)) / (2 eps)`` for up to
    ``max_entries`` entries of each input (``wrt="inputs"``), each parameter
    (``"params"``) or both (``"all"``). A module is checked in eval mode, so dropout is off.
    Where the model casts down on purpose (``softmax(..., dtype=torch.float32)``,
    ``x.to(torch.float32)``, ``.float()``, as transformers' attention and RMSNorms do),
    the cast is kept in float64, so float32 rounding is not taken for a wrong backward.
    The worst entry beyond ``atol + rtol * |numeric|`` is reported.
    """
    if wrt not in ("all", "inputs", "params"):
        raise ValueError(f"wrt: expected 'all', 'inputs' or 'params', got {wrt!r}")
    if isinstance(fn, nn.Module):
        f: Fn = copy.deepcopy(fn).double().eval()
        if not inputs:
            inputs = (example_input(fn, batch=2, length=4, seed=seed),)
    else:
        f = fn
        if not inputs:
            raise ValueError("expected inputs for a plain function: check_gradients(fn, x)")
    xs = tuple(t.detach().to(torch.float64).requires_grad_(True)
               if isinstance(t, torch.Tensor) and t.is_floating_point() else t for t in inputs)
    targets: list[tuple[str, torch.Tensor]] = []
    if wrt in ("all", "inputs"):
        targets += [(f"input {k}", t) for k, t in enumerate(xs)
                    if isinstance(t, torch.Tensor) and t.requires_grad]
    if wrt in ("all", "params") and isinstance(f, nn.Module):
        targets += [(f"parameter {n!r}", p) for n, p in f.named_parameters() if p.requires_grad]
    if not targets:
        raise ValueError("nothing to differentiate: expected a floating-point input or parameter")
    return _gradient_check(f, xs, inputs, targets, wrt, eps, atol, rtol, max_entries, seed)


def _listed(labels: list[str], limit: int = 6, *, last: bool = False) -> str:
    """Up to ``limit`` labels: the first ones, or with ``last`` the last ones."""
    names = [lb.replace("parameter ", "") for lb in labels]
    if len(names) <= limit:
        return ", ".join(names)
    if last:
        return f"{len(names) - limit} more, then " + ", ".join(names[-limit:])
    return ", ".join(names[:limit]) + f" and {len(names) - limit} more"


_LOW_FLOATS = (torch.float32, torch.float16, torch.bfloat16)
_TO_FLOAT64 = {torch.Tensor.float, torch.Tensor.half, torch.Tensor.bfloat16}


class _KeepFloat64(torch.overrides.TorchFunctionMode):
    """Keeps a float64 forward in float64 where the model casts down on purpose.

    Real models compute some steps in float32 whatever their dtype (transformers'
    attention runs ``softmax(..., dtype=torch.float32)``, RMSNorms cast to float32):
    finite differences through float32 rounding are noise, not a wrong backward. Every
    float32/16 dtype passed to a torch function becomes float64 and ``.float()``/
    ``.half()``/``.bfloat16()`` become ``.double()``; the casts seen are recorded.
    """

    def __init__(self) -> None:
        super().__init__()
        self.casts: dict[str, None] = {}

    def _swap(self, func: Any, v: Any) -> Any:
        if isinstance(v, torch.dtype) and v in _LOW_FLOATS:
            self.casts[f"{getattr(func, '__name__', func)}({str(v).replace('torch.', '')})"] = None
            return torch.float64
        return v

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
        kwargs = kwargs or {}
        if func in _TO_FLOAT64 and args and isinstance(args[0], torch.Tensor) \
                and args[0].is_floating_point():
            self.casts[f".{func.__name__}()"] = None
            return args[0].double()
        args = tuple(self._swap(func, a) for a in args)
        kwargs = {k: self._swap(func, v) for k, v in kwargs.items()}
        return func(*args, **kwargs)


def _gradient_check(
    f: Fn, xs: tuple[Any, ...], inputs: tuple[Any, ...], targets: list[tuple[str, torch.Tensor]],
    wrt: str, eps: float, atol: float, rtol: float, max_entries: int, seed: int,
) -> None:
    g = torch.Generator().manual_seed(seed)
    _reseed(seed)
    keep = _KeepFloat64()
    with keep:
        outs = [o for _, o in _flatten(f(*xs)) if o.is_floating_point()]
    weights = [torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.device) for o in outs]

    def scalar() -> torch.Tensor:
        _reseed(seed)
        with keep:
            flat = [o for _, o in _flatten(f(*xs)) if o.is_floating_point()]
        return sum(((o * w).sum() for o, w in zip(flat, weights, strict=True)),
                   torch.zeros((), dtype=torch.float64, device=weights[0].device if weights else None))

    grads = torch.autograd.grad(scalar(), [t for _, t in targets], allow_unused=True)
    worst: tuple[float, str, tuple[int, ...], float, float] | None = None
    wrong: list[str] = []
    with torch.no_grad():
        for (label, t), grad in zip(targets, grads, strict=True):
            analytic = torch.zeros_like(t) if grad is None else grad
            n = t.numel()
            picks = range(n) if n <= max_entries else \
                torch.randperm(n, generator=g)[:max_entries].sort().values.tolist()
            flat_t = t.view(-1)
            for k in picks:
                old = float(flat_t[k])
                flat_t[k] = old + eps
                plus = float(scalar())
                flat_t[k] = old - eps
                minus = float(scalar())
                flat_t[k] = old
                numeric = (plus - minus) / (2 * eps)
                a = float(analytic.reshape(-1)[k])
                excess = abs(a - numeric) - (atol + rtol * abs(numeric))
                if not excess <= 0:
                    if label not in wrong:
                        wrong.append(label)
                    if worst is None or not excess <= worst[0]:
                        worst = (excess, label, _unravel(k, t.shape), a, numeric)
    if worst is None:
        return
    _, label, index, a, numeric = worst
    right = [lb for lb, _ in targets if lb not in wrong]
    where = (f"; wrong for {_listed(wrong, last=True)}; right for {_listed(right)} (a faulty backward sits "
             "between the last wrong and the first right parameter along the forward pass)"
             if right else f"; wrong for all {len(wrong)} tensors")
    raise InvariantError(
        "gradient check",
        f"d/d {label}{_idx(index)}: autograd gives {_fmt(a)}, finite differences give "
        f"{_fmt(numeric)} (off by {_fmt(abs(a - numeric))}){where}",
        promise="backward() computes the derivative of forward()",
        checked=f"float64, central differences with eps={eps:g}, up to {max_entries} entries per "
                f"tensor, atol={atol:g}, rtol={rtol:g}, wrt={wrt!r}"
                + (f"; the model's casts to lower precision kept in float64: {_listed(list(keep.casts))}"
                   if keep.casts else ""),
        example=", ".join(_describe(t) for t in inputs),
        hint="a custom torch.autograd.Function whose backward is wrong, a .detach()/.data/.item() "
             "that cuts the graph, or an in-place change of a tensor autograd saved; at a kink "
             "(relu at 0, ties in max) finite differences disagree, so try other inputs",
    )


@_check
def check_eval_deterministic(model: nn.Module, x: torch.Tensor | None = None, *, seed: int = 0) -> None:
    """Two forward passes in eval mode give bit-identical outputs (dropout is off).

    The two passes run under different seeds, so anything random left on shows up.
    """
    x = _input_or_example(model, x)
    with _preserved(model, False):
        with _seeded(seed):
            first = _outputs(model, x)
        with _seeded(seed + 1):
            second = _outputs(model, x)
    for (path, a), (_, b) in zip(first, second, strict=True):
        mm = _compare(b, a, 0.0, 0.0)
        if mm is not None:
            raise InvariantError(
                "eval-mode determinism",
                f"two forward passes in eval mode differ at {mm.at(path)}: {_fmt(mm.expected)} "
                f"then {_fmt(mm.got)}",
                promise="in eval mode the model is a deterministic function (dropout and noise "
                        "are off)",
                checked="two forward passes on the same input after model.eval(), bit for bit",
                example=_describe(x),
                hint="something random runs in eval mode: F.dropout(x, p) defaults to "
                     "training=True (pass training=self.training or use nn.Dropout), or "
                     "forward() calls torch.randn / rand / randn_like / bernoulli / multinomial; "
                     "sample noise only when self.training is True",
            )


@_check
def check_state_dict_roundtrip(
    model: nn.Module,
    make_model: Callable[[], nn.Module],
    x: torch.Tensor | None = None,
    *,
    atol: float = 0.0,
    rtol: float = 0.0,
    seed: int = 0,
) -> None:
    """Saving ``model.state_dict()`` and loading it into ``make_model()`` gives identical outputs.

    The state dict goes through ``torch.save`` to memory and ``torch.load(weights_only=True)``
    and is loaded strictly; both models are compared in eval mode, bit for bit by default.
    """
    x = _input_or_example(model, x)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    with _seeded(seed):
        fresh = make_model()
    param = next(iter(model.parameters()), None)
    if param is not None:
        fresh = fresh.to(param.device)
    checked = "torch.save(model.state_dict()) -> torch.load -> make_model().load_state_dict"
    try:
        fresh.load_state_dict(torch.load(buffer, weights_only=True))
    except RuntimeError as err:
        raise InvariantError(
            "state-dict round trip",
            f"the saved state dict does not load into a fresh model: {str(err).splitlines()[0]}",
            promise="a model's state dict restores it exactly",
            checked=checked,
            hint="does make_model() build the same architecture (same sizes, same layer names)?",
        ) from err
    with _preserved(model, False), _preserved(fresh, False):
        with _seeded(seed):
            a = _outputs(model, x)
        with _seeded(seed):
            b = _outputs(fresh, x)
    for (path, o), (_, r) in zip(a, b, strict=True):
        mm = _compare(r, o, atol, rtol)
        if mm is not None:
            raise InvariantError(
                "state-dict round trip",
                f"the reloaded model's {mm.at(path)} is {_fmt(mm.got)}, the original's "
                f"{_fmt(mm.expected)} (off by {_fmt(mm.diff)})",
                promise="a model's state dict restores it exactly",
                checked=f"{checked}, outputs in eval mode, atol={atol:g}, rtol={rtol:g}",
                example=_describe(x),
                hint="a tensor kept as a plain attribute (self.mean = ...) is not saved: register "
                     "it with self.register_buffer('mean', tensor); state set outside "
                     "parameters and buffers (a Python float, a list) is lost too",
            )


# ---------------------------------------------------------------------- training checks


def training_step(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float = 0.1,
) -> Callable[[], float]:
    """A zero-argument callable that takes one optimiser step on ``(x, y)`` and returns the loss.

    The loss defaults to cross-entropy for integer ``y`` and mean squared error otherwise.
    Without an ``optimizer`` the step is plain gradient descent with learning rate ``lr``
    over the trainable parameters (what ``torch.optim.SGD(params, lr)`` does, without
    torch's one-off ``torch._dynamo`` import that the first ``torch.optim`` optimiser of
    a process costs; see :func:`warm_up`). The loss returned is the one computed before
    the step.
    """
    if loss_fn is None:
        loss_fn = nn.functional.cross_entropy if not y.is_floating_point() else nn.functional.mse_loss
    if optimizer is not None:
        opt = optimizer

        def step() -> float:
            opt.zero_grad()
            loss = _differentiable(loss_fn(model(x), y), model)
            loss.backward()
            opt.step()
            return float(loss.detach())

        return step
    params = [p for p in model.parameters() if p.requires_grad]

    def sgd_step() -> float:
        for p in params:
            p.grad = None
        loss = _differentiable(loss_fn(model(x), y), model)
        loss.backward()
        _sgd(params, lr)
        return float(loss.detach())

    return sgd_step


def _differentiable(loss: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """``loss``, or an InvariantError when no trainable parameter reaches it."""
    if isinstance(loss, torch.Tensor) and loss.requires_grad:
        return loss
    trainable = sum(p.requires_grad for p in model.parameters())
    raise InvariantError(
        "training step",
        f"the loss ({_fmt(float(loss))}) does not depend on any trainable parameter of "
        f"{type(model).__name__} ({trainable} of {len(list(model.parameters()))} parameter "
        "tensors have requires_grad=True)",
        promise="a training step differentiates the loss with respect to the model's parameters",
        checked="loss_fn(model(x), y).requires_grad",
        hint="every parameter frozen (requires_grad=False)? the forward pass run under "
             "torch.no_grad(), or its output cut with .detach() / .item() / .numpy()?",
    )


def _sgd(params: Iterable[torch.Tensor], lr: float) -> None:
    """One plain gradient-descent update, in place (torch.optim.SGD without momentum)."""
    with torch.no_grad():
        for p in params:
            if p.grad is not None:
                p.add_(p.grad, alpha=-lr)


def _loss(value: Any, k: int) -> float:
    try:
        return float(value.detach() if isinstance(value, torch.Tensor) else value)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"step {k}: expected step() to return the loss as a number or a "
                        f"one-element tensor, got {type(value).__name__}") from err


@_check
def check_parameters_update(
    model: nn.Module,
    step: Callable[[], Any],
    *,
    allow_unchanged: Iterable[str] = (),
    seed: int = 0,
) -> None:
    """After one call of ``step()`` every trainable parameter changed and every frozen one did not.

    A parameter is frozen when ``requires_grad`` is False. ``allow_unchanged`` names
    trainable parameters that may legitimately stay put (e.g. unused in this batch).
    ``step()`` trains ``model`` for real.
    """
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    with _seeded(seed):
        step()
    after = dict(model.named_parameters())
    frozen_moved, stuck = [], []
    for name, old in before.items():
        p = after[name]
        mm = _compare(p.detach(), old, 0.0, 0.0)
        if not p.requires_grad and mm is not None:
            frozen_moved.append((name, mm))
        elif p.requires_grad and mm is None and name not in set(allow_unchanged):
            stuck.append(name)
    n_trainable = sum(p.requires_grad for p in after.values())
    checked = (f"one call of step() on {type(model).__name__} with {n_trainable} trainable and "
               f"{len(after) - n_trainable} frozen parameter tensors")
    if frozen_moved:
        name, mm = frozen_moved[0]
        raise InvariantError(
            "frozen parameters",
            f"frozen parameter {name!r} changed by {_fmt(mm.diff)} at {_idx(mm.index)} "
            f"({_fmt(mm.expected)} -> {_fmt(mm.got)}); frozen and moved: "
            f"{[n for n, _ in frozen_moved]}",
            promise="parameters with requires_grad=False stay fixed during training",
            checked=checked,
            hint="a frozen parameter still moves when it has a stale .grad (zero_grad("
                 "set_to_none=False), or requires_grad switched off after a backward) and the "
                 "optimiser applies weight decay or momentum to it; build the optimiser from "
                 "[p for p in model.parameters() if p.requires_grad]",
        )
    if stuck:
        raise InvariantError(
            "parameter update",
            f"{len(stuck)} trainable parameter tensor(s) did not change after one step: {stuck}",
            promise="one optimiser step changes every trainable parameter",
            checked=checked,
            hint="does the optimiser hold this model's parameters (a model rebuilt after the "
                 "optimiser was created)? lr=0? is the loss cut from the graph (.item(), "
                 ".detach(), torch.no_grad())? is the parameter used in forward()?",
        )


@_check
def check_loss_decreases(
    step: Callable[[], Any],
    *,
    steps: int = 5,
    min_decrease: float = 0.0,
    seed: int = 0,
) -> list[float]:
    """The loss returned by ``step()`` goes down over ``steps`` calls; returns the losses.

    Passes when every loss is finite and the last is below the first by more than
    ``min_decrease`` (relative: ``last < first * (1 - min_decrease)``).
    """
    if steps < 2:
        raise ValueError(f"steps: expected at least 2, got {steps}")
    losses: list[float] = []
    with _seeded(seed):
        for k in range(steps):
            losses.append(_loss(step(), k))
    shown = ", ".join(_fmt(v) for v in losses)
    bad = [k for k, v in enumerate(losses) if not math.isfinite(v)]
    if bad:
        raise InvariantError(
            "loss decrease",
            f"the loss at step {bad[0]} is {losses[bad[0]]} (losses: {shown})",
            promise="training lowers the loss",
            checked=f"{steps} calls of step()",
            hint="the learning rate is too high (training diverged), or the loss takes log(0)",
        )
    if not losses[-1] < losses[0] * (1 - min_decrease):
        raise InvariantError(
            "loss decrease",
            f"the loss went from {_fmt(losses[0])} to {_fmt(losses[-1])} in {steps} steps "
            f"(losses: {shown})",
            promise="training lowers the loss",
            checked=f"{steps} calls of step(), required last < first * (1 - {min_decrease:g})",
            hint="lr=0 or tiny? optimizer.zero_grad() missing (gradients pile up)? the optimiser "
                 "built over another model's parameters? the loss detached from the model?",
        )
    return losses


@_check
def check_can_overfit(
    step: Callable[[], Any],
    *,
    max_steps: int = 300,
    target_loss: float = 0.05,
    patience: int | None = 100,
    seed: int = 0,
) -> tuple[int, float]:
    """Repeated ``step()`` on one small batch drives the loss below ``target_loss``.

    A model that cannot memorise a handful of examples has a bug. Gives up early when
    the best loss has not dropped by 0.1 % of itself in ``patience`` steps (a loss stuck
    on a floor, e.g. log 2 for a softmax over the wrong dimension; ``None`` always runs
    ``max_steps``). Returns ``(steps taken, final loss)``.
    """
    best, best_k, loss, k = math.inf, -1, math.inf, -1
    stalled = False
    with _seeded(seed):
        for k in range(max_steps):
            loss = _loss(step(), k)
            if loss < best * (1 - 1e-3) or best == math.inf:
                best_k = k
            best = min(best, loss)
            if loss <= target_loss:
                return k + 1, loss
            if patience is not None and k - best_k >= patience:
                stalled = True
                break
    taken = k + 1
    why = f", no progress in the last {patience} steps" if stalled else ""
    raise InvariantError(
        "overfit one batch",
        f"after {taken} steps the loss is {_fmt(loss)} (best {_fmt(best)}, reached by step "
        f"{best_k}{why}), expected <= {target_loss:g}",
        promise="a model with enough capacity memorises one small batch",
        checked=f"up to {max_steps} calls of step() on the same batch, patience {patience}",
        hint="are the labels shuffled separately from the inputs, or redrawn each step? a softmax "
             "before CrossEntropyLoss (it expects logits), or over the wrong dimension? learning "
             "rate too small, or the model too small for the batch?",
    )


@_check
def check_deterministic(
    make_model: Callable[[], nn.Module],
    train: Callable[[nn.Module], Any] | None = None,
    x: torch.Tensor | None = None,
    *,
    random_forward: bool = False,
    seed: int = 0,
) -> None:
    """Two runs under the same seed give bit-identical trained weights and outputs, and the
    trained model's eval-mode output does not depend on the random number generators.

    Each run, under ``reprokit.seeding.seeded(seed)``, builds ``make_model()``, calls
    ``train(model)`` (which trains it in place for a few steps; default: 3 plain SGD steps
    on the mean square of the outputs for ``x``) and records the state dict and the
    eval-mode output for ``x``. Seeding makes even an unseeded ``torch.randn`` inside
    ``forward()`` repeat, so the first run's model also answers ``x`` once more with the
    global generators in another state: an eval-mode output that changes is randomness
    in ``forward()`` that nobody seeded on purpose. Pass ``random_forward=True`` for a
    model that samples at inference by design (a VAE decoder, a sampler).
    """
    if x is None:
        with _seeded(seed):
            x = example_input(make_model(), seed=seed)

    def default_train(model: nn.Module) -> None:
        params = [p for p in model.parameters() if p.requires_grad]
        for _ in range(3):
            for p in params:
                p.grad = None
            sum(o.pow(2).mean() for _, o in _flatten(model(x)) if o.is_floating_point()).backward()
            _sgd(params, 0.01)

    def run(rerun: bool) -> tuple[dict[str, torch.Tensor], list[tuple[str, torch.Tensor]],
                                  list[tuple[str, torch.Tensor]] | None]:
        with _seeded(seed):
            model = make_model()
            (train or default_train)(model)
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            with _preserved(model, False):
                out = _outputs(model, x)
                again = None
                if rerun:
                    _reseed(seed + 1)
                    again = _outputs(model, x)
        return state, out, again

    (s1, o1, o_other), (s2, o2, _) = run(not random_forward), run(False)
    checked = (f"two runs of make_model() + {'train(model)' if train else '3 default SGD steps'} "
               f"under seed {seed}, bit for bit")
    hint = ("something draws random numbers outside the seeded global generators: "
            "np.random.default_rng() or torch.Generator() without a seed, random.Random(), the "
            "time or os.urandom; or a non-deterministic kernel (run "
            "torch.use_deterministic_algorithms(True) to find it)")
    promise = "the same seed gives the same trained weights and the same outputs"
    for key in s1:
        if key not in s2 or s1[key].shape != s2[key].shape:
            raise InvariantError("determinism", f"state-dict entry {key!r} differs in shape or "
                                 "is missing in the second run", promise=promise, checked=checked,
                                 hint=hint)
        mm = _compare(s2[key], s1[key], 0.0, 0.0)
        if mm is not None:
            raise InvariantError(
                "determinism",
                f"trained weight {key!r} differs between two runs with seed {seed}: by "
                f"{_fmt(mm.diff)} at {_idx(mm.index)} ({_fmt(mm.expected)} vs {_fmt(mm.got)})",
                promise=promise, checked=checked, example=_describe(x), hint=hint,
            )
    for (path, a), (_, b) in zip(o1, o2, strict=True):
        mm = _compare(b, a, 0.0, 0.0)
        if mm is not None:
            raise InvariantError(
                "determinism",
                f"{mm.at(path)} differs between two runs with seed {seed}: "
                f"{_fmt(mm.expected)} vs {_fmt(mm.got)}",
                promise=promise, checked=checked, example=_describe(x), hint=hint,
            )
    if o_other is None:
        return
    for (path, a), (_, b) in zip(o1, o_other, strict=True):
        mm = _compare(b, a, 0.0, 0.0)
        if mm is not None:
            raise InvariantError(
                "determinism",
                f"the trained model's eval-mode {mm.at(path)} is {_fmt(mm.expected)} under seed "
                f"{seed} and {_fmt(mm.got)} with the random generators in another state: "
                "forward() draws random numbers in eval mode",
                promise="a trained model in eval mode is a function of its input and weights",
                checked=f"{checked}; then the first run's model, in eval mode, on the same input "
                        f"after re-seeding with {seed + 1}",
                example=_describe(x),
                hint="torch.randn / rand / randn_like / bernoulli / multinomial (or F.dropout "
                     "without training=self.training) inside forward() runs in eval mode: sample "
                     "only when self.training is True, or pass random_forward=True if sampling "
                     "at inference is intended",
            )
