"""Property checks a grader runs against a student's function, independent of any paper.

Each check calls the student's function only with plain arguments (numbers, lists,
NumPy arrays, torch tensors), reads every result through :mod:`reprokit.plain`, and on
failure raises :class:`PropertyError` (an ``AssertionError``) whose message says what
the method promises, the smallest input that broke it, and the numbers seen. Otter
prints only ``str(exception)``, so every message stands on its own.

Randomised checks use hypothesis with ``derandomize=True``: a submission earns the same
verdict on every run, and a failure shrinks to a small example before it is reported.

* :func:`check_label_corruption` -- "each label, with probability p, is replaced by a
  class drawn uniformly from all K" (Zhang et al. 2017, Sec. 2 "partially corrupted
  labels"), and the usual contract of such a function (length, range, seeding).
* :func:`check_deterministic` -- the same call with the same seed gives the same result.
* :func:`check_agrees` -- a function agrees with a reference on given inputs.
* :func:`check_monotone_trend` -- a measured curve goes the promised way (Spearman's rho).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from reprokit.plain import UntrustedValue, as_array, plain

__all__ = [
    "PropertyError",
    "binomial_bound",
    "changed_fraction",
    "check_agrees",
    "check_deterministic",
    "check_label_corruption",
    "check_monotone_trend",
    "spearman",
]


class PropertyError(AssertionError):
    """A property of the method does not hold; the message names the smallest input seen."""


# ----------------------------------------------------------------------------- helpers


def binomial_bound(n: int, q: float, *, sigmas: float = 4.5, slack: float = 1.5) -> float:
    """Largest deviation of an observed fraction from ``q`` accepted for ``n`` Bernoulli(q) draws.

    ``sigmas`` standard deviations of a binomial proportion plus ``slack / n`` (one or two
    labels' worth), so tiny ``n`` and ``q`` near 0 or 1 never make a correct function fail.
    At 4.5 sigma a correct implementation fails one check in about 150 000.
    """
    if n <= 0:
        return math.inf
    return sigmas * math.sqrt(max(q * (1.0 - q), 0.0) / n) + slack / n


def changed_fraction(before: Any, after: Any) -> float:
    """Fraction of positions where two label vectors differ (both read through ``plain``)."""
    a = as_array(before, "labels before").reshape(-1)
    b = as_array(after, "labels after").reshape(-1)
    if a.shape != b.shape:
        raise PropertyError(f"cannot compare labels: {a.size} before, {b.size} after")
    return float(np.mean(a != b)) if a.size else 0.0


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); ``nan`` if either side is constant."""
    rx, ry = _ranks(np.asarray(xs, dtype=float)), _ranks(np.asarray(ys, dtype=float))
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(v: np.ndarray) -> np.ndarray:
    order = np.argsort(v, kind="stable")
    ranks = np.empty(len(v), dtype=float)
    ranks[order] = np.arange(len(v), dtype=float)
    for value in np.unique(v):  # ties share their average rank
        tied = v == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def _settings(max_examples: int):
    from hypothesis import HealthCheck, settings

    return settings(derandomize=True, database=None, deadline=None, max_examples=max_examples,
                    report_multiple_bugs=False, print_blob=False,
                    suppress_health_check=list(HealthCheck))


def _plain(x: Any, what: str) -> Any:
    """``plain(x)``, also accepting an exact ``OrderedDict`` (what ``state_dict()`` returns)."""
    if type(x) is OrderedDict:
        x = dict(OrderedDict.items(x))
    return plain(x, what)


def _call(fn: Callable, args: tuple, kwargs: dict, shown: str) -> Any:
    """Call a student's function; its own exception becomes a message naming the call."""
    try:
        return fn(*args, **kwargs)
    except PropertyError:
        raise
    except Exception as e:  # the student's code raised: say which call did it
        raise PropertyError(f"{shown} raised {type(e).__name__}: {e}") from e


def _run_property(prop: Callable[[], None]) -> None:
    """Run a hypothesis-wrapped property; hypothesis' own wrappers become a PropertyError."""
    from hypothesis.errors import Flaky

    try:
        prop()
    except PropertyError:
        raise
    except Flaky as e:
        raise PropertyError(
            "the function gave different answers to the same call (flaky): it probably draws "
            "from the global random generator instead of its own torch.Generator seeded with "
            f"`seed`. Details: {e}") from e
    except Exception as e:  # an ExceptionGroup (several failures at once): report the first
        inner = getattr(e, "exceptions", None)
        if not inner:
            raise
        first = inner[0]
        if isinstance(first, PropertyError):
            raise first from e
        raise PropertyError(f"{type(first).__name__}: {first}") from e


def _as_input(labels: np.ndarray, kind: str) -> Any:
    if kind == "tensor":
        import torch

        return torch.from_numpy(labels.astype(np.int64))
    if kind == "array":
        return labels.astype(np.int64)
    if kind == "list":
        return [int(v) for v in labels]
    raise ValueError(f"input_type must be 'tensor', 'array' or 'list', got {kind!r}")


def _labels_out(out: Any, n: int, num_classes: int, shown: str) -> np.ndarray:
    """Plain integer labels from a student's result, or a PropertyError saying what is wrong."""
    try:
        a = as_array(out, f"result of {shown}")
    except UntrustedValue as e:
        raise PropertyError(f"{e} (return the labels as a tensor, array or list of ints)") from None
    a = a.reshape(-1) if a.ndim <= 1 else a
    if a.ndim != 1:
        raise PropertyError(f"{shown} returned shape {a.shape}; expected one label per input "
                            f"(a 1-D vector of length {n})")
    if a.size != n:
        raise PropertyError(f"{shown} returned {a.size} labels for {n} inputs; the output must "
                            "have the same length as y")
    if a.dtype.kind not in "iu":
        if a.dtype.kind == "b" or (a.size and not np.all(np.isfinite(a))) or \
                (a.size and not np.all(a == np.round(a))):
            raise PropertyError(f"{shown} returned non-integer labels ({a.dtype}, e.g. "
                                f"{a[:5].tolist()}); labels are class indices 0..{num_classes - 1}")
        raise PropertyError(f"{shown} returned labels of dtype {a.dtype}; return integer class "
                            "indices (torch.long), which cross-entropy needs")
    if a.size and (a.min() < 0 or a.max() >= num_classes):
        bad = a[(a < 0) | (a >= num_classes)]
        raise PropertyError(f"{shown} returned labels outside 0..{num_classes - 1}: "
                            f"{sorted(set(bad.tolist()))[:5]} (a random class must be drawn "
                            f"from range({num_classes}), e.g. torch.randint(0, {num_classes}, ...))")
    return a.astype(np.int64)


def _make_labels(n: int, num_classes: int, label_seed: int, pattern: str) -> np.ndarray:
    if pattern == "constant":
        return np.full(n, label_seed % num_classes, dtype=np.int64)
    if pattern == "cycle":
        return (np.arange(n) % num_classes).astype(np.int64)
    return np.random.default_rng(label_seed).integers(0, num_classes, n).astype(np.int64)


# ----------------------------------------------------------------------------- checks


def check_label_corruption(
    corrupt: Callable[..., Any],
    *,
    num_classes: int = 10,
    max_examples: int = 25,
    seed: int = 0,
    max_n: int = 2000,
    sigmas: float = 4.5,
    input_type: str = "tensor",
) -> None:
    """Check ``corrupt(y, p, seed)`` against Sec. 2 of Zhang et al. (2017).

    The promise: each label independently, with probability ``p``, is replaced by a class
    drawn uniformly from all ``num_classes`` (it may land on its own class), so a fraction
    ``p * (1 - 1/K)`` of labels changes on average, in every part of the vector alike.
    Checked on fixed cases first, then on hypothesis-drawn ``(n, p, seed, labels)``:

    * the output has one integer label in ``0..K-1`` per input;
    * ``p = 0`` returns the labels unchanged, ``p = 1`` gives uniform classes, and the new
      class is uniform over all classes whatever the input labels are (all inputs one
      class, ``p = 0.5``: every class at rate ``p/K``);
    * the input ``y`` is not changed in place;
    * the same seed gives the same labels, whatever the global seeds of torch, NumPy and
      ``random`` are; different seeds give different labels (large n);
    * the changed fraction, overall and in each half of the vector, is within
      :func:`binomial_bound` (``sigmas`` sigma plus a one-label slack) of ``p (1 - 1/K)``.

    ``corrupt`` is called as ``corrupt(y, p, seed)`` with ``y`` a ``torch.long`` tensor
    (``input_type="array"`` or ``"list"`` pass a NumPy array or a list), ``p`` a float and
    ``seed`` an int. ``seed`` seeds the hypothesis search (the check is derandomized).
    Raises :class:`PropertyError` naming the smallest failing input and the numbers.
    """
    from hypothesis import example, given
    from hypothesis import strategies as st

    from reprokit.seeding import seeded

    K = num_classes
    expected_change = 1.0 - 1.0 / K

    def run(labels: np.ndarray, p: float, s: int) -> np.ndarray:
        shown = f"corrupt_labels(y=<{labels.size} labels>, p={p!r}, seed={s})"
        original = labels.copy()
        given = _as_input(labels, input_type)
        out = _call(corrupt, (given, p, s), {}, shown)
        if not np.array_equal(np.asarray(given).reshape(-1), original):
            raise PropertyError(f"{shown} changed its input y in place: return new labels and "
                                "leave the caller's y as it was")
        return _labels_out(out, labels.size, K, shown)

    def check_fraction(y: np.ndarray, out: np.ndarray, p: float, s: int, where: str) -> None:
        n = y.size
        q = p * expected_change
        seen = float(np.mean(out != y)) if n else 0.0
        bound = binomial_bound(n, q, sigmas=sigmas)
        if abs(seen - q) > bound:
            hint = ""
            if where != "overall":  # the whole vector passed, one half did not
                hint = (" -- labels are not corrupted independently: every position must be "
                        "replaced with probability p (not the first p*n positions)")
            elif p > 0 and abs(seen - p) < abs(seen - q):
                hint = (" -- about p itself: are replacements forced to a *different* class? "
                        "Sec. 2 draws from all K classes, so 1 in K lands on the true one")
            raise PropertyError(
                f"label corruption changed {seen:.3f} of the labels {where} for n={n}, p={p:.4g}, "
                f"seed={s}; Sec. 2 expects p*(1-1/K) = {q:.3f} (K={K}), accepted within "
                f"+-{bound:.3f}{hint}")

    # --- fixed cases: cheap, deterministic, and the clearest messages come first
    y = _make_labels(1000, K, 1, "random")
    out0 = run(y, 0.0, 0)
    if not np.array_equal(out0, y):
        raise PropertyError(f"with p=0 no label may change, but {int(np.sum(out0 != y))} of "
                            f"{y.size} changed (is p used as the probability of replacement?)")
    a, b = run(y, 0.5, 7), run(y, 0.5, 7)
    if not np.array_equal(a, b):
        raise PropertyError(
            f"the same call corrupt_labels(y, p=0.5, seed=7) twice gave different labels "
            f"({int(np.sum(a != b))} of {y.size} differ): draw with your own "
            "torch.Generator().manual_seed(seed), not the global random generator")
    # the labels follow from `seed` alone, not from a seed the caller set elsewhere
    with seeded(1):
        g1 = run(y, 0.5, 7)
    with seeded(2):
        g2 = run(y, 0.5, 7)
    if not np.array_equal(g1, g2):
        raise PropertyError(
            f"corrupt_labels(y, p=0.5, seed=7) gave other labels after torch.manual_seed(1) than "
            f"after torch.manual_seed(2) ({int(np.sum(g1 != g2))} of {y.size} differ): the "
            "labels must follow from `seed` alone, not from the global random state")
    c = run(y, 0.5, 8)
    if np.array_equal(a, c):
        raise PropertyError(f"seed=7 and seed=8 gave identical labels for n={y.size}, p=0.5: "
                            "the seed is ignored (seed your generator with `seed`)")
    check_fraction(y, a, 0.5, 7, "overall")
    ones = run(y, 1.0, 3)
    counts = np.bincount(ones, minlength=K)
    lo = y.size / K - sigmas * math.sqrt(y.size * (1 / K) * (1 - 1 / K)) - 1.5
    if counts.min() < lo:
        raise PropertyError(
            f"with p=1 every label should be a uniform draw from all {K} classes, but class "
            f"{int(counts.argmin())} appeared {int(counts.min())} times in {y.size} (expected about "
            f"{y.size // K}; counts {counts.tolist()})")
    # --- hypothesis: any n, p, seed and labels; shrinks to the smallest failing case
    @_settings(max_examples)
    @given(n=st.integers(1, max_n),
           p=st.one_of(st.sampled_from([0.0, 0.5, 1.0]), st.floats(0.0, 1.0)),
           s=st.integers(0, 2**31 - 1),
           label_seed=st.integers(0, 2**16),
           pattern=st.sampled_from(["random", "constant", "cycle"]))
    @example(n=max_n, p=1.0, s=0, label_seed=0, pattern="random")
    @example(n=max_n, p=0.5, s=1, label_seed=0, pattern="cycle")
    @example(n=max_n, p=1.0 - 1.0 / K, s=2, label_seed=1, pattern="random")  # widest gap if p is
    # misread as the fraction that changes: p (1 - 1/K) expected, p itself seen
    def prop(n: int, p: float, s: int, label_seed: int, pattern: str) -> None:
        y = _make_labels(n, K, label_seed ^ seed, pattern)
        out = run(y, p, s)
        if p == 0.0 and not np.array_equal(out, y):
            raise PropertyError(f"with p=0 no label may change, but {int(np.sum(out != y))} of "
                                f"{n} changed (n={n}, seed={s})")
        again = run(y, p, s)
        if not np.array_equal(out, again):
            raise PropertyError(f"the same call twice (n={n}, p={p:.4g}, seed={s}) gave different "
                                "labels: seed your own torch.Generator with `seed`")
        check_fraction(y, out, p, s, "overall")
        if n >= 200:
            half = n // 2
            check_fraction(y[:half], out[:half], p, s, "in the first half")
            check_fraction(y[half:], out[half:], p, s, "in the second half")

    _run_property(prop)
    # --- last (the checks above name the clearer cause when they fail): the new class is
    # uniform over ALL K classes whatever the labels are. With every input label the same
    # class, each other class appears at rate p/K; a draw from the classes present in y,
    # or from the first p*K classes, leaves some at 0
    same = np.full(2000, K - 1, dtype=np.int64)
    counts = np.bincount(run(same, 0.5, 5), minlength=K)
    for k in range(K):
        q = 0.5 / K + (0.5 if k == K - 1 else 0.0)
        if abs(counts[k] / same.size - q) > binomial_bound(same.size, q, sigmas=sigmas):
            raise PropertyError(
                f"with every input label {K - 1} and p=0.5, class {k} appeared {int(counts[k])} "
                f"times in {same.size}; expected about {q * same.size:.0f} (p/K for each class, "
                f"plus 1-p for the input's own): the new class is drawn uniformly from all {K} "
                f"classes, whatever the labels are (counts {counts.tolist()})")


def check_deterministic(fn: Callable[..., Any], *args: Any, what: str = "", **kwargs: Any) -> Any:
    """Call ``fn(*args, **kwargs)`` twice; the plain results must be identical. Returns one.

    Use it with a seed among the arguments: "the same call with the same seed gives the same
    result" is what lets anyone re-run an experiment and see the same numbers.
    """
    shown = what or f"{getattr(fn, '__name__', 'function')}({_describe(args, kwargs)})"
    first = _plain(_call(fn, args, kwargs, shown), f"result of {shown}")
    second = _plain(_call(fn, args, kwargs, shown), f"result of {shown}")
    diff = _difference(first, second, rtol=0.0, atol=0.0, path="result")
    if diff is not None:
        raise PropertyError(f"{shown} gave different results on two identical calls: {diff}. "
                            "Seed every random choice (initialisation, shuffling, corruption) "
                            "from the seed argument, e.g. with torch.Generator().manual_seed(seed)")
    return first


def check_agrees(
    student_fn: Callable[..., Any],
    reference_fn: Callable[..., Any],
    inputs: Iterable[Any],
    *,
    rtol: float = 1e-5,
    atol: float = 1e-8,
    what: str = "",
) -> None:
    """Every input gives the same plain result from ``student_fn`` and ``reference_fn``.

    An input is a ``tuple`` (positional arguments), a ``dict`` (keyword arguments) or any
    other value (the single argument). Numbers and arrays are compared with
    ``|a - b| <= atol + rtol |b|``; everything else exactly. On disagreement the error
    names the smallest failing input (fewest numbers), how many inputs failed, and the
    first difference.
    """
    failures: list[tuple[int, str, str]] = []
    total = 0
    name = what or getattr(student_fn, "__name__", "function")
    for item in inputs:
        total += 1
        args, kwargs = _split(item)
        shown = f"{name}({_describe(args, kwargs)})"
        expected = _plain(reference_fn(*args, **kwargs), "reference result")
        got = _plain(_call(student_fn, args, kwargs, shown), f"result of {shown}")
        diff = _difference(got, expected, rtol=rtol, atol=atol, path="result")
        if diff is not None:
            failures.append((_size(args, kwargs), shown, diff))
    if total == 0:
        raise ValueError("check_agrees needs at least one input")
    if failures:
        size, shown, diff = min(failures, key=lambda f: f[0])
        raise PropertyError(f"{len(failures)} of {total} inputs disagree with the reference "
                            f"(rtol={rtol:g}, atol={atol:g}); smallest: {shown}: {diff}")


def check_monotone_trend(
    xs: Any,
    ys: Any,
    direction: str = "increasing",
    *,
    min_spearman: float = 0.9,
    min_change: float = 0.0,
    what: str = "y",
) -> float:
    """``ys`` rises (or falls) with ``xs``: Spearman's rho at least ``min_spearman``. Returns rho.

    With five points rho = 0.9 allows one adjacent pair out of order, 1.0 none. ``min_change``
    also asks the last point (in x order) to exceed the first by that much in the promised
    direction, so a flat curve with noise cannot pass.
    """
    if direction not in ("increasing", "decreasing"):
        raise ValueError(f"direction must be 'increasing' or 'decreasing', got {direction!r}")
    x = as_array(xs, "xs", dtype=float).reshape(-1)
    y = as_array(ys, f"{what} values", dtype=float).reshape(-1)
    if x.size != y.size:
        raise PropertyError(f"{x.size} x values but {y.size} {what} values; give one per x")
    if x.size < 3:
        raise PropertyError(f"a trend needs at least 3 points, got {x.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise PropertyError(f"{what} values must be finite numbers, got {y.tolist()}")
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    sign = 1.0 if direction == "increasing" else -1.0
    rho = spearman(x, y)
    table = ", ".join(f"{a:g}: {b:.3f}" for a, b in zip(x, y, strict=True))
    if math.isnan(rho) or sign * rho < min_spearman - 1e-9:
        worst = np.argmin(sign * np.diff(y))
        raise PropertyError(
            f"{what} is not {direction} with x: Spearman rho = {rho:.2f}, needed "
            f"{'' if sign > 0 else '-'}{min_spearman:g} or {'more' if sign > 0 else 'less'}. "
            f"Points (x: {what}) {table}; the largest step the wrong way is from x={x[worst]:g} to "
            f"x={x[worst + 1]:g}. More data, seeds or epochs per point may steady the curve")
    if sign * (y[-1] - y[0]) < min_change:
        raise PropertyError(f"{what} changed by {y[-1] - y[0]:+.3f} from x={x[0]:g} to "
                            f"x={x[-1]:g}; expected a change of at least {sign * min_change:+g}. "
                            f"Points: {table}")
    return rho


# ----------------------------------------------------------------------------- comparison


def _split(item: Any) -> tuple[tuple, dict]:
    if type(item) is tuple:
        return item, {}
    if type(item) is dict:
        return (), dict(item)
    return (item,), {}


def _describe(args: tuple, kwargs: dict) -> str:
    parts = [_short(a) for a in args] + [f"{k}={_short(v)}" for k, v in kwargs.items()]
    return ", ".join(parts)


def _short(v: Any) -> str:
    shape = getattr(v, "shape", None)
    if shape is not None and len(shape) > 0:
        return f"<{type(v).__name__} of shape {tuple(shape)}>"
    if isinstance(v, (list, tuple)) and len(v) > 6:
        return f"<{type(v).__name__} of {len(v)} items>"
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _size(args: tuple, kwargs: dict) -> int:
    total = 0
    for v in list(args) + list(kwargs.values()):
        try:
            total += int(np.size(plain(v)))
        except (UntrustedValue, ValueError, TypeError):
            total += 1
    return total


def _difference(got: Any, expected: Any, *, rtol: float, atol: float, path: str) -> str | None:
    """First difference between two plain values, described in words; None if they agree."""
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return f"{path}: expected a dict, got {type(got).__name__}"
        if set(got) != set(expected):
            missing, extra = set(expected) - set(got), set(got) - set(expected)
            return f"{path}: keys differ (missing {sorted(map(str, missing))}, extra " \
                   f"{sorted(map(str, extra))})"
        for k in expected:
            d = _difference(got[k], expected[k], rtol=rtol, atol=atol, path=f"{path}[{k!r}]")
            if d:
                return d
        return None
    numeric = (int, float, bool, np.ndarray)
    if isinstance(expected, list) and not isinstance(got, np.ndarray):
        if not isinstance(got, list) or len(got) != len(expected):
            return f"{path}: expected a list of {len(expected)}, got {_short(got)}"
        for i, (g, e) in enumerate(zip(got, expected, strict=True)):
            d = _difference(g, e, rtol=rtol, atol=atol, path=f"{path}[{i}]")
            if d:
                return d
        return None
    if isinstance(expected, numeric) or isinstance(expected, list):
        if not isinstance(got, numeric + (list,)):
            return f"{path}: expected numbers, got {type(got).__name__}"
        try:
            g, e = np.asarray(got, dtype=float), np.asarray(expected, dtype=float)
        except (ValueError, TypeError):
            return f"{path}: cannot be read as numbers"
        if g.shape != e.shape:
            return f"{path}: shape {g.shape}, expected {e.shape}"
        bad = ~np.isclose(g, e, rtol=rtol, atol=atol, equal_nan=True)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            where = f"{path}{list(idx) if idx else ''}"
            return (f"{where} = {g[idx]!r}, expected {e[idx]!r} ({int(bad.sum())} of {bad.size} "
                    f"values differ, largest by {float(np.max(np.abs(g - e)[bad])):.3g})")
        return None
    if got != expected:
        return f"{path} = {_short(got)}, expected {_short(expected)}"
    return None
