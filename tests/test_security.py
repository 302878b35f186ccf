"""Grading that students cannot game: every attack scores no more than a blank notebook.

The corpus is in tests/security/attacks.py; the threat model in docs/security.md.
Each attack is graded end to end by reprokit's engine and through the Gradescope
entry point, on one small assignment, and the batch always completes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from reprokit import gradescope, sandbox
from reprokit.grading import grade

HERE = Path(__file__).parent / "security"
sys.path.insert(0, str(HERE))
from attacks import ATTACKS  # noqa: E402

needs_root = pytest.mark.skipif(
    not sandbox.can_drop_privileges(),
    reason="file-system defences need the grader to run as root (it drops the submission to another uid)",
)
FS_ATTACKS = {"tamper-tests-during-execution", "tamper-tests-from-background-thread",
              "tamper-tests-from-atexit", "delete-and-add-test-files", "edit-installed-grader-files",
              "read-hidden-material", "read-grader-memory", "forge-results"}
FAST = dict(timeout_s=15, question_timeout_s=10, memory_mb=2048)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny assignment built with Otter Assign, plus reprokit's manifest."""
    out = tmp_path_factory.mktemp("sec-build")
    subprocess.run(["otter", "assign", str(HERE / "sec.ipynb"), str(out), "--no-run-tests"],
                   check=True, capture_output=True)
    (zip_path,) = (out / "autograder").glob("sec-autograder*.zip")
    with zipfile.ZipFile(zip_path, "a") as zf:
        zf.writestr("reprokit.json", json.dumps({
            "public_files": ["public_data.txt"], "hidden_files": ["hidden_data.txt"],
            "seed": 42, "time_budget_s": 10}))
    return {"zip": zip_path, "solution": out / "autograder" / "sec.ipynb",
            "student": out / "student" / "sec.ipynb"}


def attack_notebook(built: dict[str, Path], cells: list[str], dest: Path) -> Path:
    nb = nbformat.read(built["student"], as_version=4)
    init = next(c for c in nb.cells if c.cell_type == "code")
    nb.cells = [init] + [nbformat.v4.new_code_cell(src) for src in cells]
    nbformat.write(nb, dest)
    return dest


@pytest.fixture(scope="module")
def blank_score(built: dict[str, Path]) -> float:
    result = grade(built["student"], built["zip"], **FAST)
    assert result.status == "graded"
    return result.score


def test_reference_solution_scores_full_marks(built: dict[str, Path]) -> None:
    result = grade(built["solution"], built["zip"], **FAST)
    assert (result.status, result.score, result.possible) == ("graded", 3.0, 3.0), result.questions


def test_blank_notebook_scores_zero(blank_score: float) -> None:
    assert blank_score == 0.0


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(p.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_scores_no_more_than_blank(name: str, built: dict[str, Path], blank_score: float,
                                          tmp_path: Path) -> None:
    if name in FS_ATTACKS and not sandbox.can_drop_privileges():
        pytest.skip("file-system defences need root")
    import otter

    import reprokit.plain

    guarded = [Path(reprokit.plain.__file__),
               Path(otter.__file__).parent / "test_files" / "exception_test.py", built["zip"]]
    before = _digest(guarded)
    nb = attack_notebook(built, ATTACKS[name], tmp_path / f"{name}.ipynb")
    result = grade(nb, built["zip"], **FAST)
    assert result.possible == 3.0, "points possible must come from the autograder"
    assert result.score <= blank_score, (name, result.status, result.message,
                                         {q.name: q.output for q in result.questions.values()})
    assert _digest(guarded) == before, "the submission changed the grader's files"


def test_budget_attacks_get_their_status(built: dict[str, Path], tmp_path: Path) -> None:
    statuses = {}
    for name in ("blow-time-budget-after-credit", "blow-memory-budget-after-credit",
                 "exit-process-after-credit"):
        nb = attack_notebook(built, ATTACKS[name], tmp_path / f"{name}.ipynb")
        statuses[name] = grade(nb, built["zip"], **FAST).status
    assert statuses == {
        "blow-time-budget-after-credit": "timeout",
        "blow-memory-budget-after-credit": "out-of-memory",
        "exit-process-after-credit": "error",
    }


def test_hanging_question_scores_zero_and_others_are_still_graded(built: dict[str, Path],
                                                                  tmp_path: Path) -> None:
    nb = attack_notebook(built, ["answer = 42\ndef square(x):\n    while True:\n        pass\n"],
                         tmp_path / "hang.ipynb")
    result = grade(nb, built["zip"], timeout_s=60, question_timeout_s=3)
    assert result.questions["q1"].score == 0.0
    assert "more than 3 CPU-seconds" in result.questions["q1"].output
    assert result.questions["q2"].score == 1.0


def test_lying_objects_are_refused_with_a_message(built: dict[str, Path], tmp_path: Path) -> None:
    nb = attack_notebook(built, ATTACKS["lying-float-subclass"], tmp_path / "liar.ipynb")
    result = grade(nb, built["zip"], **FAST)
    assert "Liar" in result.questions["q1"].output or "float" in result.questions["q1"].output
    assert result.score == 0.0


def _gradescope_root(built: dict[str, Path], submission: Path, root: Path) -> Path:
    for sub in ("source", "submission", "results"):
        (root / sub).mkdir(parents=True)
    with zipfile.ZipFile(built["zip"]) as zf:
        zf.extractall(root / "source")
    shutil.copy(submission, root / "submission" / "sec.ipynb")
    return root


QUICK_GRADESCOPE = {"tamper-tests-during-execution", "forge-results", "read-hidden-material",
                    "monkeypatch-grader-in-memory", "lying-eq-and-bool"}


@needs_root
@pytest.mark.parametrize("name", [
    pytest.param(n, marks=() if n in QUICK_GRADESCOPE else pytest.mark.slow) for n in sorted(ATTACKS)])
def test_attack_through_gradescope_entry_point(name: str, built: dict[str, Path],
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from functools import partial

    nb = attack_notebook(built, ATTACKS[name], tmp_path / f"{name}.ipynb")
    root = _gradescope_root(built, nb, tmp_path / "autograder")
    os.chmod(tmp_path, 0o755)
    # the entry point as Gradescope runs it, with this tiny assignment's short limits
    monkeypatch.setattr(gradescope, "grade", partial(gradescope.grade, **FAST))
    gradescope.main(root)
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] == 0.0, results
    graded = {t["name"]: t for t in results["tests"] if "max_score" in t and t["max_score"]}
    assert {t["extra_data"]["question"] for t in graded.values()} == {"q1", "q2"}
    assert all(t["score"] == 0.0 for t in graded.values())
    assert not (root / "source" / "tests" / "q9.py").exists()


@needs_root
def test_submission_runs_jailed_but_legitimate_work_still_works(built: dict[str, Path],
                                                                tmp_path: Path) -> None:
    """Imports, plots, files in its own folder and the public material keep working."""
    nb = attack_notebook(built, ['''
import torch, numpy as np, matplotlib.pyplot as plt
from sklearn.datasets import load_digits
X = load_digits().data
plt.plot(np.arange(3)); plt.savefig("plot.png")
open("public_data.txt").read()
answer = 42 if (len(X) == 1797 and open("plot.png", "rb").read(4) == b"\\x89PNG") else 0
def square(x):
    return float(torch.tensor(x) ** 2)
'''], tmp_path / "legit.ipynb")
    result = grade(nb, built["zip"], **FAST)
    assert (result.status, result.score) == ("graded", 3.0), (result.message, result.questions)
    assert {"uid", "network", "filesystem"} <= set(result.fingerprint["isolation"])


@pytest.mark.slow
def test_whole_corpus_through_regrade(built: dict[str, Path], tmp_path: Path) -> None:
    """One batch: every attack, the blank and the reference; it completes and no attack wins."""
    import csv

    from reprokit.regrade import regrade

    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copy(built["student"], subs / "blank.ipynb")
    shutil.copy(built["solution"], subs / "reference.ipynb")
    for name, cells in ATTACKS.items():
        attack_notebook(built, cells, subs / f"{name}.ipynb")
    summary = regrade(subs, built["zip"], jobs=2, out=tmp_path / "out", timeout_s=15,
                      memory_mb=2048)
    with open(summary.csv, newline="") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"blank", "reference", *ATTACKS}, "every submission gets a row"
    assert float(rows["reference"]["total"]) == 3.0
    blank = float(rows["blank"]["total"])
    winners = {n: rows[n]["total"] for n in ATTACKS if float(rows[n]["total"]) > blank}
    assert winners == {}, winners
    assert rows["blow-time-budget-after-credit"]["status"] == "timeout"
    assert rows["blow-memory-budget-after-credit"]["status"] == "out-of-memory"


# --------------------------------------------------------------------------- attacks on the host

from host_attacks import HOST_ATTACKS, WIRE_ATTACKS  # noqa: E402


def host_leftovers() -> dict[str, set]:
    """What a submission could leave on the machine: files in the shared /dev/shm and /tmp,
    System V IPC objects, and processes, of any sandbox uid (other programs on this machine
    may come and go meanwhile)."""
    import tempfile

    def sandboxed(path: str) -> bool:
        with contextlib.suppress(OSError):
            return os.stat(path, follow_symlinks=False).st_uid in sandbox.UID_RANGE
        return False

    ipc = set()
    for kind in ("shm", "sem", "msg"):
        with contextlib.suppress(OSError):
            lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()
            head = lines[0].split()
            for line in lines[1:]:
                row = dict(zip(head, line.split(), strict=False))
                if int(row["uid"]) in sandbox.UID_RANGE:
                    ipc.add(f"{kind} {row['key']} {row['id']}")
    return {
        "files": {os.path.join(d, n) for d in ("/dev/shm", tempfile.gettempdir(), "/var/tmp")
                  if os.path.isdir(d) for n in os.listdir(d) if sandboxed(os.path.join(d, n))},
        "ipc": ipc,
        "processes": {int(n) for n in os.listdir("/proc") if n.isdigit() and sandboxed(f"/proc/{n}")},
    }


def new_leftovers(before: dict[str, set]) -> dict[str, set]:
    """What appeared since ``before`` (processes get a moment to be reaped)."""
    import time

    for _ in range(20):
        after = host_leftovers()
        new = {k: after[k] - before[k] for k in after if after[k] - before[k]}
        if not new:
            return {}
        time.sleep(0.1)
    return new


def full_isolation() -> bool:
    return sandbox.can_drop_privileges() and os.path.exists("/proc/self/ns/pid")


needs_namespaces = pytest.mark.skipif(not full_isolation(), reason="needs root with namespaces")


@pytest.fixture
def host_listener():
    """A listener on the host's loopback that no submission may reach."""
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield s.getsockname()[1]
    s.close()


def host_attack_notebook(built: dict[str, Path], name: str, dest: Path, port: int) -> Path:
    cells = [c.replace("{port}", str(port)) for c in HOST_ATTACKS[name]]
    return attack_notebook(built, cells, dest)


QUICK_HOST = {"dev-shm-write", "proc-lists-host", "leave-a-daemon", "reach-host-listener",
              "huge-reply", "unknown-wire-tag"}


@needs_namespaces
@pytest.mark.parametrize("name", [  # the rest (about 25 s, a 10 s trickle among them) are slow
    pytest.param(n, marks=() if n in QUICK_HOST else pytest.mark.slow) for n in sorted(HOST_ATTACKS)])
def test_host_attack_scores_no_more_than_blank_and_leaves_nothing(
        name: str, built: dict[str, Path], blank_score: float, tmp_path: Path, host_listener: int) -> None:
    import time

    nb = host_attack_notebook(built, name, tmp_path / f"{name}.ipynb", host_listener)
    before = host_leftovers()
    t0 = time.monotonic()
    result = grade(nb, built["zip"], **FAST)
    took = time.monotonic() - t0
    assert result.possible == 3.0, "points possible must come from the autograder"
    assert result.score <= blank_score, (name, result.status, result.message,
                                         {q.name: q.output for q in result.questions.values()})
    assert took <= FAST["timeout_s"] + 10, f"{name}: the grade took {took:.0f} s"
    assert new_leftovers(before) == {}, f"{name} left this on the host"
    if name in WIRE_ATTACKS:
        assert result.status == "error", (result.status, result.message)
        assert "unreadable" in result.message
    assert set(result.fingerprint["isolation"]) == set(sandbox.LAYERS), result.fingerprint


@needs_namespaces
@pytest.mark.parametrize(("writer", "reader"), [("dev-shm-write", "dev-shm-read"),
                                                ("sysv-shm-create", "sysv-shm-find")])
def test_one_submission_cannot_read_what_another_left(writer: str, reader: str, built: dict[str, Path],
                                                      tmp_path: Path, host_listener: int) -> None:
    before = host_leftovers()
    grade(host_attack_notebook(built, writer, tmp_path / "a.ipynb", host_listener), built["zip"], **FAST)
    second = grade(host_attack_notebook(built, reader, tmp_path / "b.ipynb", host_listener),
                   built["zip"], **FAST)
    assert second.questions["q2"].score == 0.0, "the second submission found the first one's files"
    assert new_leftovers(before) == {}


@needs_namespaces
def test_a_grade_never_kills_another_graders_submission(built: dict[str, Path], tmp_path: Path,
                                                        host_listener: int) -> None:
    """A process of another uid (say a grader in a container on this kernel, which used the old
    fixed uid 61000) survives a submission that signals everything and the grade's cleanup."""
    import subprocess

    other = subprocess.Popen(["sleep", "120"], user=61000)
    try:
        nb = host_attack_notebook(built, "kill-every-process-in-reach", tmp_path / "k.ipynb",
                                  host_listener)
        grade(nb, built["zip"], **FAST)
        assert other.poll() is None, "the grade killed a process it did not start"
    finally:
        other.kill()
        other.wait()


def test_a_reply_with_an_unknown_tag_is_the_submissions_error_in_results_json(
        built: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host_listener: int) -> None:
    """Through the Gradescope entry point: status error, zero, every point still possible."""
    from functools import partial

    nb = host_attack_notebook(built, "unknown-wire-tag", tmp_path / "tag.ipynb", host_listener)
    root = _gradescope_root(built, nb, tmp_path / "autograder")
    os.chmod(tmp_path, 0o755)
    monkeypatch.setattr(gradescope, "grade", partial(gradescope.grade, **FAST))
    gradescope.main(root)
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] == 0.0
    graded = {t["name"]: t for t in results["tests"] if t.get("max_score")}
    assert sum(t["max_score"] for t in graded.values()) == 3.0, "every point still possible"
    assert all(t["score"] == 0.0 for t in graded.values())
    assert "error" in results["output"]
    (report,) = [t for t in results["tests"] if t["name"].startswith("Grading environment")]
    assert report["visibility"] == "hidden", "students must not see the isolation report"
    (line,) = [x for x in report["output"].splitlines() if x.startswith("isolation layers: ")]
    assert "missing layers: " in report["output"]
    if full_isolation():
        assert set(line.removeprefix("isolation layers: ").split(", ")) == set(sandbox.LAYERS), line


_GRADE_SCRIPT = """
import json, sys
from reprokit.grading import grade
for nb in sys.argv[2:]:
    r = grade(nb, sys.argv[1], timeout_s=15, question_timeout_s=10, memory_mb=2048)
    print(json.dumps({"nb": nb, "score": r.score, "status": r.status, "message": r.message,
                      "fingerprint": r.fingerprint}))
"""


def _drop_cap_sys_admin() -> None:  # pragma: no cover - runs between fork and exec
    import ctypes

    if ctypes.CDLL(None, use_errno=True).prctl(24, 21, 0, 0, 0) != 0:  # PR_CAPBSET_DROP, CAP_SYS_ADMIN
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _python_reachable_by_others() -> bool:
    """Without a jail the submission's uid reads Python where it is installed: every folder above
    it must let others through (not so for a Python under /root, mode 700)."""
    path = Path(sys.prefix).resolve()
    return all(os.stat(p).st_mode & 0o001 for p in [path, *path.parents])


@needs_namespaces
@pytest.mark.slow  # one grader start-up and five small grades: about 40 s on 2 cores
def test_isolation_report_is_truthful_for_root_without_cap_sys_admin(
        built: dict[str, Path], tmp_path: Path, host_listener: int) -> None:
    """Root without CAP_SYS_ADMIN, as under Docker's default profile: no namespace can be made.
    The report says so, layer by layer (never 'network' when the submission reached the host's
    loopback), and the fallbacks still leave nothing behind: the uid's processes are killed and
    its files and System V objects in the shared places removed."""
    names = ["reach-host-listener", "dev-shm-write", "sysv-shm-create", "leave-a-daemon", "proc-lists-host"]
    nbs = [str(host_attack_notebook(built, n, tmp_path / f"{n}.ipynb", host_listener)) for n in names]
    os.chmod(tmp_path, 0o755)
    before = host_leftovers()
    out = subprocess.run([sys.executable, "-c", _GRADE_SCRIPT, str(built["zip"]), *nbs],
                         capture_output=True, text=True, preexec_fn=_drop_cap_sys_admin, timeout=600)
    rows = {Path(r["nb"]).stem: r for r in map(json.loads, out.stdout.splitlines())}
    assert set(rows) == set(names), out.stderr[-3000:]
    for name, row in rows.items():
        fp = row["fingerprint"]
        assert set(fp["isolation"]) == {"uid", "limits"}, (name, fp)
        assert set(fp["isolation_missing"]) == {"network", "ipc", "pid", "filesystem", "disk", "dev"}
        assert "CLONE_NEWNET" in fp["isolation_missing"]["network"]
    assert new_leftovers(before) == {}
    if not _python_reachable_by_others():
        pytest.skip("report checked; without a jail the sandbox uid cannot read this Python, so the "
                    "attacks themselves did not run (a folder above it is private)")
    # without a network namespace the submission does reach the host: the report must not hide it
    assert rows["reach-host-listener"]["score"] == 1.0, {n: (r["status"], r["message"]) for n, r in rows.items()}
    assert new_leftovers(before) == {}


@needs_namespaces
@pytest.mark.slow  # 14 small grades, two at a time, one of them a 15 s trickle: about 60 s on 2 cores
def test_host_corpus_through_regrade(built: dict[str, Path], tmp_path: Path, host_listener: int) -> None:
    """One parallel batch of the host attacks: none wins, the wire attacks are the submissions'
    errors, grades.csv carries each isolation report, and nothing is left on the host."""
    import csv

    from reprokit.regrade import regrade

    subs = tmp_path / "subs"
    subs.mkdir()
    shutil.copy(built["student"], subs / "blank.ipynb")
    for name in HOST_ATTACKS:
        host_attack_notebook(built, name, subs / f"{name}.ipynb", host_listener)
    before = host_leftovers()
    summary = regrade(subs, built["zip"], jobs=2, out=tmp_path / "out", timeout_s=15, memory_mb=2048)
    with open(summary.csv, newline="") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"blank", *HOST_ATTACKS}
    blank = float(rows["blank"]["total"])
    assert {n: rows[n]["total"] for n in HOST_ATTACKS if float(rows[n]["total"]) > blank} == {}
    assert {n: rows[n]["status"] for n in WIRE_ATTACKS} == dict.fromkeys(WIRE_ATTACKS, "error")
    assert all(float(rows[n]["possible"]) == 3.0 for n in rows)
    for name, row in rows.items():
        fp = json.loads(row["fingerprint"])
        assert (set(fp["isolation"]), fp["isolation_missing"]) == (set(sandbox.LAYERS), {}), name
    assert new_leftovers(before) == {}
