"""reprokit.bughunt: derive, loading, running student tests, and the hunt's scoring."""

from __future__ import annotations

import importlib
import linecache
import os
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reprokit import bughunt

TOY = '''
"""A toy base module: the "authors' code" for these tests."""
STATE = []
FACTOR = {"k": 2}

def double(x):
    return FACTOR["k"] * x

def quadruple(x):
    return double(double(x))

class Base:
    def __init__(self):
        self.ready = True

class Doubler(Base):
    def __init__(self, k):
        super().__init__()
        self.k = k

    def apply(self, x):
        return double(x) * self.k

class Plain:
    def value(self):
        return 1
'''

WHEAT = '''
"""Doubling by addition"""
import toybase
from reprokit.bughunt import derive

def double(x):
    return x + x

implementation = derive(toybase, double=double)
'''

CHAFF_TRIPLE = '''
"""Triples instead of doubling

The planted bug: double(x) returns 3x.
"""
import toybase
from reprokit.bughunt import derive

def double(x):
    return 3 * x

implementation = derive(toybase, double=double)
'''

CHAFF_QUAD = '''
"""Quadruple adds instead of composing"""
import toybase
from reprokit.bughunt import derive

def quadruple(x):
    return double(x) + 1

implementation = derive(toybase, quadruple=quadruple)
'''


@pytest.fixture
def toy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The toy base module, importable as ``toybase``, plus a folder of wheat/chaff files."""
    (tmp_path / "toybase.py").write_text(TOY)
    monkeypatch.syspath_prepend(str(tmp_path))
    # Toy tests need no torch/sklearn warm-up before forking (it costs seconds).
    monkeypatch.setattr(bughunt, "_PRELOADED", set(bughunt.PRELOAD))
    sys.modules.pop("toybase", None)
    module = importlib.import_module("toybase")
    files = {}
    for name, text in {"wheat": WHEAT, "triple": CHAFF_TRIPLE, "quad": CHAFF_QUAD}.items():
        files[name] = tmp_path / f"{name}.py"
        files[name].write_text(text)
    yield module, files
    sys.modules.pop("toybase", None)


def test_quadruple(implementation):
    assert implementation.quadruple(1) == 4, f"quadruple(1) = {implementation.quadruple(1)}"


def test_double(implementation):
    assert implementation.double(5) == 10


# Student-style tests used as data by the hunts below, not collected by pytest.
test_quadruple.__test__ = False  # type: ignore[attr-defined]
test_double.__test__ = False  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- derive


def test_derive_internal_calls_see_the_replacement(toy):
    base, _ = toy
    derived = bughunt.derive(base, double=lambda x: 10 * x)
    assert derived.quadruple(1) == 100  # quadruple's calls to double see the replacement
    assert base.quadruple(1) == 4  # the base is untouched
    assert derived.Doubler(1).apply(1) == 10  # a method calling double is rebound too
    assert base.Doubler(1).apply(1) == 2


def test_derive_keeps_super_isinstance_and_untouched_classes(toy):
    base, _ = toy
    derived = bughunt.derive(base, double=lambda x: -x)
    d = derived.Doubler(3)
    assert d.ready and d.k == 3  # super().__init__() still runs Base.__init__
    assert isinstance(d, base.Doubler)
    assert derived.Plain is base.Plain  # reads nothing rebound: kept as is


def test_derive_copies_mutable_constants(toy):
    base, _ = toy
    derived = bughunt.derive(base)
    derived.FACTOR["k"] = 5
    assert derived.double(1) == 5
    assert base.double(1) == 2


def test_derive_rejects_unknown_names(toy):
    base, _ = toy
    with pytest.raises(AttributeError, match="no 'halve' to replace"):
        bughunt.derive(base, halve=lambda x: x / 2)


def test_derive_rebinds_replacements_to_see_other_derived_names(toy):
    base, files = toy
    impl = bughunt.load_implementation(files["quad"].read_text())
    assert impl.quadruple(3) == 7  # double(3) + 1: the chaff's quadruple finds double
    assert impl.quadruple.__globals__["double"] is impl.double


# --------------------------------------------------------------------------- load


def test_load_implementation_hides_where_it_came_from(toy):
    _, files = toy
    impl = bughunt.load_implementation(files["triple"].read_text())
    assert impl.double(2) == 6
    assert impl.__name__ == "implementation"
    assert impl.__file__ == "<implementation>"
    assert "planted" not in (impl.__doc__ or "")
    assert "triple" not in repr(impl)
    assert not any(getattr(m, "__file__", None) == str(files["triple"]) for m in list(sys.modules.values()))


def test_load_implementation_without_derive_returns_the_module():
    impl = bughunt.load_implementation('"""Secret explanation."""\ndef f():\n    return 7\n')
    assert impl.f() == 7
    assert impl.__doc__ == bughunt.NEUTRAL_DOC
    assert "implementation" not in sys.modules or sys.modules["implementation"] is not impl


# --------------------------------------------------------------------------- run_tests_against


def test_outcomes_are_passed_failed_error_with_messages(toy):
    base, _ = toy

    def test_ok(implementation):
        assert implementation.double(2) == 4

    def test_wrong(implementation):
        assert implementation.double(2) == 5, "double(2) should be 5"

    # Defined like a notebook cell (IPython puts cells in linecache; pytest does not rewrite it).
    cell = "def test_bare(implementation):\n    assert implementation.double(2) == 5\n"
    linecache.cache["<cell-7>"] = (len(cell), None, cell.splitlines(True), "<cell-7>")
    ns: dict = {}
    exec(compile(cell, "<cell-7>", "exec"), ns)
    test_bare = ns["test_bare"]

    def test_boom(implementation):
        raise KeyError("nope")

    out = bughunt.run_tests_against(
        {"test_ok": test_ok, "test_wrong": test_wrong, "test_bare": test_bare,
         "test_boom": test_boom}, base)
    assert out["test_ok"] == {"status": "passed", "message": ""}
    assert out["test_wrong"]["status"] == "failed"
    assert out["test_wrong"]["message"].startswith("double(2) should be 5")
    assert out["test_bare"]["status"] == "failed"
    assert out["test_bare"]["message"] == (
        "assert failed in test_bare: assert implementation.double(2) == 5")
    assert out["test_boom"]["status"] == "error"
    assert out["test_boom"]["message"].startswith("KeyError")


def test_unknown_fixture_names_the_parameter_and_the_choices(toy):
    base, _ = toy

    def test_x(implementation, foo):
        pass

    out = bughunt.run_tests_against({"test_x": test_x}, base)
    assert out["test_x"]["status"] == "error"
    message = out["test_x"]["message"]
    assert "test_x asks for 'foo', which is not a reprokit fixture" in message
    for name in ("implementation", "tiny_digits", "seed", "rng"):
        assert name in message


def test_fixtures_are_seeded_and_rng_state_is_restored(toy):
    import numpy as np
    import torch

    base, _ = toy
    draws = []

    def test_draw(seed, rng, tiny_digits):
        draws.append((seed, float(rng.random()), float(torch.rand(1)),
                      tuple(tiny_digits.y_train[:5].tolist())))

    torch.manual_seed(123)
    before = torch.get_rng_state()
    bughunt.run_tests_against({"a": test_draw}, base)
    torch.manual_seed(999)
    bughunt.run_tests_against({"a": test_draw}, base)
    assert draws[0] == draws[1]  # same draws whatever the caller's RNG state was
    assert draws[0][0] == 0 and draws[0][1] == float(np.random.default_rng(0).random())
    torch.manual_seed(123)
    assert torch.equal(torch.get_rng_state(), before)


def test_a_test_that_loops_forever_times_out_and_the_next_one_runs(toy):
    base, _ = toy

    def test_forever(implementation):
        while True:
            try:
                sum(range(1000))
            except Exception:  # a timeout must not be swallowable by except Exception
                pass

    def test_asleep(implementation):
        while True:
            try:
                time.sleep(0.01)
            except Exception:
                pass

    def test_after(implementation):
        assert implementation.double(1) == 2

    t0 = time.monotonic()
    out = bughunt.run_tests_against({"test_forever": test_forever, "test_asleep": test_asleep,
                                     "test_after": test_after}, base, timeout_s=0.3)
    assert time.monotonic() - t0 < 30
    assert out["test_forever"]["status"] == "timeout"
    assert "more than 0.3 CPU-seconds" in out["test_forever"]["message"]
    # sleeping costs no CPU: the wall-clock safety net (10x) stops it
    assert out["test_asleep"]["status"] == "timeout"
    assert "3 s (wall time)" in out["test_asleep"]["message"]
    assert out["test_after"]["status"] == "passed"


# --------------------------------------------------------------------------- hunt


def test_each_chaff_caught_earns_credit(toy):
    _, files = toy
    report = bughunt.hunt([test_quadruple], [files["wheat"]], [files["triple"], files["quad"]])
    assert report.caught == {"hidden chaff 1": ["test_quadruple"], "hidden chaff 2": ["test_quadruple"]}
    assert report.wheat_failures == []
    assert report.score(2.5) == 5.0
    only_double = bughunt.hunt([test_double], [files["wheat"]], [files["triple"], files["quad"]])
    assert only_double.caught == {"hidden chaff 1": ["test_double"], "hidden chaff 2": []}
    assert only_double.score(1) == 1.0


def test_a_test_failing_on_a_wheat_zeroes_the_score(toy):
    _, files = toy

    def test_exact_code(implementation):
        import inspect
        assert "2" in inspect.getsource(implementation.double)  # pins the authors' code

    report = bughunt.hunt({"test_quadruple": test_quadruple, "test_exact_code": test_exact_code},
                          [files["wheat"]], [files["triple"], files["quad"]])
    assert report.n_caught == 2
    assert [(w, t) for w, t, _ in report.wheat_failures] == [("wheat 1", "test_exact_code")]
    assert report.score(1) == 0.0


def test_no_tests_scores_zero(toy):
    _, files = toy
    report = bughunt.hunt({}, [files["wheat"]], [files["triple"]])
    assert report.score(1) == 0.0
    assert "no tests found" in report.summary()


def test_os_exit_and_endless_loops_are_contained_per_implementation(toy):
    _, files = toy

    def test_exit_on_triple(implementation):
        if implementation.double(1) == 3:
            os._exit(0)

    def test_hang_on_quad(implementation):
        if implementation.quadruple(1) != 4:
            while True:
                pass

    tests = {"test_exit_on_triple": test_exit_on_triple, "test_hang_on_quad": test_hang_on_quad}
    report = bughunt.hunt(tests, [files["wheat"]], [files["triple"], files["quad"]], timeout_s=0.5)
    wheat, triple, quad = report.results
    assert wheat.failing() == []
    assert {o["status"] for o in triple.outcomes.values()} == {"error"}
    assert "ended abruptly" in triple.outcomes["test_exit_on_triple"]["message"]
    assert quad.outcomes["test_hang_on_quad"]["status"] == "timeout"
    assert quad.outcomes["test_exit_on_triple"]["status"] == "passed"
    assert report.score(1) == 2.0


def test_state_does_not_leak_between_implementations(toy):
    base, files = toy

    def test_first_to_touch(implementation):
        import toybase
        toybase.STATE.append(1)
        implementation.STATE.append(1)
        assert toybase.STATE == [1] and implementation.STATE == [1]

    report = bughunt.hunt([test_first_to_touch], [files["wheat"], files["wheat"]],
                          [files["triple"], files["quad"]])
    assert all(r.failing() == [] for r in report.results)
    assert base.STATE == []


def test_summary_names_public_chaffs_and_hides_hidden_ones(toy):
    _, files = toy

    def test_exact_draws(implementation):
        if implementation.double.__code__.co_consts[-1] != 999:
            raise AssertionError("pinned the draws")

    tests = {"test_quadruple": test_quadruple, "test_exact_draws": test_exact_draws}
    public = bughunt.hunt([test_double], [files["wheat"]], [files["triple"], files["quad"]],
                          reveal=True).summary()
    assert "chaff 'Triples instead of doubling' caught by test_double" in public
    assert "chaff 'Quadruple adds instead of composing' NOT caught" in public
    assert "wheat 'Doubling by addition': all 1 test(s) pass" in public
    assert "caught 1 of 2 chaffs" in public
    hidden = bughunt.hunt(tests, [files["wheat"]], [files["triple"], files["quad"]]).summary()
    assert "Triples" not in hidden and "The planted bug" not in hidden
    assert "hidden chaff 1 caught by test_quadruple" in hidden
    assert ("wheat 1 failed test_exact_draws: your test rejects a correct implementation: "
            "pinned the draws") in hidden
    assert "score: 0" in hidden


def test_remote_tests_are_dispatched_to_their_session_as_compiled_code(toy):
    _, files = toy
    calls = []

    class Session:
        def run_tests_against(self, tests, code, timeout_s):
            impl = bughunt.load_compiled(code)
            calls.append((sorted(tests), type(code), timeout_s))
            return {name: {"status": "failed" if impl.double(1) == 3 else "passed", "message": "m"}
                    for name in tests}

        def tests_digest(self, tests):
            return "digest-" + ",".join(sorted(tests))

    class Remote:
        def __init__(self, name):
            self.__name__ = name
            self._reprokit_remote = session

    session = Session()
    report = bughunt.hunt({"test_a": Remote("test_a"), "test_b": Remote("test_b")},
                          [files["wheat"]], [files["triple"]], timeout_s=7)
    assert calls == [(["test_a", "test_b"], bytes, 7)] * 2
    assert report.caught == {"hidden chaff 1": ["test_a", "test_b"]}
    assert report.score(1) == 1.0


def test_a_runner_that_crashes_is_an_error_for_that_implementation(toy):
    _, files = toy

    def runner(names, code):
        if bughunt.load_compiled(code).double(1) == 3:
            raise RuntimeError("the tests crashed the process")
        return {n: {"status": "passed", "message": ""} for n in names}

    report = bughunt.hunt([test_double], [files["wheat"]], [files["triple"]], runner=runner)
    assert report.results[0].failing() == []
    assert report.results[1].outcomes["test_double"] == {
        "status": "error", "message": "RuntimeError: the tests crashed the process"}


def test_display_name_is_the_docstrings_first_line(tmp_path: Path):
    f = tmp_path / "c.py"
    f.write_text(textwrap.dedent('''\
        """Labels re-drawn every epoch.

        Longer explanation.
        """
        x = 1
        '''))
    assert bughunt.display_name(f) == "Labels re-drawn every epoch"
    g = tmp_path / "no_doc.py"
    g.write_text("x = 1\n")
    assert bughunt.display_name(g) == "no_doc"


def test_a_chaff_that_does_not_load_is_an_autograder_error_not_a_catch(toy, tmp_path: Path):
    _, files = toy
    broken = tmp_path / "broken.py"
    broken.write_text('"""Broken chaff"""\nraise ImportError("authors module moved")\n')
    with pytest.raises(bughunt.ImplementationError, match="chaff .*broken.py.*authors module moved"):
        bughunt.hunt([test_double], [files["wheat"]], [broken])


def test_cache_reuses_outcomes_for_the_same_tests_and_source(toy):
    _, files = toy
    calls = []

    def runner(names, code):
        calls.append(code)
        return {n: {"status": "passed", "message": ""} for n in names}

    tests = {"test_double": test_double}
    for _ in range(2):
        bughunt.hunt(tests, [files["wheat"]], [files["triple"]], runner=runner, cache=True)
    assert len(calls) == 2  # wheat and chaff once each, not again on the second hunt
    bughunt.hunt({"test_double": test_quadruple}, [files["wheat"]], [], runner=runner, cache=True)
    assert len(calls) == 3  # other test functions: no reuse


def test_patch_source_applies_an_edit_and_refuses_a_missing_one(toy):
    base, _ = toy
    patched = bughunt.patch_source(base.quadruple, ("double(double(x))", "double(x) + 1"))
    assert patched(3) == 7
    derived = bughunt.derive(base, quadruple=patched, double=lambda x: 0)
    assert derived.quadruple(3) == 1  # the patched function sees the derived double
    with pytest.raises(ValueError, match="exactly once.*found it 0 times"):
        bughunt.patch_source(base.quadruple, ("triple(x)", "x"))


def test_patch_source_edits_a_class_and_both_loads_put_it_in_place(toy, tmp_path: Path):
    """A bug in a layer's ``forward`` is an edit of its class; ``derive`` and the compiled
    module both use the edited class wherever the base module names it."""
    base, _ = toy
    edit = ("return double(x) * self.k", "return double(x) * self.k + 1")
    patched = bughunt.patch_source(base.Doubler, edit)
    assert patched(3).apply(2) == 13 and patched(3).ready  # super().__init__() still runs
    assert bughunt.derive(base, Doubler=patched).Doubler(1).apply(1) == 3
    chaff = tmp_path / "class_chaff.py"
    chaff.write_text("import toybase\nfrom reprokit.bughunt import derive, patch_source\n\n"
                     f"Doubler = patch_source(toybase.Doubler, {edit!r})\n\n"
                     "implementation = derive(toybase, Doubler=Doubler)\n")
    compiled = bughunt.load_compiled(bughunt.compile_implementation(chaff))
    assert compiled.Doubler(1).apply(1) == 3 and compiled.Doubler(1).ready


# --------------------------------------------------------------------------- level 4 of each paper

ASSIGNMENTS = Path(__file__).resolve().parents[1] / "assignments"
ZHANG = ASSIGNMENTS / "zhang2017-random-labels"
BATCHNORM = ASSIGNMENTS / "ioffe2015-batchnorm"


def _forget_authors() -> None:
    """Both papers call their package ``authors``: drop the one imported last."""
    for name in [n for n in sys.modules if n == "authors" or n.startswith("authors.")]:
        del sys.modules[name]


@pytest.fixture
def zhang(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The Zhang assignment folder on sys.path (so ``from authors import randlabels`` works)."""
    _forget_authors()
    monkeypatch.syspath_prepend(str(ZHANG))
    yield ZHANG
    _forget_authors()


def _material(root: Path) -> tuple[list[Path], list[Path], list[Path]]:
    return (sorted((root / "wheats").glob("*.py")), sorted((root / "chaffs/public").glob("*.py")),
            sorted((root / "chaffs/hidden").glob("*.py")))


def _probe_zhang(impl) -> list:
    """What a Zhang implementation computes from fixed inputs (compared across two loads)."""
    import torch

    torch.manual_seed(0)
    labels = impl.corrupt_labels(torch.arange(500) % 10, 0.5, seed=3)
    split = impl.load_digits_split(1, n_train=50)
    return [labels, split.X_train, split.y_test]


def _probe_batchnorm(impl) -> list:
    """What a BatchNorm implementation computes from fixed inputs: a layer in both modes, the
    split, a fresh network's logits."""
    import torch

    g = torch.Generator().manual_seed(0)
    bn = impl.BatchNorm(4)
    train_out = bn(torch.randn(8, 4, generator=g) * 2 + 1)
    eval_out = bn.eval()(torch.randn(3, 4, generator=g))
    split = impl.load_digits_split(1)
    model = impl.build_model(seed=2, hidden=(8,))
    return [train_out, eval_out, bn.running_var, split.X_train, split.y_test,
            model(split.X_test[:5])]


@dataclass(frozen=True)
class Level4:
    """One paper's bug hunt: where it lives, the authors' module, and what must hold."""

    folder: Path
    module: str  # the authors' module, authors/<module>.py
    api: tuple[str, ...]  # names every wheat and chaff exposes
    twins: dict[str, str]  # chaff -> its twin wheat: the same code with the bug fixed
    probe: Callable[[Any], list]  # fixed inputs -> outputs, to compare two loads of a file


LEVEL4 = {
    "zhang2017-random-labels": Level4(
        ZHANG, "randlabels",
        ("corrupt_labels", "load_digits_split", "make_data", "MLP", "train", "evaluate",
         "epochs_to_fit", "run_experiment", "DEFAULTS", "NUM_CLASSES"),
        {
            "chaffs/public/labels_redrawn_every_epoch.py": "wheats/twin_labels_fixed_per_epoch.py",
            "chaffs/public/seed_ignored.py": "wheats/twin_seeded_generator.py",
            "chaffs/public/test_split_corrupted.py": "wheats/twin_test_split_passed_through.py",
            "chaffs/hidden/dropout_at_evaluation.py": "wheats/twin_evaluate_in_eval_mode.py",
            "chaffs/hidden/first_labels_corrupted.py": "wheats/twin_random_positions_corrupted.py",
            "chaffs/hidden/forced_different_class.py": "wheats/twin_uniform_class_by_shift.py",
            "chaffs/hidden/fraction_rescaled.py": "wheats/twin_probability_capped.py",
            "chaffs/hidden/global_seed_mixed_in.py": "wheats/twin_fixed_salt_mixed_in.py",
            "chaffs/hidden/gradients_not_zeroed.py": "wheats/twin_gradients_set_to_none.py",
            "chaffs/hidden/normalised_with_test_data.py": "wheats/twin_statistics_concatenated.py",
            "chaffs/hidden/shuffle_seeded_from_clock.py": "wheats/twin_shuffle_seed_checked.py",
            "chaffs/hidden/test_acc_on_training_split.py": "wheats/twin_test_acc_by_keyword.py",
        },
        _probe_zhang),
    "ioffe2015-batchnorm": Level4(
        BATCHNORM, "batchnorm",
        ("BatchNorm", "MLP", "build_model", "load_digits_split", "train", "evaluate",
         "sigmoid_input_percentiles", "epochs_to_reach", "run_experiment", "DEFAULTS",
         "NUM_CLASSES"),
        {
            "chaffs/public/minibatch_order_ignores_seed.py": "wheats/twin_minibatch_order_by_argsort.py",
            "chaffs/public/normalised_after_the_sigmoid.py": "wheats/twin_normalised_before_the_sigmoid.py",
            "chaffs/public/running_variance_without_bessel_correction.py":
                "wheats/twin_running_variance_unbiased_by_var.py",
            "chaffs/hidden/eps_outside_the_square_root.py": "wheats/twin_eps_inside_rsqrt.py",
            "chaffs/hidden/evaluate_in_training_mode.py": "wheats/twin_evaluate_with_train_false.py",
            "chaffs/hidden/gamma_and_beta_not_parameters.py": "wheats/twin_gamma_and_beta_registered.py",
            "chaffs/hidden/momentum_convention_inverted.py": "wheats/twin_running_statistics_by_lerp.py",
            "chaffs/hidden/normalised_over_features.py": "wheats/twin_statistics_with_keepdim.py",
            "chaffs/hidden/normalised_with_unbiased_variance.py":
                "wheats/twin_biased_variance_by_correction.py",
            "chaffs/hidden/running_statistics_never_used.py":
                "wheats/twin_running_statistics_read_as_buffers.py",
            "chaffs/hidden/running_statistics_updated_in_eval_mode.py":
                "wheats/twin_running_statistics_updated_in_training_only.py",
        },
        _probe_batchnorm),
}


@pytest.fixture(params=sorted(LEVEL4))
def level4(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Level4]:
    """Each paper's level 4, its folder on sys.path (``from authors import ...`` works)."""
    paper = LEVEL4[request.param]
    _forget_authors()
    monkeypatch.syspath_prepend(str(paper.folder))
    yield paper
    _forget_authors()


def _code_of(value: Any) -> set:
    """The code objects behind a function, or behind a class's own methods (``derive``
    rebinds the authors' classes without changing their code); none for a constant."""
    if isinstance(value, type):
        return {getattr(v, "__code__", None) for v in vars(value).values()} - {None}
    return {getattr(value, "__code__", None)} - {None}


def test_wheats_and_chaffs_load_and_explain_themselves(level4: Level4):
    authors = importlib.import_module(f"authors.{level4.module}")
    wheats, public, hidden = _material(level4.folder)
    assert len(wheats) >= 3 + len(public) + len(hidden)  # independent wheats and the twins
    assert len(public) >= 2 and len(hidden) >= 8
    names = set()
    for path in wheats + public + hidden:
        impl = bughunt.load_implementation(path.read_text())
        assert all(hasattr(impl, name) for name in level4.api), f"{path.name} lacks part of the API"
        replaced = [n for n in level4.api if _code_of(getattr(impl, n)) != _code_of(getattr(authors, n))]
        assert replaced, f"{path.name} replaces none of the authors' functions"
        names.add(bughunt.display_name(path))
        doc = path.read_text().split('"""')[1]
        if path in public:
            assert len(doc.strip().splitlines()) >= 8, f"{path.name}: public chaffs explain the bug"
    assert len(names) == len(wheats) + len(public) + len(hidden), "display names must differ"


def _reference_tests(folder: Path) -> dict:
    """The level-4 solution: the test functions in 04-validate.ipynb's solution cell."""
    import nbformat
    import torch

    nb = nbformat.read(folder / "04-validate.ipynb", as_version=4)
    (source,) = [c.source for c in nb.cells
                 if c.cell_type == "code" and "# BEGIN SOLUTION" in c.source and "def test_" in c.source]
    namespace: dict = {"torch": torch}
    exec(compile(source, "04-validate solution", "exec"), namespace)
    return {k: v for k, v in namespace.items() if k.startswith("test_") and callable(v)}


def _example_test(folder: Path) -> str:
    """The example test students are given: the one above ``# BEGIN SOLUTION`` in that cell."""
    import nbformat

    nb = nbformat.read(folder / "04-validate.ipynb", as_version=4)
    (source,) = [c.source for c in nb.cells
                 if c.cell_type == "code" and "# BEGIN SOLUTION" in c.source and "def test_" in c.source]
    (name,) = [line[4:line.index("(")] for line in source.split("# BEGIN SOLUTION")[0].splitlines()
               if line.startswith("def test_")]
    return name


@pytest.mark.parametrize("paper", [
    # Zhang's reference trains networks on 22 implementations: about a minute
    pytest.param("zhang2017-random-labels", marks=pytest.mark.slow),
    # BatchNorm's reference tests layers and one-epoch networks: a few CPU-seconds
    "ioffe2015-batchnorm",
])
def test_reference_suite_catches_every_chaff_and_passes_every_wheat(
        paper: str, monkeypatch: pytest.MonkeyPatch):
    level = LEVEL4[paper]
    _forget_authors()
    monkeypatch.syspath_prepend(str(level.folder))
    try:
        wheats, public, hidden = _material(level.folder)
        tests = _reference_tests(level.folder)
        assert len(tests) >= 5
        report = bughunt.hunt(tests, [level.folder / "authors" / f"{level.module}.py", *wheats],
                              public + hidden, reveal=True)
        assert report.wheat_failures == [], report.summary()
        missed = [chaff for chaff, caught in report.caught.items() if not caught]
        assert missed == [], report.summary()
        assert report.score(1) == len(public) + len(hidden)
        # The example test given to students catches nothing: a blank notebook earns no credit.
        example = _example_test(level.folder)
        blank = bughunt.hunt({example: tests[example]}, wheats, public + hidden)
        assert blank.wheat_failures == [] and blank.score(1) == 0, blank.summary()
    finally:
        _forget_authors()


# --------------------------------------------------------------------------- behaviour only


def _functions(module) -> list:
    """Every function an implementation exposes, methods of its classes included."""
    import types

    out = []
    for value in vars(module).values():
        if isinstance(value, types.FunctionType) and value.__module__ == module.__name__:
            out.append(value)
        elif isinstance(value, type) and value.__module__ == module.__name__:
            out += [v for v in vars(value).values() if isinstance(v, types.FunctionType)]
    return out


def _codes(code):
    import types

    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def test_compiled_implementations_carry_no_source_file_names_lines_or_docstrings(level4: Level4):
    import marshal

    wheats, public, hidden = _material(level4.folder)
    for path in [level4.folder / "authors" / f"{level4.module}.py", *wheats, *public, *hidden]:
        blob = bughunt.compile_implementation(path)
        assert b"planted" not in blob and path.stem.encode() not in blob, path.name
        assert f"{level4.module}.py".encode() not in blob and b"<patched" not in blob, path.name
        assert b"twin" not in blob.lower(), path.name
        impl = bughunt.load_compiled(blob)
        assert impl.__doc__ == bughunt.NEUTRAL_DOC and impl.__file__ == "<implementation>"
        assert "implementation" not in sys.modules or sys.modules["implementation"] is not impl
        for fn in _functions(impl):
            if Path(fn.__code__.co_filename).name in ("<string>", "dataclasses.py"):
                continue  # made by dataclasses: alike in every implementation
            assert fn.__doc__ is None, (path.name, fn.__name__)
            for code in _codes(fn.__code__):
                assert code.co_filename == "<implementation>", (path.name, fn.__name__)
                assert {line for _, _, line in code.co_lines()} <= {1, None}, (path.name, fn.__name__)
        assert isinstance(marshal.loads(blob), type(test_double.__code__))


def test_compiled_code_behaves_like_the_derived_module(toy):
    _, files = toy
    for name, expected in (("wheat", (10, 20)), ("triple", (15, 45)), ("quad", (10, 11))):
        derived = bughunt.load_implementation(files[name].read_text())
        compiled = bughunt.load_compiled(bughunt.compile_implementation(files[name]))
        assert (compiled.double(5), compiled.quadruple(5)) == expected
        assert (derived.double(5), derived.quadruple(5)) == expected


def test_each_papers_compiled_files_behave_like_their_derived_modules(level4: Level4):
    import torch

    wheats, public, hidden = _material(level4.folder)
    for path in [*wheats, *public, *hidden]:
        derived = bughunt.load_implementation(path.read_text())
        compiled = bughunt.load_compiled(bughunt.compile_implementation(path))
        for a, b in zip(level4.probe(derived), level4.probe(compiled), strict=True):
            assert torch.equal(a, b), path.name


def test_every_chaff_has_a_twin_wheat_that_differs_only_where_the_bug_is(level4: Level4):
    import ast

    root = level4.folder
    wheats, public, hidden = _material(root)
    assert {str(p.relative_to(root)) for p in public + hidden} == set(level4.twins)
    twins = {str(p.relative_to(root)) for p in wheats if p.name.startswith("twin_")}
    assert twins == set(level4.twins.values()), "a twin wheat without its chaff, or one shared"
    for chaff, twin in level4.twins.items():
        a, b = (ast.parse(ast.unparse(bughunt.flatten_implementation(root / p))) for p in (chaff, twin))
        assert len(a.body) == len(b.body), chaff
        differ = [i for i, (x, y) in enumerate(zip(a.body, b.body, strict=True)) if ast.dump(x) != ast.dump(y)]
        assert len(differ) == 1, (chaff, differ)  # one definition differs: the buggy one
        (i,) = differ
        assert a.body[i].name == b.body[i].name, chaff
        # same imports and names: only the bug separates them
        assert {ast.dump(s) for s in a.body if isinstance(s, (ast.Import, ast.ImportFrom))} == \
               {ast.dump(s) for s in b.body if isinstance(s, (ast.Import, ast.ImportFrom))}, chaff


def test_order_is_drawn_per_submission_repeats_on_regrade_and_mixes_kinds():
    codes = [f"wheat {i}".encode() for i in range(11)] + [f"chaff {i}".encode() for i in range(8)]
    first = bughunt.draw_order(codes, "digest-a")
    assert first == bughunt.draw_order(codes, "digest-a")  # a regrade repeats it
    assert sorted(first) == list(range(19))
    others = {tuple(bughunt.draw_order(codes, f"digest-{k}")) for k in "bcdefg"}
    assert len(others | {tuple(first)}) == 7  # each submission its own
    assert first != bughunt.draw_order(codes, "digest-a", secret=b"hidden")
    assert any(i >= 11 for i in first[:11]), "chaffs are not all after the wheats"


def test_tests_digest_follows_the_test_source():
    def test_a(implementation):
        assert implementation.f() == 1

    def test_b(implementation):
        assert implementation.f() == 2

    assert bughunt.tests_digest({"t": test_a}) == bughunt.tests_digest({"t": test_a})
    assert bughunt.tests_digest({"t": test_a}) != bughunt.tests_digest({"t": test_b})


def test_hunt_runs_in_the_drawn_order_and_reports_in_file_order(toy):
    _, files = toy
    ran = []

    def runner(names, code):
        ran.append(bughunt.load_compiled(code).double(1))
        return {n: {"status": "passed", "message": ""} for n in names}

    report = bughunt.hunt([test_double], [files["wheat"]], [files["triple"], files["quad"]],
                          runner=runner)
    codes = [bughunt.compile_implementation(files[n]) for n in ("wheat", "triple", "quad")]
    expected = [(2, 3, 2)[i] for i in bughunt.draw_order(codes, bughunt.tests_digest(
        {"test_double": test_double}))]
    assert ran == expected
    assert [r.name for r in report.results] == ["wheat 1", "hidden chaff 1", "hidden chaff 2"]


def test_each_run_starts_in_fresh_empty_folders_and_nothing_carries_over(toy):
    _, files = toy

    def test_leaves_traces(implementation):
        import os
        import tempfile

        assert os.listdir(".") == [], f"the work dir holds {os.listdir('.')}"
        assert os.listdir(tempfile.gettempdir()) == [], "TMPDIR is not empty"
        assert os.environ.get("REPROKIT_TRACE") is None, "environment carried over"
        assert not hasattr(implementation, "TRACE"), "module state carried over"
        open("trace", "w").write("x")
        open(os.path.join(tempfile.gettempdir(), "trace"), "w").write("x")
        os.environ["REPROKIT_TRACE"] = "1"
        implementation.TRACE = 1

    report = bughunt.hunt([test_leaves_traces], [files["wheat"], files["wheat"]],
                          [files["triple"], files["quad"]])
    assert all(r.failing() == [] for r in report.results), report.summary()
    assert "REPROKIT_TRACE" not in os.environ


def test_every_wheat_returns_the_split_statistics_the_authors_document(zhang: Path):
    """``Splits.mean``/``std`` standardise a raw image (the authors' docstring; level 1 uses them),
    so a correct test that relies on them must pass on every wheat."""
    import torch
    from sklearn.datasets import load_digits

    raw = torch.tensor(load_digits().data, dtype=torch.float32)
    wheats, _, _ = _material(zhang)
    for path in [zhang / "authors" / "randlabels.py", *wheats]:
        impl = bughunt.load_compiled(bughunt.compile_implementation(path))
        split = impl.load_digits_split(seed=0, n_train=200)
        assert split.mean is not None and split.std is not None, path.name
        assert split.mean.shape == split.std.shape == (64,), path.name
        order = torch.from_numpy(__import__("numpy").random.default_rng(0).permutation(len(raw)))
        first_train = raw[order[int(round(0.25 * len(raw)))]]
        assert torch.allclose((first_train - split.mean) / split.std, split.X_train[0], atol=1e-5), path.name


def test_a_test_finds_nothing_of_the_hunt_above_it(toy):
    """In the forked run (the path ``otter run`` takes) the callers' locals are gone: no list
    of implementations, no kinds, no file names."""
    _, files = toy
    secret_paths = list(map(str, files.values()))
    blobs = frozenset(map(bughunt.compile_implementation, files.values()))  # no closure on files

    def test_walks_up(implementation):
        import gc
        import sys
        from pathlib import Path

        frame = sys._getframe(1)
        while frame is not None:
            if frame.f_locals is not frame.f_globals:
                for name, value in frame.f_locals.items():
                    parts = value if isinstance(value, (list, tuple)) else [value]
                    for part in parts:
                        assert not (isinstance(part, str) and part in ("chaff", "wheat")), name
                        head = part[0] if isinstance(part, tuple) and part else None
                        assert not (isinstance(head, str) and head in ("chaff", "wheat")), name
                        assert not (isinstance(part, Path) and part.name in ("triple.py", "quad.py"))
                        assert not (isinstance(part, bytes) and part in blobs and len(parts) > 1)
            frame = frame.f_back
        for obj in gc.get_objects():
            if isinstance(obj, tuple) and obj and isinstance(obj[0], str) and obj[0] in ("wheat",
                                                                                         "chaff"):
                raise AssertionError(f"the hunt's list of implementations is in memory: {obj}")
            if type(obj) is list and len(obj) == 2 and all(isinstance(x, Path) for x in obj):
                raise AssertionError(f"the caller's list of chaffs is in memory: {obj}")
            # exact types only: other libraries' dict subclasses may import on iteration
            if type(obj) in (list, dict) and sum(
                    x in blobs for x in (obj.values() if type(obj) is dict else obj)
                    if type(x) is bytes) >= 2:
                raise AssertionError("the other implementations' code is in memory")

    def hunt_from_a_caller(wheat, triple, quad):
        chaffs = [triple, quad]
        return bughunt.hunt([test_walks_up], [wheat], chaffs)

    report = hunt_from_a_caller(files["wheat"], files["triple"], files["quad"])
    assert all(r.failing() == [] for r in report.results), report.summary()
    assert secret_paths  # still here in the parent
