"""reprokit's pytest plugin: wiring only; the work lives in importable modules.

Loaded through the ``pytest11`` entry point, so it is active wherever reprokit is
installed. It reads top to bottom in the order pytest calls it:

1. ``pytest_addoption`` - the ``reprokit`` option group and ini keys.
2. ``pytest_configure`` - markers ``claim(id)`` and ``level(n)``; the seed; reprokit's
   Hypothesis profiles (``reprokit-dev``, ``reprokit-ci``, ``reprokit-grading``; none runs
   the explain phase), one of which it loads unless ``--hypothesis-profile`` was given;
   with ``--reprokit-warm-up``, torch's one-off ``torch._dynamo`` import, paid before
   any test so that no test (and no hypothesis deadline) is charged for it.
3. ``pytest_report_header`` - the seed (so a failing run can be replayed), the Hypothesis
   profile and torch's deterministic mode.
4. Fixtures: ``reprokit_seed``, ``seeded``, ``fingerprint``, ``tiny_digits``, ``claims``,
   ``implementation``, ``record_claim``.
5. ``pytest_terminal_summary`` - a table of the claims checked in the run.
6. ``pytest_unconfigure`` - puts the previous Hypothesis profile back.

Seeding is opt-in per test (use the ``seeded`` fixture): the plugin never reseeds or
switches torch's global mode behind a test's back. Heavy imports (torch, scikit-learn)
happen only inside the fixtures that need them, so the plugin costs other projects'
test runs almost nothing.

``record_claim`` policy: ``not reproduced`` fails the test; ``inconclusive`` passes it
with an :class:`InconclusiveClaimWarning` (make that an error with
``-W error::reprokit.plugin.InconclusiveClaimWarning``); every verdict is listed in the
terminal summary.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import random
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

PROFILES = ("dev", "ci", "grading")
DEFAULT_SEED = 0

_SEED = pytest.StashKey[int]()
_PROFILE = pytest.StashKey[str]()
_PREVIOUS_PROFILE = pytest.StashKey["str | None"]()
_RECORDS = pytest.StashKey[list]()
_PAPERS = pytest.StashKey[dict]()
_MODULES = pytest.StashKey[dict]()
_WARM_UP = pytest.StashKey["float | None"]()


class InconclusiveClaimWarning(pytest.PytestWarning):
    """A recorded claim's confidence interval straddles the edge of its band."""


# ------------------------------------------------------------------ 1. options


def _seed_value(text: str) -> int | str:
    if text in ("random", "last"):
        return text
    try:
        seed = int(text)
    except ValueError:
        raise ValueError(f"expected a whole number, 'random' or 'last', got {text!r}") from None
    if not 0 <= seed < 2**32:
        raise ValueError(f"expected a seed from 0 to {2**32 - 1}, got {seed}")
    return seed


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add the ``reprokit`` option group and its ini keys."""
    group = parser.getgroup("reprokit", "reprokit (reproducible ML checks)")
    group.addoption(
        "--reprokit-seed", action="store", type=_seed_value, default=None, metavar="SEED",
        help=f"seed for the 'seeded', 'tiny_digits' and 'fingerprint' fixtures (default: ini "
             f"reprokit_seed, else {DEFAULT_SEED}). 'random' picks a new one and prints it; "
             "'last' reuses the previous run's seed.",
    )
    group.addoption(
        "--reprokit-profile", action="store", choices=PROFILES, default=None,
        help="hypothesis profile: dev (10 examples), ci (100 examples, no deadline, prints "
             "reproduction blobs) or grading (derandomized, no database, no wall-clock deadline). "
             "Default: ini reprokit_profile, else 'ci' when the CI environment variable is "
             "set, else 'dev'. --hypothesis-profile, if given, wins.",
    )
    group.addoption(
        "--reprokit-impl", action="store", default=None, metavar="PATH",
        help="the implementation under test for the 'implementation' fixture: a .py file or "
             "a dotted module name (default: the test module's reprokit_implementation, "
             "else ini reprokit_implementation, else tests using it are skipped).",
    )
    group.addoption(
        "--reprokit-paper", action="store", default=None, metavar="PATH",
        help="paper.yaml (or its folder) for the 'claims' fixture (default: ini "
             "reprokit_paper, else the nearest paper.yaml above each test file).",
    )
    group.addoption(
        "--reprokit-warm-up", action="store_true", default=None,
        help="import torch._dynamo once before the tests: torch does it when a process builds "
             "its first optimiser (2 s on an idle core, 6-17 s on a loaded one), which would "
             "otherwise land in one test, possibly past a hypothesis deadline. Default: ini "
             "reprokit_warm_up, else off (reprokit's own checks never need it).",
    )
    parser.addini("reprokit_seed", "default seed (see --reprokit-seed)", default=None)
    parser.addini("reprokit_warm_up", "import torch._dynamo before the tests (see "
                  "--reprokit-warm-up)", type="bool", default=False)
    parser.addini("reprokit_profile", "default hypothesis profile: dev, ci or grading",
                  default=None)
    parser.addini("reprokit_implementation", "default implementation under test (file or "
                  "module), relative to the ini file", default=None)
    parser.addini("reprokit_paper", "default paper.yaml, relative to the ini file",
                  default=None)


# ------------------------------------------------------------------ 2. configure


def _seed(config: pytest.Config) -> int:
    """The run's seed, fixed on first use (after the cache plugin is configured)."""
    if _SEED not in config.stash:
        workerinput = getattr(config, "workerinput", None)  # an xdist worker: the controller's seed
        if workerinput is not None and "reprokit_seed" in workerinput:
            config.stash[_SEED] = int(workerinput["reprokit_seed"])
        else:
            config.stash[_SEED] = _resolve_seed(config)
    return config.stash[_SEED]


class _XdistHooks:
    """Hands the controller's seed to every pytest-xdist worker (registered only with xdist)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_configure_node(self, node: Any) -> None:
        """Put the run's seed in the worker's input."""
        node.workerinput["reprokit_seed"] = _seed(self.config)


def _resolve_seed(config: pytest.Config) -> int:
    raw: Any = config.getoption("--reprokit-seed")
    if raw is None:
        ini = config.getini("reprokit_seed")
        try:
            raw = _seed_value(str(ini)) if ini else DEFAULT_SEED
        except ValueError as e:
            raise pytest.UsageError(f"ini reprokit_seed: {e}") from None
    cache = getattr(config, "cache", None)
    if raw == "last":
        raw = cache.get("reprokit/seed", DEFAULT_SEED) if cache is not None else DEFAULT_SEED
    elif raw == "random":
        raw = random.Random().getrandbits(32)
    if cache is not None:
        cache.set("reprokit/seed", int(raw))
    return int(raw)


def _resolve_profile(config: pytest.Config) -> str:
    name = config.getoption("--reprokit-profile") or config.getini("reprokit_profile")
    if not name:
        name = "ci" if os.environ.get("CI") else "dev"
    if name not in PROFILES:
        raise pytest.UsageError(
            f"ini reprokit_profile: expected one of {', '.join(PROFILES)}, got {name!r}")
    return name


@pytest.hookimpl(tryfirst=True)  # before hypothesis's own plugin reads --hypothesis-profile
def pytest_configure(config: pytest.Config) -> None:
    """Register markers and the claims collector; load reprokit's Hypothesis profile."""
    config.addinivalue_line(
        "markers",
        "claim(id): the test checks the paper claim with this id (record_claim(value) "
        "uses it); listed in reprokit's claims summary.",
    )
    config.addinivalue_line(
        "markers", "level(n): the test belongs to assignment level n (1 rerun ... 6 mechanism).")
    config.stash[_PROFILE] = _resolve_profile(config)
    config.stash[_RECORDS] = []
    config.pluginmanager.register(_ClaimsCollector(config.stash[_RECORDS]), "reprokit-claims")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistHooks(config), "reprokit-xdist")
    config.stash[_PAPERS] = {}
    config.stash[_MODULES] = {}
    config.stash[_PREVIOUS_PROFILE] = None

    from hypothesis import settings

    from reprokit.seeding import register_hypothesis_profiles

    register_hypothesis_profiles()
    if not config.getoption("--hypothesis-profile", default=None):
        config.stash[_PREVIOUS_PROFILE] = settings.get_current_profile_name()
        settings.load_profile(f"reprokit-{config.stash[_PROFILE]}")
    config.stash[_WARM_UP] = None
    warm = config.getoption("--reprokit-warm-up")
    if warm or (warm is None and config.getini("reprokit_warm_up")):
        from reprokit.invariants import warm_up

        config.stash[_WARM_UP] = warm_up()


# ------------------------------------------------------------------ 3. header


def _torch_mode() -> str:
    torch = sys.modules.get("torch")
    on = bool(torch is not None and torch.are_deterministic_algorithms_enabled())
    return f"torch deterministic algorithms {'on' if on else 'off'} (on inside 'seeded')"


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Name the seed (to replay the run), the Hypothesis profile and torch's deterministic mode."""
    from hypothesis import settings

    seed = _seed(config)
    lines = [
        f"reprokit: seed {seed} (replay with --reprokit-seed={seed}), "
        f"hypothesis profile {settings.get_current_profile_name()!r}, {_torch_mode()}"
    ]
    spent = config.stash.get(_WARM_UP, None)
    if spent is not None:
        lines.append(f"reprokit: torch._dynamo imported before the tests in {spent:.2f} s "
                     "(--reprokit-warm-up)")
    return lines


# ------------------------------------------------------------------ 4. fixtures


@pytest.fixture(scope="session")
def reprokit_seed(pytestconfig: pytest.Config) -> int:
    """The run's seed: --reprokit-seed, else ini reprokit_seed, else 0 (printed in the header)."""
    return _seed(pytestconfig)


@pytest.fixture
def seeded(reprokit_seed: int) -> Iterator[Any]:
    """Seed random, NumPy, torch (CPU/CUDA) and torch's deterministic mode for this test.

    Yields a seeded ``numpy.random.Generator``. Every RNG state, flag and env var is
    restored after the test, so the next test draws as if this one had not run.
    """
    from reprokit.seeding import seeded as seeded_block

    with seeded_block(reprokit_seed) as rng:
        yield rng


@pytest.fixture
def fingerprint(reprokit_seed: int) -> dict[str, Any]:
    """JSON-ready facts to replay a result: versions, platform, device, threads, seed, flags."""
    from reprokit.seeding import fingerprint as make

    return make(reprokit_seed)


@pytest.fixture
def tiny_digits(reprokit_seed: int) -> Any:
    """scikit-learn's 8x8 digits as standardised train/test tensors, split by the run's seed."""
    from reprokit.data import tiny_digits as load

    return load(seed=reprokit_seed)


def _relative_to_ini(config: pytest.Config, value: str) -> Path:
    base = config.inipath.parent if config.inipath is not None else config.rootpath
    return (base / value).resolve()


@pytest.fixture(scope="module")
def claims(request: pytest.FixtureRequest) -> Any:
    """The paper's claims (a ``reprokit.claims.Paper``); ``claims["id"]`` is one ``Claim``.

    Loaded from --reprokit-paper, else ini reprokit_paper, else the nearest paper.yaml
    in the test file's folder or above it.
    """
    from reprokit.claims import ClaimsError, find_paper, load_paper

    config = request.config
    option = config.getoption("--reprokit-paper")
    if option:
        path: Path | None = (config.invocation_params.dir / option).resolve()
    elif config.getini("reprokit_paper"):
        path = _relative_to_ini(config, config.getini("reprokit_paper"))
    else:
        path = find_paper(request.path)
        if path is None:
            pytest.fail(
                f"no paper.yaml found in {request.path.parent} or any folder above it; "
                "put the paper's paper.yaml there, or pass --reprokit-paper=PATH",
                pytrace=False,
            )
    papers = config.stash[_PAPERS]
    if path not in papers:
        try:
            papers[path] = load_paper(path)
        except ClaimsError as e:
            pytest.fail(str(e), pytrace=False)
    return papers[path]


def _load_implementation(spec: str, base: Path) -> Any:
    if spec.endswith(".py") or os.sep in spec or "/" in spec:
        path = (base / spec).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"implementation file {path} does not exist")
        digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
        name = f"reprokit_impl_{path.stem}_{digest}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return module
    return importlib.import_module(spec)


@pytest.fixture(scope="module")
def implementation(request: pytest.FixtureRequest) -> Any:
    """The module under test: --reprokit-impl, else the test module's
    ``reprokit_implementation``, else ini reprokit_implementation; skipped if none is set.

    A value ending in ``.py`` (or containing a path separator) is loaded as a file,
    anything else is imported as a dotted module name.
    """
    config = request.config
    if config.getoption("--reprokit-impl"):
        spec, base, where = (config.getoption("--reprokit-impl"), config.invocation_params.dir,
                             "--reprokit-impl")
    elif getattr(request.module, "reprokit_implementation", None):
        spec, base, where = (request.module.reprokit_implementation, request.path.parent,
                             f"reprokit_implementation in {request.path.name}")
    elif config.getini("reprokit_implementation"):
        spec = config.getini("reprokit_implementation")
        base = config.inipath.parent if config.inipath is not None else config.rootpath
        where = "ini reprokit_implementation"
    else:
        pytest.skip(
            "no implementation under test: pass --reprokit-impl=path/to/model.py, or set "
            "reprokit_implementation = 'package.module' in the test module or the ini file"
        )
    modules = config.stash[_MODULES]
    key = (str(spec), str(base))
    if key not in modules:
        try:
            modules[key] = _load_implementation(str(spec), Path(base))
        except Exception as e:
            e.add_note(f"reprokit: while loading the implementation under test {spec!r} "
                       f"(from {where})")
            raise
    return modules[key]


_PROPERTY = "reprokit_claim"


def _as_property(claim: Any, verdict: Any) -> dict[str, Any]:
    """A verdict as plain data: it travels in ``report.user_properties`` (xdist, junitxml)."""
    return {
        "claim": claim.id, "source": claim.source,
        "paper": _show(claim.paper_value), "expected": claim.describe_band(),
        "reproduced": _reproduced(verdict), "status": verdict.status,
        "value": verdict.value, "n": verdict.n, "reason": verdict.reason,
    }


_NO_VALUE = object()


@pytest.fixture
def record_claim(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``record_claim("claim-id", value)`` compares value(s) with a claim of the paper.

    ``value`` is one number or a list with one per seed. With one argument the id comes
    from the test's ``@pytest.mark.claim("id")``. Returns the ``Verdict`` and lists it in
    the terminal summary; ``not reproduced`` fails the test, ``inconclusive`` warns
    (``InconclusiveClaimWarning``).
    """
    def record(claim_id: Any, value: Any = _NO_VALUE) -> Any:
        if value is _NO_VALUE:
            marker = request.node.get_closest_marker("claim")
            if marker is None or not marker.args:
                raise TypeError(
                    "record_claim(value) needs the claim id: call record_claim('claim-id', "
                    "value) or mark the test with @pytest.mark.claim('claim-id')")
            claim_id, value = marker.args[0], claim_id
        paper = request.getfixturevalue("claims")
        claim = paper[claim_id]
        verdict = claim.compare(value)
        request.node.user_properties.append((_PROPERTY, _as_property(claim, verdict)))
        if verdict.status == "not reproduced":
            pytest.fail(f"claim {claim.id!r} not reproduced: {verdict.reason}", pytrace=False)
        if verdict.status == "inconclusive":
            warnings.warn(InconclusiveClaimWarning(f"claim {claim.id!r}: {verdict.reason}"),
                          stacklevel=2)
        return verdict

    return record


# ------------------------------------------------------------------ 5. summary


def _show(x: Any) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def _reproduced(verdict: Any) -> str:
    if verdict.n == 1:
        return _show(verdict.value)
    return f"{verdict.mean:.4g} ± {verdict.std:.2g} (n={verdict.n})"


class _ClaimsCollector:
    """Gathers the verdicts ``record_claim`` attached to call reports (xdist workers' too)."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Keep each ``reprokit_claim`` user property of a test's call phase."""
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == _PROPERTY and isinstance(value, dict):
                self.records.append(value)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Print a table of the claims recorded in this run: paper value, band, ours, verdict."""
    records: list[dict[str, Any]] = config.stash.get(_RECORDS, [])
    if not records:
        return
    columns = ("claim", "source", "paper", "expected", "reproduced", "status")
    rows = [("claim", "source", "paper", "expected", "reproduced", "verdict")]
    rows += [tuple(str(r[c]) for c in columns) for r in records]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    terminalreporter.write_sep("=", "reprokit claims")
    for i, row in enumerate(rows):
        line = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        if i == 0:
            terminalreporter.write_line(line, bold=True)
            continue
        status = row[-1]
        colour = {"reproduced": "green", "not reproduced": "red"}.get(status, "yellow")
        terminalreporter.write_line(line, **{colour: True})
    counts = {s: sum(r["status"] == s for r in records)
              for s in ("reproduced", "not reproduced", "inconclusive")}
    terminalreporter.write_line(", ".join(f"{n} {s}" for s, n in counts.items() if n))


# ------------------------------------------------------------------ 6. unconfigure


def pytest_unconfigure(config: pytest.Config) -> None:
    """Put back the Hypothesis profile that was active before this run."""
    previous = config.stash.get(_PREVIOUS_PROFILE, None)
    if previous is not None:
        from hypothesis import settings

        settings.load_profile(previous)
