"""``reprokit.questions``: the graded-test patterns every paper repeats, one call each.

The level-4 helpers run against the material ``reprokit new`` writes (a few forked hunts,
about 5 s); the rest are instant.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from reprokit.questions import (
    assert_choice,
    assert_hidden_chaff_caught,
    assert_own_code,
    assert_public_hunt,
    hunt_tests,
    into_model,
    submission_rng,
)
from reprokit.scaffold import new_paper


@pytest.mark.parametrize("given", ["b", "B", " (b) ", "b."])
def test_choice_reads_a_letter_however_it_is_written(given: str) -> None:
    assert assert_choice(given, "q1_answer") == "b"
    assert assert_choice(given, "q1_answer", answer="b") == "b"


@pytest.mark.parametrize("given", [..., 2, "bc", "e", ["b"]])
def test_choice_refuses_what_is_not_one_offered_letter(given: object) -> None:
    with pytest.raises(AssertionError, match="q1_answer"):
        assert_choice(given, "q1_answer")


def test_choice_with_the_wrong_letter_fails_without_revealing_the_answer() -> None:
    with pytest.raises(AssertionError) as e:
        assert_choice("a", "q1_answer", answer="c")
    assert "'c'" not in str(e.value) and "not the expected answer" in str(e.value)


def test_choice_refuses_an_object_that_claims_to_equal_everything() -> None:
    class Sly(str):
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = str.__hash__

    with pytest.raises(AssertionError):
        assert_choice(Sly("x"), "q1_answer", answer="b")


def test_submission_rng_is_fixed_by_the_reported_values() -> None:
    rows = [{"seed": s, "acc": 0.9 + s / 100} for s in range(20)]
    draws = [submission_rng(rows).randrange(20) for _ in range(3)]
    assert len(set(draws)) == 1
    others = {submission_rng(rows[:k]).randrange(k) for k in range(5, 20)}
    assert len(others) > 1, "other reports should draw other rows"


def test_into_model_loads_a_state_dict_and_explains_a_misfit() -> None:
    source = torch.nn.Linear(3, 2)
    target = into_model(source.state_dict(), torch.nn.Linear(3, 2), "train(...)")
    assert torch.equal(target.weight, source.weight)
    with pytest.raises(AssertionError, match="does not fit the authors' architecture Linear"):
        into_model(torch.nn.Linear(4, 2).state_dict(), torch.nn.Linear(3, 2), "train(...)")
    with pytest.raises(AssertionError, match="return model.state_dict"):
        into_model(source, torch.nn.Linear(3, 2), "train(...)")


def test_own_code_refuses_a_function_that_calls_the_code_it_replaces() -> None:
    def mine(x):
        return x * 2

    def borrowed(x):
        return torch.nn.functional.softmax(x, dim=0)

    x = torch.ones(3)
    assert torch.equal(assert_own_code(mine, (x,), forbidden_c=["softmax"]), x * 2)
    with pytest.raises(AssertionError, match="softmax"):
        assert_own_code(borrowed, (x,), forbidden_c=["softmax"], what="borrowed")


def test_own_code_refuses_a_layer_that_runs_torchs_batch_norm_however_reached() -> None:
    from reprokit.audit import TORCH_NORM_OPS

    class Subclassed(torch.nn.BatchNorm1d):
        pass

    def by_hand(x):
        return (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + 1e-5)

    x = torch.arange(8.0).reshape(4, 2)
    assert torch.allclose(assert_own_code(by_hand, (x,), forbidden_ops=TORCH_NORM_OPS),
                          Subclassed(2)(x).detach(), atol=1e-6)
    for borrowed in (Subclassed(2), lambda v: torch.nn.functional.batch_norm(v, None, None, training=True)):
        with pytest.raises(AssertionError, match="torch's native_batch_norm"):
            assert_own_code(borrowed, (x,), forbidden_ops=TORCH_NORM_OPS, what="the layer")


def test_hunt_tests_must_be_a_dict_of_functions() -> None:
    with pytest.raises(AssertionError, match="TESTS"):
        hunt_tests(...)
    with pytest.raises(AssertionError, match="function"):
        hunt_tests({"test_a": 1})


@pytest.fixture(scope="module")
def scaffold(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return new_paper(tmp_path_factory.mktemp("q") / "paper")


def test_level_4_helpers_score_chaffs_caught_and_zero_a_wheat_failure(
        scaffold: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(scaffold)  # material_path is the current folder outside grading

    def test_standardised_with_training_statistics(implementation):
        split = implementation.load_split(n_train=200)
        raw = split.X_train * split.std + split.mean
        assert torch.allclose(raw.mean(dim=0), split.mean)

    def test_evaluate_measures_in_eval_mode(implementation):
        split = implementation.load_split(n_train=50)
        model = implementation.MLP(dropout=0.75)
        accuracy = implementation.evaluate(model, split.X_test, split.y_test)
        model.eval()
        with torch.no_grad():
            expected = (model(split.X_test).argmax(dim=1) == split.y_test).float().mean().item()
        assert accuracy == expected

    def test_pins_the_authors_split(implementation):  # too strict: a wheat draws another split
        split = implementation.load_split(n_train=5)
        assert split.y_train.tolist() == [7, 1, 3, 5, 2]

    tests = {"test_standardised_with_training_statistics": test_standardised_with_training_statistics,
             "test_evaluate_measures_in_eval_mode": test_evaluate_measures_in_eval_mode}
    assert assert_public_hunt(tests, "authors/classifier.py").n_caught == 1
    assert_hidden_chaff_caught(tests, 1, n_chaffs=2)  # dropout_at_evaluation
    with pytest.raises(AssertionError, match="hidden chaff 2 NOT caught"):
        assert_hidden_chaff_caught(tests, 2, n_chaffs=2)  # shuffle_ignores_seed
    with pytest.raises(AssertionError, match="expected 3"):
        assert_hidden_chaff_caught(tests, 1, n_chaffs=3)
    strict = dict(tests, test_pins_the_authors_split=test_pins_the_authors_split)
    with pytest.raises(AssertionError, match="wheat"):
        assert_hidden_chaff_caught(strict, 1, n_chaffs=2)


def test_rows_to_rerun_draws_k_distinct_rows_from_the_submission_itself() -> None:
    from reprokit.questions import rows_to_rerun

    table = [{"seed": s, "acc": 0.9 + s / 100} for s in range(8)]
    drawn = rows_to_rerun(table, 8, 3)
    assert drawn == sorted(set(drawn)) and len(drawn) == 3 and all(0 <= i < 8 for i in drawn)
    assert rows_to_rerun(table, 8, 3) == drawn  # a regrade draws the same rows
    assert rows_to_rerun(table, 4, 5) == [0, 1, 2, 3]  # a short table: every row
    others = {tuple(rows_to_rerun([dict(r, acc=r["acc"] + e) for r in table], 8, 3))
              for e in (0.001, 0.002, 0.003, 0.004, 0.005)}
    assert len(others) > 1, "another table should draw other rows"
    with pytest.raises(ValueError):
        rows_to_rerun(table, 0, 3)
