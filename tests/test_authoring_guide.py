"""docs/authoring.md stays true to the code: its YAML parses with reprokit's own readers, its
commands and options exist, and what it shows of the scaffold is what ``reprokit new`` writes.

Instant: nothing is built or graded (``tests/test_scaffold.py`` builds the scaffold).
"""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
import yaml

from reprokit import questions
from reprokit.claims import parse_paper
from reprokit.cli import main
from reprokit.mutation import read_settings
from reprokit.scaffold import new_paper, template_root

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "authoring.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(GUIDE.read_text()) if lang == language]


def test_the_paper_yaml_example_is_valid() -> None:
    (example,) = [b for b in blocks("yaml") if b.startswith("paper:")]
    paper = parse_paper(yaml.safe_load(example), "docs/authoring.md")
    assert paper["mlp-beats-chance"].compare(0.95).status == "reproduced"
    assert paper["mlp-beats-chance"].compare(0.5).status == "not reproduced"


def test_the_mutation_example_is_valid_and_matches_the_scaffold(tmp_path: Path) -> None:
    (example,) = [b for b in blocks("yaml") if b.startswith("mutation:")]
    (tmp_path / "paper.yaml").write_text(example)
    shown = read_settings(tmp_path)
    shipped = read_settings(new_paper(tmp_path / "scaffold"))
    assert (shown.threshold, shown.max_per_question) == (shipped.threshold, shipped.max_per_question)
    assert shown.equivalent == shipped.equivalent


def test_the_assignment_config_example_is_the_scaffolds_level_4_config() -> None:
    import json

    (example,) = [b for b in blocks("yaml") if b.startswith("# ASSIGNMENT CONFIG")]
    nb = json.loads((template_root() / "04-validate.ipynb").read_text())
    shipped = yaml.safe_load("".join(nb["cells"][0]["source"]).replace("{{PAPER_ID}}", "my-paper"))
    assert yaml.safe_load(example) == shipped


def test_every_command_and_option_in_the_guide_exists() -> None:
    lines = [line for block in blocks("bash") for line in block.splitlines() if line.startswith("reprokit ")]
    assert lines
    for line in lines:
        words = line.split()
        command = main.get_command(click.Context(main), words[1])
        assert command is not None, line
        known = {opt for p in command.params for opt in getattr(p, "opts", [])}
        for word in words[2:]:
            if word.startswith("-"):
                assert word in known, f"{line}: {word} is not an option of reprokit {words[1]}"


@pytest.mark.parametrize("name", ["assert_public_hunt", "assert_hidden_chaff_caught", "rows_to_rerun",
                                  "assert_own_code", "assert_choice", "into_model"])
def test_the_helpers_the_guide_names_exist(name: str) -> None:
    assert name in GUIDE.read_text() and name in questions.__all__


def test_the_chaff_example_is_the_scaffolds_chaff() -> None:
    (example,) = [b for b in blocks("python") if "implementation = derive(" in b]
    shipped = (template_root() / "chaffs" / "hidden" / "dropout_at_evaluation.py").read_text()
    body = example.split('"""')[-1].strip()
    assert body and body in shipped, "the guide's chaff differs from chaffs/hidden/dropout_at_evaluation.py"
