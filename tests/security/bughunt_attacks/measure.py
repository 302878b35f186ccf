"""Grade every level-4 attack (and the honest suites) and print each one's q1 score.

    PYTHONPATH=src python tests/security/bughunt_attacks/measure.py \\
        dist/zhang2017-random-labels/04-validate [names ...]
    PYTHONPATH=src python tests/security/bughunt_attacks/measure.py \\
        dist/ioffe2015-batchnorm/04-validate [names ...]

The folder is a built level 04 (``reprokit build ... --level 04``): its student notebook
is the base of every submission and its autograder zip grades them, through
``reprokit.grading.grade`` (the engine behind ``reprokit grade`` and ``regrade``). After
each grade it lists what the submission left in /dev/shm and whether any of it holds a
hidden wheat's or chaff's source text.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
import zipfile
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from bughunt_attacks.attacks import attacks_for, honest_for  # noqa: E402


def submission(student: Path, cell: str, dest: Path, *, answers: dict[str, str] | None = None
               ) -> Path:
    """The student notebook with question 1's answer (``...`` after the example test, in the
    one code cell that defines tests) replaced by ``cell``; ``answers`` fills in
    ``q2_answer = ...`` and the like."""
    nb = nbformat.read(student, as_version=4)
    (index,) = [i for i, c in enumerate(nb.cells)
                if c.cell_type == "code" and "def test_" in c.source]
    example, placeholder, _ = nb.cells[index].source.rpartition("...")
    assert placeholder, "the answer cell has no ... placeholder"
    nb.cells[index].source = example.rstrip() + "\n\n" + cell
    for name, answer in (answers or {}).items():
        for c in nb.cells:
            if c.cell_type == "code" and c.source.strip() == f"{name} = ...":
                c.source = c.source.replace("...", f'"{answer}"')
    nbformat.write(nb, dest)
    return dest


def hidden_sources(autograder: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(autograder) as zf:
        return {n: zf.read(n) for n in zf.namelist()
                if n.startswith(("files/wheats/", "files/chaffs/hidden/")) and n.endswith(".py")}


def leaked(sources: dict[str, bytes]) -> list[str]:
    """Hidden files whose source text (or its docstring) lies anywhere under /dev/shm."""
    found = set()
    for path in Path("/dev/shm").rglob("*"):
        try:
            data = path.read_bytes() if path.is_file() else b""
        except OSError:
            continue
        for name, text in sources.items():
            doc = text.split(b'"""')[1] if text.count(b'"""') >= 2 else text
            if text in data or doc in data:
                found.add(name)
    return sorted(found)


def main(level_dir: str, names: list[str]) -> None:
    from reprokit.grading import grade

    level = Path(level_dir)
    student = next((level / "student").glob("*.ipynb"))
    autograder = next(level.glob("*-autograder.zip"))
    sources = hidden_sources(autograder)
    work = Path("/tmp/reprokit-bughunt-attacks")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    paper = level.resolve().parent.name
    cases = {**{f"attack:{k}": v["cell"] for k, v in attacks_for(paper).items()},
             **{f"honest:{k}": v for k, v in honest_for(paper).items()}}
    if names:
        cases = {k: v for k, v in cases.items() if k.split(":", 1)[1] in names or k in names}
    for name, cell in cases.items():
        shutil.rmtree("/dev/shm/reprokit-exfil", ignore_errors=True)
        nb = submission(student, cell, work / f"{name.split(':')[1]}.ipynb")
        t0 = time.monotonic()
        result = grade(nb, autograder, timeout_s=1800, question_timeout_s=1500)
        q1 = result.questions["q1"]
        row = {"case": name, "status": result.status, "q1": q1.score, "q1_possible": q1.possible,
               "seconds": round(time.monotonic() - t0, 1), "hidden_sources_in_dev_shm": leaked(sources)}
        print(json.dumps(row), flush=True)
        if q1.score and name.startswith("attack:"):
            print("   ", q1.output.replace("\n", " | ")[-700:], flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
