"""A paper's claims as data (``paper.yaml``) and a verdict on a reproduced number.

The ``paper.yaml`` schema
-------------------------

.. code-block:: yaml

    paper:                        # required: the citation
      id: zhang2017-random-labels # required, letters/digits/-/_/.
      title: Understanding deep learning requires rethinking generalization  # required
      authors: [Chiyuan Zhang, Samy Bengio, ...]   # optional list of names
      year: 2017                  # optional whole number
      venue: ICLR                 # optional
      url: https://arxiv.org/abs/1611.03530        # optional
    time_budget_s: 60             # optional, seconds per notebook (> 0)
    claims:                       # required, a non-empty list
      - id: random-labels-memorised                # required, unique
        statement: An over-parameterised MLP reaches 100% training accuracy on random labels.
        source: "Table 1; Fig. 1a"                 # required: where the paper says it
        paper_value: 1.0          # optional: what the paper reports (number or text)
        expected: 1.0             # the value at the assignment's (digits) scale
        tolerance: 0.01           # the band: exactly one of
                                  #   tolerance: t        -> [expected - t, expected + t]
                                  #   interval: [lo, hi]  -> [lo, hi] (expected optional)
                                  #   relation: ">"       -> above expected (also >=, <, <=)
        level: 2                  # optional: a level or a list of levels (whole numbers >= 1)
        unit: accuracy            # optional

Unknown keys are errors (a typo such as ``tolerence`` would otherwise silently widen
nothing). Every error is a :class:`ClaimsError` that names the file and the key path,
for example ``paper.yaml: claims[2].tolerance: expected a number, got 'abc'``.

The verdict
-----------

:meth:`Claim.compare` takes one value or one value per seed. Every value goes through
:func:`reprokit.plain.as_float`, so only real numbers count (an object that claims to
equal everything is refused).

* One value: inside the band -> ``reproduced``; outside -> ``not reproduced``.
* Several values (seeds): the 95 % Student-t confidence interval of the mean,
  ``mean +- t(0.975, n-1) * std / sqrt(n)``, is compared with the band: entirely inside
  -> ``reproduced``; entirely outside -> ``not reproduced``; across an edge ->
  ``inconclusive`` (more seeds narrow the interval).
* A NaN or infinite value is ``not reproduced``.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from reprokit.plain import UntrustedValue, as_float, plain

__all__ = [
    "Claim",
    "ClaimsError",
    "Paper",
    "Verdict",
    "find_paper",
    "load_paper",
    "parse_paper",
]

PAPER_FILE = "paper.yaml"
RELATIONS = (">", ">=", "<", "<=")
Status = Literal["reproduced", "not reproduced", "inconclusive"]

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")

# Two-sided 95 % Student-t quantiles t(0.975, df) for df = 1..30.
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)


def t_quantile_975(df: int) -> float:
    """Student-t 97.5 % quantile (two-sided 95 %) for ``df`` degrees of freedom."""
    if df < 1:
        raise ValueError(f"df: expected at least 1 degree of freedom, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959964
    # Cornish-Fisher expansion around the normal quantile; error < 1e-3 for df > 30.
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


class ClaimsError(ValueError):
    """A ``paper.yaml`` is missing, unreadable or breaks the schema."""

    def __init__(self, path: str | Path, key: str, problem: str) -> None:
        self.path = str(path)
        self.key = key
        self.problem = problem
        where = f"{self.path}: {key}: " if key else f"{self.path}: "
        super().__init__(where + problem)


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Verdict:
    """The outcome of comparing a reproduced value (or one per seed) with a claim."""

    claim_id: str
    status: Status
    reason: str
    value: float
    mean: float
    std: float
    n: int
    ci: tuple[float, float]
    band: tuple[float, float]
    values: tuple[float, ...] = ()

    @property
    def reproduced(self) -> bool:
        """True only for status ``reproduced``."""
        return self.status == "reproduced"

    def __str__(self) -> str:
        return f"{self.claim_id}: {self.status}: {self.reason}"


def _fmt(x: float) -> str:
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.4g}"


@dataclass(frozen=True)
class Claim:
    """One claim of a paper with the band a reproduction must land in."""

    id: str
    statement: str
    source: str
    expected: float | None = None
    tolerance: float | None = None
    interval: tuple[float, float] | None = None
    relation: str | None = None
    paper_value: float | str | None = None
    levels: tuple[int, ...] = ()
    unit: str | None = None

    @property
    def band(self) -> tuple[float, float]:
        """The closed (or, for ``>``/``<``, open-ended) range of values that reproduce the claim."""
        if self.interval is not None:
            return self.interval
        assert self.expected is not None
        if self.tolerance is not None:
            return (self.expected - self.tolerance, self.expected + self.tolerance)
        if self.relation in (">", ">="):
            return (self.expected, math.inf)
        return (-math.inf, self.expected)

    def describe_band(self) -> str:
        """The band in words, e.g. ``1 ± 0.01 = [0.99, 1.01]`` or ``> 0.5``."""
        if self.interval is not None:
            return f"[{_fmt(self.interval[0])}, {_fmt(self.interval[1])}]"
        assert self.expected is not None
        if self.tolerance is not None:
            lo, hi = self.band
            return f"{_fmt(self.expected)} ± {_fmt(self.tolerance)} = [{_fmt(lo)}, {_fmt(hi)}]"
        return f"{self.relation} {_fmt(self.expected)}"

    def _inside(self, x: float) -> bool:
        lo, hi = self.band
        if self.relation == ">":
            return x > lo
        if self.relation == "<":
            return x < hi
        return lo <= x <= hi

    def _below(self, x: float) -> bool:
        """True when ``x`` lies on the low side outside the band."""
        lo, _ = self.band
        return x <= lo if self.relation == ">" else x < lo

    def _above(self, x: float) -> bool:
        _, hi = self.band
        return x >= hi if self.relation == "<" else x > hi

    def compare(self, value: Any) -> Verdict:
        """Compare one value, or one value per seed, with this claim's band.

        ``value`` may be a number, a 0-d/1-element array or tensor, or a list, tuple,
        1-d array or tensor of numbers (one per seed). See the module docstring for the
        rule; :attr:`Verdict.reason` explains the outcome with the numbers.
        """
        values = _as_values(value, self.id)
        n = len(values)
        band = self.band
        band_text = self.describe_band()
        source = f" (paper: {self.paper_value!r}, {self.source})" if self.paper_value is not None \
            else f" ({self.source})"
        if not all(math.isfinite(v) for v in values):
            bad = next(v for v in values if not math.isfinite(v))
            return Verdict(self.id, "not reproduced",
                           f"got a non-finite value ({bad}); expected {band_text}{source}. "
                           "Check for a diverged training run (learning rate too high?).",
                           bad, bad, math.nan, n, (bad, bad), band, tuple(values))
        mean = math.fsum(values) / n
        if n == 1:
            v = values[0]
            if self._inside(v):
                return Verdict(self.id, "reproduced",
                               f"{_fmt(v)} lies within {band_text}{source}",
                               v, v, 0.0, 1, (v, v), band, tuple(values))
            side = "below" if self._below(v) else "above"
            return Verdict(self.id, "not reproduced",
                           f"{_fmt(v)} lies {side} {band_text}{source}",
                           v, v, 0.0, 1, (v, v), band, tuple(values))
        std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
        half = t_quantile_975(n - 1) * std / math.sqrt(n)
        ci = (mean - half, mean + half)
        summary = (f"mean {_fmt(mean)} ± {_fmt(std)} (std over n={n} seeds; "
                   f"95% CI [{_fmt(ci[0])}, {_fmt(ci[1])}])")
        if self._inside(ci[0]) and self._inside(ci[1]):
            return Verdict(self.id, "reproduced", f"{summary} lies within {band_text}{source}",
                           mean, mean, std, n, ci, band, tuple(values))
        if self._below(ci[1]) or self._above(ci[0]):
            side = "below" if self._below(ci[1]) else "above"
            return Verdict(self.id, "not reproduced",
                           f"{summary} lies entirely {side} {band_text}{source}",
                           mean, mean, std, n, ci, band, tuple(values))
        return Verdict(self.id, "inconclusive",
                       f"{summary} straddles the edge of {band_text}{source}; "
                       "run more seeds to narrow the interval",
                       mean, mean, std, n, ci, band, tuple(values))


def _as_values(value: Any, claim_id: str) -> list[float]:
    what = f"value for claim {claim_id!r}"
    try:
        if type(value) in (list, tuple):
            items = list.__iter__(value) if type(value) is list else tuple.__iter__(value)
            values = [as_float(v, f"{what}[{i}]") for i, v in enumerate(items)]
        else:
            p = plain(value, what)
            if type(p) is list:
                values = [as_float(v, f"{what}[{i}]") for i, v in enumerate(p)]
            elif hasattr(p, "ndim") and p.size != 1:
                if p.ndim != 1:
                    raise UntrustedValue(f"{what}: expected one number or a 1-d sequence "
                                         f"(one per seed), got shape {p.shape}")
                values = [as_float(v, f"{what}[{i}]") for i, v in enumerate(p.tolist())]
            else:
                values = [as_float(p, what)]
    except UntrustedValue as e:
        raise UntrustedValue(f"{e} (pass a float, or a list of floats, one per seed)") from None
    if not values:
        raise ValueError(f"{what}: got no values; pass a number, or a list with one per seed")
    return values


@dataclass(frozen=True)
class Paper:
    """A paper's citation and claims, as loaded from ``paper.yaml``."""

    id: str
    title: str
    claims: dict[str, Claim]
    authors: tuple[str, ...] = ()
    year: int | None = None
    venue: str | None = None
    url: str | None = None
    time_budget_s: float | None = None
    path: Path | None = None

    def __getitem__(self, claim_id: str) -> Claim:
        try:
            return self.claims[claim_id]
        except KeyError:
            near = difflib.get_close_matches(str(claim_id), list(self.claims), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise KeyError(
                f"paper {self.id!r} has no claim {claim_id!r}{hint} "
                f"(claims: {', '.join(self.claims)})"
            ) from None

    def __contains__(self, claim_id: object) -> bool:
        return claim_id in self.claims

    def __iter__(self):
        return iter(self.claims.values())

    def __len__(self) -> int:
        return len(self.claims)

    def for_level(self, level: int) -> list[Claim]:
        """The claims checked at ``level`` (claims without levels belong to every level)."""
        return [c for c in self.claims.values() if not c.levels or level in c.levels]

    @property
    def citation(self) -> str:
        """A one-line citation: authors (year). Title. Venue."""
        who = self.authors[0] + (" et al." if len(self.authors) > 2 else
                                 f" and {self.authors[1]}" if len(self.authors) == 2 else "") \
            if self.authors else "Anonymous"
        year = f" ({self.year})" if self.year is not None else ""
        venue = f" {self.venue}." if self.venue else ""
        return f"{who}{year}. {self.title}.{venue}"


# -------------------------------------------------------------------------- loading


class _Checker:
    """Validates parsed YAML, raising :class:`ClaimsError` with the key path."""

    def __init__(self, path: str | Path) -> None:
        self.path = path

    def fail(self, key: str, problem: str) -> ClaimsError:
        return ClaimsError(self.path, key, problem)

    def mapping(self, data: Any, key: str, allowed: Sequence[str]) -> Mapping[str, Any]:
        if not isinstance(data, dict):
            raise self.fail(key, f"expected a mapping (key: value lines), got {_show(data)}")
        for k in data:
            if k not in allowed:
                near = difflib.get_close_matches(str(k), allowed, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else f"; allowed: {', '.join(allowed)}"
                where = f"{key}.{k}" if key else str(k)
                raise self.fail(where, f"unknown key{hint}")
        return data

    def required(self, data: Mapping[str, Any], name: str, key: str) -> Any:
        if name not in data or data[name] is None:
            raise self.fail(f"{key}.{name}" if key else name, "required key is missing")
        return data[name]

    def text(self, value: Any, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, f"expected non-empty text, got {_show(value)}")
        return value.strip()

    def ident(self, value: Any, key: str) -> str:
        value = self.text(value, key) if not isinstance(value, int) or isinstance(value, bool) \
            else str(value)
        if not _ID.match(value):
            raise self.fail(key, f"expected an id of letters, digits, '-', '_' or '.', got {value!r}")
        return value

    def number(self, value: Any, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(key, f"expected a number, got {_show(value)}")
        if not math.isfinite(value):
            raise self.fail(key, f"expected a finite number, got {value!r}")
        return float(value)

    def whole(self, value: Any, key: str, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.fail(key, f"expected a whole number >= {minimum}, got {_show(value)}")
        return int(value)


def _show(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, (dict, list)):
        return f"a {'mapping' if isinstance(value, dict) else 'list'} ({value!r:.60})"
    return repr(value)


_PAPER_KEYS = ("id", "title", "authors", "year", "venue", "url")
_CLAIM_KEYS = ("id", "statement", "source", "paper_value", "expected", "tolerance", "interval",
               "relation", "level", "unit")


def parse_paper(data: Any, path: str | Path = PAPER_FILE) -> Paper:
    """Validate already-parsed YAML (a dict) and build a :class:`Paper`; ``path`` names it in errors."""
    c = _Checker(path)
    top = c.mapping(data, "", ("paper", "time_budget_s", "claims", "mutation"))  # mutation: see reprokit.mutation
    meta = c.mapping(c.required(top, "paper", ""), "paper", _PAPER_KEYS)
    authors: tuple[str, ...] = ()
    if meta.get("authors") is not None:
        raw = meta["authors"]
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list):
            raise c.fail("paper.authors", f"expected a list of names, got {_show(raw)}")
        authors = tuple(c.text(a, f"paper.authors[{i}]") for i, a in enumerate(raw))
    budget = None
    if top.get("time_budget_s") is not None:
        budget = c.number(top["time_budget_s"], "time_budget_s")
        if budget <= 0:
            raise c.fail("time_budget_s", f"expected a positive number of seconds, got {budget:g}")

    raw_claims = c.required(top, "claims", "")
    if not isinstance(raw_claims, list) or not raw_claims:
        raise c.fail("claims", f"expected a non-empty list of claims, got {_show(raw_claims)}")
    claims: dict[str, Claim] = {}
    for i, raw in enumerate(raw_claims):
        claim = _parse_claim(c, raw, f"claims[{i}]")
        if claim.id in claims:
            raise c.fail(f"claims[{i}].id", f"duplicate claim id {claim.id!r}")
        claims[claim.id] = claim

    return Paper(
        id=c.ident(c.required(meta, "id", "paper"), "paper.id"),
        title=c.text(c.required(meta, "title", "paper"), "paper.title"),
        authors=authors,
        year=c.whole(meta["year"], "paper.year", 1) if meta.get("year") is not None else None,
        venue=c.text(meta["venue"], "paper.venue") if meta.get("venue") is not None else None,
        url=c.text(meta["url"], "paper.url") if meta.get("url") is not None else None,
        time_budget_s=budget,
        claims=claims,
        path=Path(path) if path is not None else None,
    )


def _parse_claim(c: _Checker, raw: Any, key: str) -> Claim:
    d = c.mapping(raw, key, _CLAIM_KEYS)
    claim_id = c.ident(c.required(d, "id", key), f"{key}.id")
    statement = c.text(c.required(d, "statement", key), f"{key}.statement")
    source = c.text(c.required(d, "source", key), f"{key}.source")
    expected = c.number(d["expected"], f"{key}.expected") if d.get("expected") is not None else None

    kinds = [k for k in ("tolerance", "interval", "relation") if d.get(k) is not None]
    if len(kinds) != 1:
        got = f"got {' and '.join(kinds)}" if kinds else "got none"
        raise c.fail(key, f"give exactly one of tolerance, interval or relation ({got})")
    tolerance = interval = relation = None
    if kinds[0] == "tolerance":
        tolerance = c.number(d["tolerance"], f"{key}.tolerance")
        if tolerance < 0:
            raise c.fail(f"{key}.tolerance", f"expected a number >= 0, got {tolerance:g}")
    elif kinds[0] == "interval":
        iv = d["interval"]
        if not isinstance(iv, list) or len(iv) != 2:
            raise c.fail(f"{key}.interval", f"expected [low, high], got {_show(iv)}")
        lo = c.number(iv[0], f"{key}.interval[0]")
        hi = c.number(iv[1], f"{key}.interval[1]")
        if lo > hi:
            raise c.fail(f"{key}.interval", f"low {lo:g} is above high {hi:g}")
        interval = (lo, hi)
    else:
        relation = d["relation"]
        if relation not in RELATIONS:
            raise c.fail(f"{key}.relation", f"expected one of {', '.join(RELATIONS)}, got {_show(relation)}")
    if expected is None and interval is None:
        raise c.fail(f"{key}.expected", f"required with {kinds[0]} (the value to compare against)")

    paper_value = d.get("paper_value")
    if paper_value is not None and not isinstance(paper_value, str):
        paper_value = c.number(paper_value, f"{key}.paper_value")

    levels: tuple[int, ...] = ()
    if d.get("level") is not None:
        lv = d["level"]
        if isinstance(lv, list):
            if not lv:
                raise c.fail(f"{key}.level", "expected a level or a non-empty list of levels, got []")
            levels = tuple(c.whole(x, f"{key}.level[{j}]", 1) for j, x in enumerate(lv))
        else:
            levels = (c.whole(lv, f"{key}.level", 1),)
    unit = c.text(d["unit"], f"{key}.unit") if d.get("unit") is not None else None
    return Claim(id=claim_id, statement=statement, source=source, expected=expected,
                 tolerance=tolerance, interval=interval, relation=relation,
                 paper_value=paper_value, levels=levels, unit=unit)


def _yaml_loader():
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        """SafeLoader that refuses a key given twice in one mapping."""

    def construct_mapping(loader: Any, node: Any, deep: bool = False) -> dict:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice", key_node.start_mark)
            seen[key] = True
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                    construct_mapping)
    return UniqueKeyLoader


def load_paper(path: str | Path) -> Paper:
    """Read and validate ``paper.yaml`` (or the ``paper.yaml`` inside a folder)."""
    import yaml

    p = Path(path)
    if p.is_dir():
        p = p / PAPER_FILE
    shown = str(p)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ClaimsError(shown, "", "file not found (expected a paper.yaml with "
                          "'paper' and 'claims'; see reprokit.claims for the schema)") from None
    except OSError as e:
        raise ClaimsError(shown, "", f"cannot read the file ({e.strerror})") from None
    try:
        data = yaml.load(text, Loader=_yaml_loader())  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f"line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ClaimsError(shown, line, f"not valid YAML: {problem}") from None
    return parse_paper(data, p)


def find_paper(start: str | Path) -> Path | None:
    """The nearest ``paper.yaml`` in ``start`` (a file's folder or a folder) or its parents."""
    here = Path(start).resolve()
    if not here.is_dir():
        here = here.parent
    for folder in (here, *here.parents):
        candidate = folder / PAPER_FILE
        if candidate.is_file():
            return candidate
    return None

