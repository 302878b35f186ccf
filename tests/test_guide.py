"""docs/testing-your-model.md: every code block runs, and the output it shows is what runs print.

Blocks are taken in order. A ``python`` block whose first line is ``# file: NAME`` is
written to a scratch folder; any other ``python`` block runs there (one namespace, RNG
states and the hypothesis profile restored afterwards); a ``bash`` block's lines run
there as shell commands (``python`` meaning this interpreter); a ``text`` block right
after a ``bash`` block lists lines its output must contain, ``...`` standing for any text.
Cost: two pytest subprocesses, about 10 s on an idle 2-core machine.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import settings

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "testing-your-model.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks() -> list[tuple[str, str]]:
    """(language, body) of every fenced block in the guide, in order."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(GUIDE.read_text())]


def pattern(line: str) -> re.Pattern[str]:
    """A shown output line as a regex: its words in order, any run of spaces matching any
    other (pytest indents its ``E`` lines as it likes), ``...`` matching anything."""
    return re.compile(".*".join(r"\s+".join(re.escape(word) for word in part.split())
                                for part in line.strip().split("...")))


def test_the_guide_has_the_blocks_this_test_runs() -> None:
    languages = {lang for lang, _ in blocks()}
    assert languages <= {"python", "bash", "text"}, languages
    assert sum(lang == "bash" for lang, _ in blocks()) >= 2


def test_every_block_of_the_guide_runs_and_shows_what_it_prints(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(tmp_path)] + [p for p in sys.path if p.endswith("src")]
        + [os.environ.get("PYTHONPATH", "")]))
    namespace: dict[str, object] = {"__name__": "guide"}
    profile = settings.get_current_profile_name()
    output: str | None = None
    try:
        with torch.random.fork_rng(devices=[]):
            for number, (lang, body) in enumerate(blocks(), 1):
                where = f"block {number} ({lang})"
                first = body.splitlines()[0] if body.strip() else ""
                if lang == "python" and first.startswith("# file: "):
                    (tmp_path / first.removeprefix("# file: ").strip()).write_text(body)
                    output = None
                elif lang == "python":
                    exec(compile(body, f"{GUIDE.name}:{where}", "exec"), namespace)  # noqa: S102
                    output = None
                elif lang == "bash":
                    output = ""
                    for command in filter(None, (c.strip() for c in body.splitlines())):
                        command = re.sub(r"^python ", f"{sys.executable} ", command)
                        run = subprocess.run(command, shell=True, cwd=tmp_path, env=env,
                                             capture_output=True, text=True, timeout=600)
                        output += run.stdout + run.stderr
                elif lang == "text":
                    assert output is not None, f"{where}: expected a bash block before it"
                    for line in filter(str.strip, body.splitlines()):
                        assert pattern(line).search(output), \
                            f"{where}: {line!r} not in the output:\n{output}"
    finally:
        settings.load_profile(profile)
