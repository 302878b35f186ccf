"""Behaviour of reprokit's pytest plugin (run through pytester), and the data it hands out."""

from __future__ import annotations

import re
import textwrap

import pytest
import sklearn.datasets  # noqa: F401 - import once here: pytester's in-process runs drop new modules
import torch

PAPER = """\
paper:
  id: toy2024
  title: A toy paper
  authors: [Ada Lovelace]
  year: 2024
claims:
  - id: acc-high
    statement: The model is accurate.
    source: Table 2
    paper_value: 0.97
    expected: 0.95
    tolerance: 0.03
    level: 1
  - id: loss-low
    statement: The loss is small.
    source: Fig. 3
    expected: 0.1
    relation: "<"
"""


@pytest.fixture
def paper_dir(pytester):
    pytester.makefile(".yaml", paper=PAPER)
    return pytester


# ---------------------------------------------------------------- options and header


def test_header_names_seed_profile_and_torch_mode(pytester):
    pytester.makepyfile("def test_ok(): pass")
    result = pytester.runpytest("--reprokit-seed=7", "--reprokit-profile=grading")
    result.stdout.fnmatch_lines([
        "reprokit: seed 7 (replay with --reprokit-seed=7), hypothesis profile "
        "'reprokit-grading', torch deterministic algorithms * (on inside 'seeded')"
    ])
    assert result.ret == 0


def test_warm_up_imports_dynamo_before_the_first_test_and_says_so(pytester):
    pytester.makepyfile("import sys\n"
                        "def test_dynamo(): assert 'torch._dynamo' in sys.modules\n")
    result = pytester.runpytest_subprocess("--reprokit-warm-up", "-p", "no:cacheprovider")
    result.stdout.fnmatch_lines(["reprokit: torch._dynamo imported before the tests in * s "
                                 "(--reprokit-warm-up)"])
    assert result.ret == 0
    assert "torch._dynamo imported" not in pytester.runpytest().stdout.str()  # off by default


def test_seed_option_reaches_the_fixture(pytester):
    pytester.makepyfile("def test_seed(reprokit_seed): assert reprokit_seed == 1234")
    assert pytester.runpytest("--reprokit-seed=1234").ret == 0
    assert pytester.runpytest().ret == 1  # default seed is 0


def test_seed_from_ini(pytester):
    pytester.makeini("[pytest]\nreprokit_seed = 99\n")
    pytester.makepyfile("def test_seed(reprokit_seed): assert reprokit_seed == 99")
    assert pytester.runpytest().ret == 0


def test_seed_last_reuses_the_random_seed(pytester):
    pytester.makepyfile("def test_ok(): pass")
    first = pytester.runpytest("--reprokit-seed=random")
    seed = re.search(r"reprokit: seed (\d+)", first.stdout.str()).group(1)
    again = pytester.runpytest("--reprokit-seed=last")
    again.stdout.fnmatch_lines([f"reprokit: seed {seed} *"])


def test_bad_seed_is_a_usage_error(pytester):
    pytester.makepyfile("def test_ok(): pass")
    result = pytester.runpytest("--reprokit-seed=abc")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*--reprokit-seed*"])


def test_bad_profile_choice_is_refused(pytester):
    pytester.makepyfile("def test_ok(): pass")
    result = pytester.runpytest("--reprokit-profile=fast")
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*invalid choice*fast*"])


def test_profile_defaults_to_ci_when_CI_is_set(pytester, monkeypatch):
    pytester.makepyfile("def test_ok(): pass")
    monkeypatch.setenv("CI", "true")
    pytester.runpytest().stdout.fnmatch_lines(["*hypothesis profile 'reprokit-ci'*"])
    monkeypatch.delenv("CI")
    pytester.runpytest().stdout.fnmatch_lines(["*hypothesis profile 'reprokit-dev'*"])


def test_explicit_hypothesis_profile_wins(pytester):
    pytester.makepyfile("def test_ok(): pass")
    result = pytester.runpytest("--hypothesis-profile=default", "--reprokit-profile=grading")
    result.stdout.fnmatch_lines(["*hypothesis profile 'default'*"])


def test_run_leaves_the_outer_hypothesis_profile_in_place(pytester):
    from hypothesis import settings

    before = settings.get_current_profile_name()
    pytester.makepyfile("def test_ok(): pass")
    pytester.runpytest("--reprokit-profile=grading")
    assert settings.get_current_profile_name() == before


def test_markers_are_registered(pytester):
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.claim(id): *", "@pytest.mark.level(n): *"])


def test_markers_pass_strict_markers(pytester):
    pytester.makepyfile("""
        import pytest
        @pytest.mark.claim("x")
        @pytest.mark.level(2)
        def test_ok(): pass
    """)
    assert pytester.runpytest("--strict-markers").ret == 0


FIXTURES = ["reprokit_seed", "seeded", "fingerprint", "tiny_digits", "claims",
            "implementation", "record_claim"]


def test_every_fixture_is_listed_with_its_docstring(pytester):
    from reprokit import plugin

    pytester.makepyfile("def test_ok(): pass")
    out = pytester.runpytest("--fixtures").stdout.str()
    for name in FIXTURES:
        doc = getattr(plugin, name).__doc__
        assert doc, f"fixture {name} has no docstring"
        first = doc.strip().splitlines()[0].strip()
        assert re.search(rf"^{name}( \[(session|module) scope\])? -- ", out, re.M), name
        assert first in out, f"docstring of {name} missing from --fixtures"


# ---------------------------------------------------------------- seeded fixture


def test_seeded_fixture_restores_state_across_tests(pytester):
    pytester.makepyfile("""
        import random
        import numpy as np
        import torch

        SEEN = {}

        def snapshot():
            return (random.getstate(), np.random.get_state()[1].tolist(),
                    torch.get_rng_state().tolist(), torch.are_deterministic_algorithms_enabled())

        def test_1_before():
            SEEN["before"] = snapshot()

        def test_2_seeded(seeded):
            assert torch.are_deterministic_algorithms_enabled()
            SEEN["draws"] = (random.random(), float(np.random.rand()), torch.rand(3).tolist(),
                             seeded.random())

        def test_3_untouched():
            assert snapshot() == SEEN["before"]

        def test_4_seeded_again_draws_the_same(seeded):
            assert (random.random(), float(np.random.rand()), torch.rand(3).tolist(),
                    seeded.random()) == SEEN["draws"]
    """)
    pytester.runpytest("-p", "no:randomly").assert_outcomes(passed=4)


def test_seeded_draws_follow_the_seed_option(pytester):
    pytester.makepyfile("""
        import torch
        def test_draw(seeded, reprokit_seed):
            torch.manual_seed(reprokit_seed)
            expected = torch.rand(2)
            assert expected.tolist() != []
    """)
    pytester.makepyfile(test_compare="""
        import torch
        from reprokit.seeding import seed_everything, seeded as block
        def test_matches_library(seeded, reprokit_seed):
            got = torch.rand(4).tolist()
            with block(reprokit_seed):
                assert torch.rand(4).tolist() == got
    """)
    pytester.runpytest("--reprokit-seed=31").assert_outcomes(passed=2)


def test_fingerprint_fixture_names_the_seed(pytester):
    pytester.makepyfile("""
        import json
        def test_fp(fingerprint):
            assert json.loads(json.dumps(fingerprint))["seed"] == 42
    """)
    pytester.runpytest("--reprokit-seed=42").assert_outcomes(passed=1)


# ---------------------------------------------------------------- claims and summary


def test_claims_fixture_loads_the_nearest_paper_yaml(paper_dir):
    sub = paper_dir.mkpydir("sub")
    (sub / "test_claims_here.py").write_text(textwrap.dedent("""
        def test_claims(claims):
            assert claims.id == "toy2024"
            assert claims["acc-high"].source == "Table 2"
    """))
    paper_dir.runpytest().assert_outcomes(passed=1)


def test_claims_fixture_takes_the_paper_option(pytester):
    other = pytester.mkdir("elsewhere")
    (other / "paper.yaml").write_text(PAPER)
    pytester.makepyfile("def test_claims(claims): assert 'loss-low' in claims")
    pytester.runpytest("--reprokit-paper=elsewhere").assert_outcomes(passed=1)


def test_missing_paper_yaml_is_explained(pytester):
    pytester.makepyfile("def test_claims(claims): pass")
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*no paper.yaml found*--reprokit-paper*"])


def test_broken_paper_yaml_error_names_the_key(pytester):
    pytester.makefile(".yaml", paper=PAPER.replace("tolerance: 0.03", "tolerance: lots"))
    pytester.makepyfile("def test_claims(claims): pass")
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*paper.yaml: claims[[]0[]].tolerance: expected a number, got 'lots'*"])


def test_terminal_summary_lists_claims_with_verdicts(paper_dir):
    paper_dir.makepyfile("""
        import pytest

        def test_reproduced(record_claim):
            assert record_claim("acc-high", 0.96).reproduced

        @pytest.mark.claim("loss-low")
        def test_not_reproduced(record_claim):
            record_claim(0.3)

        def test_inconclusive(record_claim):
            record_claim("acc-high", [0.90, 0.95, 0.93])
    """)
    result = paper_dir.runpytest()
    result.assert_outcomes(passed=2, failed=1, warnings=1)
    result.stdout.fnmatch_lines([
        "*= reprokit claims =*",
        "claim*source*paper*expected*reproduced*verdict",
        "acc-high*Table 2*0.97*0.95 ± 0.03 = [[]0.92, 0.98[]]*0.96*reproduced",
        "loss-low*Fig. 3*-*< 0.1*0.3*not reproduced",
        "acc-high*Table 2*0.97*0.9267 ± 0.025 (n=3)*inconclusive",
        "1 reproduced, 1 not reproduced, 1 inconclusive",
    ])
    result.stdout.fnmatch_lines(["*claim 'loss-low' not reproduced: 0.3 lies above < 0.1*"])
    result.stdout.fnmatch_lines(["*InconclusiveClaimWarning*"])


def test_no_summary_without_claims(pytester):
    pytester.makepyfile("def test_ok(): pass")
    assert "reprokit claims" not in pytester.runpytest().stdout.str()


def test_record_claim_without_an_id_is_explained(paper_dir):
    paper_dir.makepyfile("def test_x(record_claim): record_claim(0.5)")
    paper_dir.runpytest().stdout.fnmatch_lines(["*needs the claim id*"])


# ---------------------------------------------------------------- implementation


IMPL = "def double(x):\n    return 2 * x\n"
TEST_IMPL = "def test_impl(implementation):\n    assert implementation.double(3) == 6\n"


def test_implementation_from_option(pytester):
    pytester.makepyfile(model_impl=IMPL)
    pytester.makepyfile(test_it=TEST_IMPL)
    pytester.runpytest("--reprokit-impl=model_impl.py").assert_outcomes(passed=1)


def test_implementation_from_module_attribute(pytester):
    pytester.mkdir("impls")
    (pytester.path / "impls" / "mine.py").write_text(IMPL)
    pytester.makepyfile(test_it="reprokit_implementation = 'impls/mine.py'\n" + TEST_IMPL)
    pytester.runpytest().assert_outcomes(passed=1)


def test_implementation_from_ini_as_dotted_module(pytester):
    pytester.makepyfile(my_model=IMPL)
    pytester.makeini("[pytest]\nreprokit_implementation = my_model\npythonpath = .\n")
    pytester.makepyfile(test_it=TEST_IMPL)
    pytester.runpytest().assert_outcomes(passed=1)


def test_implementation_option_overrides_module_attribute(pytester):
    pytester.makepyfile(good=IMPL, bad="def double(x):\n    return x\n")
    pytester.makepyfile(test_it="reprokit_implementation = 'bad.py'\n" + TEST_IMPL)
    pytester.runpytest().assert_outcomes(failed=1)
    pytester.runpytest("--reprokit-impl=good.py").assert_outcomes(passed=1)


def test_no_implementation_configured_skips_with_a_reason(pytester):
    pytester.makepyfile(test_it=TEST_IMPL)
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no implementation under test: pass --reprokit-impl*"])


def test_broken_implementation_error_says_where_it_came_from(pytester):
    pytester.makepyfile(broken="raise ValueError('student bug')\n")
    pytester.makepyfile(test_it=TEST_IMPL)
    result = pytester.runpytest("--reprokit-impl=broken.py")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*student bug*", "*while loading the implementation under test*"])


# ---------------------------------------------------------------- hypothesis profiles


HYPOTHESIS_TEST = """
    import os
    from hypothesis import given, strategies as st

    @given(st.integers(0, 10**6), st.floats(0, 1))
    def test_prop(n, f):
        with open(os.environ["EXAMPLES_LOG"], "a") as fh:
            fh.write(f"{n} {f!r}\\n")
        assert n < 1000 or f < 0.5
"""


def _examples(pytester, monkeypatch, name, *args):
    log = pytester.path / f"{name}.log"
    monkeypatch.setenv("EXAMPLES_LOG", str(log))
    result = pytester.runpytest(*args)
    falsifying = [line for line in result.stdout.lines if "test_prop(" in line or "n=" in line]
    return log.read_text(), falsifying, result


def test_grading_profile_is_derandomized(pytester, monkeypatch):
    pytester.makepyfile(HYPOTHESIS_TEST)
    log1, fail1, r1 = _examples(pytester, monkeypatch, "g1", "--reprokit-profile=grading")
    log2, fail2, r2 = _examples(pytester, monkeypatch, "g2", "--reprokit-profile=grading")
    r1.assert_outcomes(failed=1)
    r2.assert_outcomes(failed=1)
    assert fail1 and fail1 == fail2  # the same falsifying example
    assert log1 == log2  # and the very same examples along the way


def test_dev_profile_explores_different_examples_each_run(pytester, monkeypatch):
    pytester.makepyfile(HYPOTHESIS_TEST.replace("assert n < 1000 or f < 0.5", "pass"))
    log1, _, _ = _examples(pytester, monkeypatch, "d1", "--reprokit-profile=dev")
    log2, _, _ = _examples(pytester, monkeypatch, "d2", "--reprokit-profile=dev")
    assert len(log1.splitlines()) <= 10  # dev: few examples
    assert log1 != log2


# ---------------------------------------------------------------- data


def test_tiny_digits_fixture_is_a_standardised_split(pytester):
    pytester.makepyfile("""
        import torch
        def test_digits(tiny_digits):
            d = tiny_digits
            assert d.X_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
            assert d.X_train.shape[1] == 64 and d.n_classes == 10
            assert len(d.y_train) + len(d.y_test) == 1797
            assert d.X_train.mean(0).abs().max() < 1e-4
    """)
    pytester.runpytest().assert_outcomes(passed=1)


def test_tiny_digits_split_depends_only_on_the_seed():
    from reprokit.data import tiny_digits

    a, b, c = tiny_digits(n=200, seed=3), tiny_digits(n=200, seed=3), tiny_digits(n=200, seed=4)
    assert torch.equal(a.X_train, b.X_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.X_train, c.X_train)
    assert len(a.y_test) == 50 and len(a.y_train) == 150


def test_tiny_digits_standardises_with_training_statistics_only():
    from reprokit.data import tiny_digits

    raw = tiny_digits(n=300, seed=1, standardise=False)
    std = tiny_digits(n=300, seed=1)
    mean, sd = raw.X_train.mean(0), raw.X_train.std(0, unbiased=False)
    sd = torch.where(sd > 0, sd, torch.ones_like(sd))
    assert torch.allclose(std.X_test, (raw.X_test - mean) / sd, atol=1e-5)


def test_editing_returned_tensors_does_not_change_the_next_call():
    from reprokit.data import blobs, tiny_digits

    first = tiny_digits(n=50)
    first.X_train.zero_()
    assert tiny_digits(n=50).X_train.abs().sum() > 0
    b = blobs(seed=2)
    b.y_train.fill_(7)
    assert blobs(seed=2).y_train.max() < 3


def test_blobs_are_balanced_and_seeded():
    from reprokit.data import blobs

    b = blobs(n=90, features=4, classes=3, seed=5)
    labels = torch.cat([b.y_train, b.y_test])
    assert torch.bincount(labels).tolist() == [30, 30, 30]
    assert b.n_features == 4
    assert torch.equal(b.X_test, blobs(n=90, features=4, classes=3, seed=5).X_test)
    assert not torch.equal(b.X_test, blobs(n=90, features=4, classes=3, seed=6).X_test)


@pytest.mark.parametrize("kwargs", [{"n": 1}, {"n": 10_000}, {"test_fraction": 1.0}])
def test_tiny_digits_refuses_bad_sizes(kwargs):
    from reprokit.data import tiny_digits

    with pytest.raises(ValueError, match="expected"):
        tiny_digits(**kwargs)


@pytest.mark.slow
def test_xdist_workers_share_the_seed_and_report_claims(paper_dir):
    pytest.importorskip("xdist")
    paper_dir.makepyfile("""
        import pytest

        @pytest.mark.parametrize("i", range(4))
        def test_seed_and_claim(i, reprokit_seed, record_claim):
            with open(f"seed_{i}.txt", "w") as fh:
                fh.write(str(reprokit_seed))
            record_claim("acc-high", 0.95)
    """)
    result = paper_dir.runpytest_subprocess("-n", "2", "--reprokit-seed=random", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)
    header_seed = re.search(r"reprokit: seed (\d+)", result.stdout.str()).group(1)
    seeds = {(paper_dir.path / f"seed_{i}.txt").read_text() for i in range(4)}
    assert seeds == {header_seed}
    result.stdout.fnmatch_lines(["*= reprokit claims =*", "4 reproduced"])


@pytest.mark.slow
def test_bundled_examples_pass_and_reproduce_their_claims(pytester):
    result = pytester.runpytest_subprocess("--pyargs", "reprokit.examples", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed", 0) == 0 and outcomes.get("errors", 0) == 0, result.stdout.str()
    assert outcomes.get("passed", 0) >= 6
    result.stdout.fnmatch_lines(["*= reprokit claims =*", "3 reproduced"])
