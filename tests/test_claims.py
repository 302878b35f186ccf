"""Behaviour of reprokit.claims: paper.yaml schema errors and reproduced/not/inconclusive verdicts."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
import torch

from reprokit.claims import ClaimsError, find_paper, load_paper, parse_paper, t_quantile_975
from reprokit.plain import UntrustedValue

GOOD = """\
paper:
  id: zhang2017-random-labels
  title: Understanding deep learning requires rethinking generalization
  authors: [Chiyuan Zhang, Samy Bengio, Moritz Hardt, Benjamin Recht, Oriol Vinyals]
  year: 2017
  venue: ICLR
  url: https://arxiv.org/abs/1611.03530
time_budget_s: 60
claims:
  - id: random-labels-memorised
    statement: An over-parameterised MLP reaches 100% training accuracy on random labels.
    source: "Table 1; Fig. 1a"
    paper_value: 1.0
    expected: 1.0
    tolerance: 0.01
    level: 2
    unit: accuracy
  - id: random-labels-test-chance
    statement: Test accuracy on random labels falls to chance.
    source: "Table 1"
    interval: [0.05, 0.15]
    level: [2, 3]
  - id: true-labels-generalise
    statement: With true labels the test accuracy is well above chance.
    source: "Table 1"
    expected: 0.5
    relation: ">"
"""


def write(tmp_path, text, name="paper.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def good_data():
    import yaml

    return yaml.safe_load(GOOD)


@pytest.fixture
def paper(tmp_path):
    return load_paper(write(tmp_path, GOOD))


# ---------------------------------------------------------------- loading


def test_load_paper_reads_citation_claims_and_budget(paper, tmp_path):
    assert paper.id == "zhang2017-random-labels"
    assert paper.year == 2017 and paper.venue == "ICLR"
    assert paper.authors[0] == "Chiyuan Zhang"
    assert paper.time_budget_s == 60
    assert list(paper.claims) == [
        "random-labels-memorised", "random-labels-test-chance", "true-labels-generalise"]
    assert paper.path == tmp_path / "paper.yaml"
    assert paper.citation.startswith("Chiyuan Zhang et al. (2017).")


def test_claim_fields_and_levels(paper):
    c = paper["random-labels-memorised"]
    assert c.source == "Table 1; Fig. 1a"
    assert c.band == pytest.approx((0.99, 1.01))
    assert c.levels == (2,)
    assert paper["random-labels-test-chance"].levels == (2, 3)
    assert [x.id for x in paper.for_level(3)] == [
        "random-labels-test-chance", "true-labels-generalise"]


def test_load_paper_accepts_the_folder(tmp_path):
    write(tmp_path, GOOD)
    assert load_paper(tmp_path).id == "zhang2017-random-labels"


def test_unknown_claim_id_suggests_the_closest(paper):
    with pytest.raises(KeyError, match="did you mean 'random-labels-memorised'"):
        paper["random-labels-memorized"]


def test_find_paper_walks_up_from_a_test_file(tmp_path):
    write(tmp_path, GOOD)
    nested = tmp_path / "a" / "b"
    nested.mkdir(parents=True)
    test_file = nested / "test_x.py"
    test_file.write_text("")
    assert find_paper(test_file) == tmp_path / "paper.yaml"


# ---------------------------------------------------------------- schema errors


def mutate(fn):
    data = good_data()
    fn(data)
    return data


@pytest.mark.parametrize(
    ("change", "key", "problem"),
    [
        (lambda d: d["claims"][2].__setitem__("tolerance", "abc"), "claims[2]",
         "exactly one of tolerance, interval or relation"),
        (lambda d: d["claims"][0].__setitem__("tolerance", "abc"), "claims[0].tolerance",
         "expected a number, got 'abc'"),
        (lambda d: d["claims"][0].__setitem__("tolerance", -0.1), "claims[0].tolerance",
         "expected a number >= 0"),
        (lambda d: d["claims"][0].__setitem__("tolerance", True), "claims[0].tolerance",
         "expected a number, got True"),
        (lambda d: d["claims"][0].pop("tolerance"), "claims[0]", "got none"),
        (lambda d: d["claims"][0].pop("source"), "claims[0].source", "required key is missing"),
        (lambda d: d["claims"][0].__setitem__("tolerence", 0.1), "claims[0].tolerence",
         "did you mean 'tolerance'"),
        (lambda d: d["claims"][1].__setitem__("interval", [0.2, 0.1]), "claims[1].interval",
         "is above high"),
        (lambda d: d["claims"][1].__setitem__("interval", [0.2]), "claims[1].interval",
         "expected [low, high]"),
        (lambda d: d["claims"][2].__setitem__("relation", "=>"), "claims[2].relation",
         "expected one of >, >=, <, <="),
        (lambda d: d["claims"][2].pop("expected"), "claims[2].expected", "required with relation"),
        (lambda d: d["claims"][1].__setitem__("level", 0), "claims[1].level",
         "expected a whole number >= 1"),
        (lambda d: d["claims"][1].__setitem__("id", "random-labels-memorised"), "claims[1].id",
         "duplicate claim id"),
        (lambda d: d["claims"][0].__setitem__("id", "has space"), "claims[0].id",
         "expected an id"),
        (lambda d: d.__setitem__("claims", []), "claims", "non-empty list"),
        (lambda d: d.pop("paper"), "paper", "required key is missing"),
        (lambda d: d["paper"].pop("title"), "paper.title", "required key is missing"),
        (lambda d: d["paper"].__setitem__("year", "2017"), "paper.year", "whole number"),
        (lambda d: d.__setitem__("time_budget_s", 0), "time_budget_s", "positive number"),
        (lambda d: d.__setitem__("extras", 1), "extras", "unknown key"),
        (lambda d: d["claims"].__setitem__(0, "just text"), "claims[0]", "expected a mapping"),
    ],
)
def test_schema_error_names_file_and_key_path(change, key, problem):
    with pytest.raises(ClaimsError) as info:
        parse_paper(mutate(change), "paper.yaml")
    assert info.value.key == key
    assert problem in info.value.problem
    assert str(info.value).startswith(f"paper.yaml: {key}: ")


def test_spec_example_message_for_bad_tolerance():
    data = mutate(lambda d: d["claims"].append(dict(d["claims"][0], id="third")))
    data["claims"][3]["tolerance"] = "abc"
    data["claims"].pop(1)
    with pytest.raises(ClaimsError, match=r"^paper\.yaml: claims\[2\]\.tolerance: expected a number, got 'abc'$"):
        parse_paper(data, "paper.yaml")


def test_missing_file_is_a_claims_error(tmp_path):
    with pytest.raises(ClaimsError, match="file not found"):
        load_paper(tmp_path / "nope.yaml")


def test_invalid_yaml_names_the_line(tmp_path):
    path = write(tmp_path, "paper:\n  id: x\n  title: [unclosed\n")
    with pytest.raises(ClaimsError, match=r"line \d+: not valid YAML"):
        load_paper(path)


def test_duplicate_yaml_key_is_refused(tmp_path):
    path = write(tmp_path, GOOD.replace("    tolerance: 0.01\n", "    tolerance: 0.01\n    tolerance: 0.5\n"))
    with pytest.raises(ClaimsError, match="appears twice"):
        load_paper(path)


# ---------------------------------------------------------------- verdicts


def test_single_value_in_band_is_reproduced(paper):
    v = paper["random-labels-memorised"].compare(0.995)
    assert v.status == "reproduced" and v.reproduced
    assert v.n == 1 and v.value == 0.995
    assert "0.995" in v.reason and "[0.99, 1.01]" in v.reason


def test_single_value_out_of_band_is_not_reproduced(paper):
    v = paper["random-labels-memorised"].compare(0.9)
    assert v.status == "not reproduced" and not v.reproduced
    assert "below" in v.reason and "0.9" in v.reason


def test_seeds_with_interval_inside_band_are_reproduced(paper):
    v = paper["random-labels-memorised"].compare([0.999, 1.0, 0.998, 1.0, 0.999])
    assert v.status == "reproduced"
    assert v.n == 5
    assert v.mean == pytest.approx(np.mean([0.999, 1.0, 0.998, 1.0, 0.999]))
    assert v.std == pytest.approx(np.std([0.999, 1.0, 0.998, 1.0, 0.999], ddof=1))
    assert v.band[0] <= v.ci[0] <= v.ci[1] <= v.band[1]


def test_seeds_with_interval_outside_band_are_not_reproduced(paper):
    v = paper["random-labels-memorised"].compare([0.80, 0.82, 0.81])
    assert v.status == "not reproduced"
    assert v.ci[1] < v.band[0]
    assert "entirely below" in v.reason


def test_seeds_straddling_the_edge_are_inconclusive(paper):
    v = paper["random-labels-memorised"].compare([0.97, 1.0, 0.985, 1.0])
    assert v.status == "inconclusive"
    assert v.ci[0] < v.band[0] < v.ci[1]
    assert "more seeds" in v.reason


def test_inconclusive_becomes_reproduced_with_enough_agreeing_seeds(paper):
    claim = paper["random-labels-memorised"]
    assert claim.compare([0.99, 1.0]).status == "inconclusive"
    assert claim.compare([0.995, 0.996, 0.994, 0.995, 0.996, 0.995]).status == "reproduced"


def test_ci_uses_student_t(paper):
    values = [0.1, 0.12, 0.11]
    v = paper["random-labels-test-chance"].compare(values)
    half = t_quantile_975(2) * np.std(values, ddof=1) / math.sqrt(3)
    assert v.ci == pytest.approx((np.mean(values) - half, np.mean(values) + half))


def test_t_quantile_is_close_to_normal_for_many_seeds():
    assert t_quantile_975(1) == pytest.approx(12.706)
    assert t_quantile_975(31) < t_quantile_975(30)
    assert t_quantile_975(1000) == pytest.approx(1.962, abs=1e-3)
    assert t_quantile_975(60) == pytest.approx(2.000, abs=2e-3)


@pytest.mark.parametrize(
    ("relation", "value", "status"),
    [(">", 0.6, "reproduced"), (">", 0.5, "not reproduced"), (">=", 0.5, "reproduced"),
     ("<", 0.4, "reproduced"), ("<", 0.5, "not reproduced"), ("<=", 0.5, "reproduced"),
     ("<", 0.7, "not reproduced")],
)
def test_relations_compare_against_expected(relation, value, status):
    data = good_data()
    data["claims"][2]["relation"] = relation
    claim = parse_paper(data)["true-labels-generalise"]
    assert claim.compare(value).status == status


def test_relation_with_seeds_can_be_inconclusive():
    claim = parse_paper(good_data())["true-labels-generalise"]
    assert claim.compare([0.45, 0.7, 0.6]).status == "inconclusive"
    assert claim.compare([0.8, 0.82, 0.81]).status == "reproduced"
    assert claim.compare([0.2, 0.21, 0.19]).status == "not reproduced"


def test_nan_is_not_reproduced(paper):
    v = paper["random-labels-memorised"].compare([1.0, float("nan")])
    assert v.status == "not reproduced"
    assert "non-finite" in v.reason


def test_arrays_and_tensors_are_read_as_seeds(paper):
    claim = paper["random-labels-memorised"]
    assert claim.compare(np.array([1.0, 0.999, 1.0])).n == 3
    assert claim.compare(torch.tensor([1.0, 0.999])).n == 2
    assert claim.compare(torch.tensor(0.995)).status == "reproduced"
    assert claim.compare(np.float32(0.995)).status == "reproduced"


def test_objects_that_fake_numbers_are_refused(paper):
    class AlwaysEqual(float):
        def __eq__(self, other):
            return True

        def __lt__(self, other):
            return False

        def __gt__(self, other):
            return False

    claim = paper["random-labels-memorised"]
    with pytest.raises(UntrustedValue, match="got .*AlwaysEqual"):
        claim.compare(AlwaysEqual(0.1))
    with pytest.raises(UntrustedValue):
        claim.compare([1.0, AlwaysEqual(0.1)])


def test_no_values_is_an_error(paper):
    with pytest.raises(ValueError, match="no values"):
        paper["random-labels-memorised"].compare([])
