"""``reprokit regrade``: a class graded in parallel, resumably, with every bad submission contained.

The autograder is built once per session with ``otter assign`` from
tests/fixtures/regrade-master/tiny.ipynb (q1: ``square``, 2 points; q2: ``answer``, 1 point).
The sample submissions, good and bad, are in tests/fixtures/submissions/.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import nbformat
import pytest
from click.testing import CliRunner

from reprokit.grading import AutograderError, GradeResult, QuestionScore
from reprokit.regrade import (
    Submission,
    Submitter,
    content_digest,
    csv_rows,
    discover_submissions,
    read_gradescope_metadata,
    regrade,
    regrade_command,
    result_key,
    write_histogram,
)

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLES = FIXTURES / "submissions"
MASTER = FIXTURES / "regrade-master" / "tiny.ipynb"
QUICK = dict(jobs=2, timeout_s=15, memory_mb=4096)


@pytest.fixture(scope="session")
def tiny_autograder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny assignment's autograder zip, with reprokit's manifest added."""
    out = tmp_path_factory.mktemp("tiny-build")
    subprocess.run(["otter", "assign", str(MASTER), str(out), "--no-run-tests"], check=True,
                   capture_output=True)
    (zip_path,) = (out / "autograder").glob("tiny-autograder*.zip")
    with zipfile.ZipFile(zip_path, "a") as zf:
        zf.writestr("reprokit.json", json.dumps({
            "paper": "tiny", "level": "tiny", "notebook": "tiny.ipynb", "public_files": [],
            "hidden_files": [], "time_budget_s": 10, "seed": 42}))
    return zip_path


def read_csv(path: Path, drop: tuple[str, ...] = ("duration_s", "cpu_s")) -> list[dict]:
    with path.open(newline="") as f:
        return [{k: v for k, v in row.items() if k not in drop} for row in csv.DictReader(f)]


def notebook(dest: Path, *cells: str) -> Path:
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells]),
                   dest)
    return dest


def result(status: str, q1: float, q2: float) -> GradeResult:
    qs = {"q1": QuestionScore("q1", q1, 2.0), "q2": QuestionScore("q2", q2, 1.0)}
    return GradeResult(status, qs, q1 + q2, 3.0, 0.5, "", {"seed": 42})


# --------------------------------------------------------------------------- finding submissions


def test_plain_folder_students_are_file_stems_sorted(tmp_path: Path) -> None:
    for name in ("zoe.ipynb", "adam.ipynb", "mia.zip", "notes.txt", ".hidden.ipynb"):
        (tmp_path / name).write_text("{}")
    (tmp_path / "bob").mkdir()
    (tmp_path / "bob" / "hw.ipynb").write_text("{}")
    (tmp_path / "empty-dir").mkdir()
    subs = discover_submissions(tmp_path)
    assert [s.id for s in subs] == ["adam", "bob", "mia", "zoe"]
    assert [s.students for s in subs] == [["adam"], ["bob"], ["mia"], ["zoe"]]


def test_unsafe_student_names_become_distinct_file_names(tmp_path: Path) -> None:
    (tmp_path / "a b.ipynb").write_text("{}")
    (tmp_path / "a?b.ipynb").write_text("{}")
    ids = [s.id for s in discover_submissions(tmp_path)]
    assert len(set(ids)) == 2 and all("/" not in i and " " not in i and "?" not in i for i in ids)


def test_folder_without_submissions_says_what_was_expected(tmp_path: Path) -> None:
    (tmp_path / "readme.md").write_text("hi")
    with pytest.raises(Exception, match="no submissions found.*ipynb"):
        discover_submissions(tmp_path)


GRADESCOPE_YML = """\
submission_111:
  :submitters:
  - :name: Ada Lovelace
    :sid: '1815'
    :email: ada@example.edu
  :created_at: 2026-11-20 10:00:00.000000000 -08:00
  :score: !ruby/object:BigDecimal 18:0.3E1
  :status: processed
submission_222:
  :submitters:
  - :name: Alan Turing
    :sid: '1912'
    :email: alan@example.edu
  - :name: Grace Hopper
    :email: grace@example.edu
submission_333:
  :submitters:
  - :name: Gone Missing
    :sid: '404'
"""


def gradescope_export(root: Path, notebooks: dict[str, Path]) -> Path:
    root.mkdir()
    (root / "submission_metadata.yml").write_text(GRADESCOPE_YML)
    for folder, nb in notebooks.items():
        (root / folder).mkdir()
        shutil.copy(nb, root / folder / "tiny.ipynb")
    return root


def test_gradescope_metadata_gives_every_submitter(tmp_path: Path) -> None:
    (tmp_path / "m.yml").write_text(GRADESCOPE_YML)
    meta = read_gradescope_metadata(tmp_path / "m.yml")
    assert meta["submission_111"] == (Submitter("Ada Lovelace", "ada@example.edu", "1815"),)
    assert [s.student for s in meta["submission_222"]] == ["1912", "grace@example.edu"]


def test_gradescope_export_skips_folders_it_does_not_have(tmp_path: Path) -> None:
    root = gradescope_export(tmp_path / "export", {"submission_111": SAMPLES / "full.ipynb",
                                                   "submission_222": SAMPLES / "partial.ipynb"})
    subs = discover_submissions(root)
    assert [s.id for s in subs] == ["submission_111", "submission_222"]
    assert subs[1].students == ["1912", "grace@example.edu"]


# --------------------------------------------------------------------------- keys, rows, plots


def test_result_key_changes_with_either_content(tmp_path: Path) -> None:
    sub, ag = tmp_path / "s.ipynb", tmp_path / "ag.zip"
    sub.write_text("one")
    ag.write_text("grader")
    key = result_key(content_digest(sub), content_digest(ag))
    assert key == result_key(content_digest(sub), content_digest(ag))
    sub.write_text("two")
    assert result_key(content_digest(sub), content_digest(ag)) != key
    sub.write_text("one")
    ag.write_text("grader v2")
    assert result_key(content_digest(sub), content_digest(ag)) != key


def test_folder_digest_depends_on_names_and_contents(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.ipynb").write_text("same")
    before = content_digest(tmp_path / "a")
    (tmp_path / "a" / "x.ipynb").rename(tmp_path / "a" / "y.ipynb")
    assert content_digest(tmp_path / "a") != before


def test_grade_sheet_rows_sorted_by_student_one_per_group_member(tmp_path: Path) -> None:
    subs = [Submission("s2", tmp_path, (Submitter("Zed", "z@x", "9"), Submitter("Amy", "a@x", "1"))),
            Submission("s1", tmp_path, (Submitter("Bo", "b@x", "5"),))]
    header, rows = csv_rows(subs, {"s1": result("graded", 2, 1), "s2": result("timeout", 0, 0)})
    assert header[:6] == ["student", "name", "email", "submission", "q1", "q2"]
    assert [(r["student"], r["submission"], r["total"], r["status"]) for r in rows] == [
        ("1", "s2", "0", "timeout"), ("5", "s1", "3", "graded"), ("9", "s2", "0", "timeout")]
    assert json.loads(rows[0]["fingerprint"]) == {"seed": 42}


def test_histogram_has_a_panel_per_question_and_the_total(tmp_path: Path) -> None:
    import matplotlib.image

    path = tmp_path / "scores.png"
    write_histogram(path, [result("graded", 2, 1), result("graded", 0, 1)])
    height, width = matplotlib.image.imread(path).shape[:2]
    assert (width, height) == (3 * 400, 300)  # q1, q2, total side by side at 100 dpi


# --------------------------------------------------------------------------- resume and errors


def test_stored_results_with_matching_keys_are_reused_not_regraded(
        tiny_autograder: Path, tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    subs.mkdir()
    for name in ("full", "partial"):
        shutil.copy(SAMPLES / f"{name}.ipynb", subs)
    out = tmp_path / "out"
    (out / "results").mkdir(parents=True)
    ag = content_digest(tiny_autograder)
    for name, score in (("full", (2, 1)), ("partial", (0, 1))):
        record = {"submission": name, "key": result_key(content_digest(subs / f"{name}.ipynb"), ag),
                  "result": result("graded", *score).to_json(), "retry": False}
        (out / "results" / f"{name}.json").write_text(json.dumps(record))
    summary = regrade(subs, tiny_autograder, out=out, jobs=1)
    assert (summary.graded, summary.reused) == (0, 2)
    assert [(r["student"], r["total"]) for r in read_csv(out / "grades.csv")] == [
        ("full", "3"), ("partial", "1")]


def test_a_grader_crash_scores_error_and_is_graded_again_next_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import reprokit.grading
    from reprokit import regrade as rg

    def crash(*args: object, **kwargs: object) -> GradeResult:
        raise RuntimeError("sandbox template died")

    monkeypatch.setattr(reprokit.grading, "grade", crash)
    monkeypatch.setattr(reprokit.grading, "warm_up", lambda: None)
    outcome = rg.grade_task({"id": "ada", "key": "k1", "path": str(SAMPLES / "full.ipynb"),
                             "autograder": "unused.zip"})
    assert "sandbox template died" in outcome["infrastructure_error"]
    record = rg._record(Submission("ada", SAMPLES / "full.ipynb"), "k1", outcome,
                        result("graded", 2, 1).questions)
    assert (record["result"]["status"], record["result"]["score"], record["result"]["possible"]) == (
        "error", 0.0, 3.0)
    assert "not the submission" in record["result"]["message"]
    (tmp_path / "ada.json").write_text(json.dumps(record))
    assert rg._load_record(tmp_path / "ada.json", "k1") is None


def test_broken_autograder_stops_with_a_message(tmp_path: Path) -> None:
    bad = tmp_path / "ag.zip"
    bad.write_text("not a zip")
    with pytest.raises(AutograderError, match="not an autograder"):
        regrade(SAMPLES, bad, out=tmp_path / "out")
    res = CliRunner().invoke(regrade_command, [str(SAMPLES), "-a", str(bad), "-o",
                                               str(tmp_path / "out")])
    assert res.exit_code != 0 and "the autograder cannot be used" in res.output


# --------------------------------------------------------------------------- whole batches (slow)


EXPECTED = {  # sample -> (status, total)
    "full": ("graded", "3"), "partial": ("graded", "1"), "empty": ("graded", "0"),
    "corrupt": ("invalid-notebook", "0"), "forever": ("timeout", "0"),
    "memory_hog": ("out-of-memory", "0"), "exits": ("error", "0"),
}


@pytest.mark.slow
def test_every_bad_submission_gets_its_status_and_zero_and_the_batch_finishes(
        tiny_autograder: Path, tmp_path: Path) -> None:
    summary = regrade(SAMPLES, tiny_autograder, out=tmp_path / "out", **QUICK)
    rows = read_csv(summary.csv)
    assert {r["student"]: (r["status"], r["total"]) for r in rows} == EXPECTED
    assert all(r["possible"] == "3" for r in rows)
    stored = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "out" / "results").glob("*.json")}
    assert set(stored) == set(EXPECTED)
    assert all(s["result"]["status"] == EXPECTED[n][0] for n, s in stored.items())
    assert summary.histogram.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_three_regrades_give_identical_grade_sheets(tiny_autograder: Path, tmp_path: Path) -> None:
    subs = tmp_path / "subs"
    subs.mkdir()
    for name in ("full", "partial", "empty", "corrupt", "exits", "memory_hog"):
        shutil.copy(SAMPLES / f"{name}.ipynb", subs)
    sheets = [read_csv(regrade(subs, tiny_autograder, out=tmp_path / f"out{i}", **QUICK).csv)
              for i in range(3)]
    assert sheets[0] == sheets[1] == sheets[2]
    assert [r["student"] for r in sheets[0]] == sorted(r["student"] for r in sheets[0])


def slow_class(root: Path, n: int) -> Path:
    """``n`` submissions that each take about a second, half right and half partly right."""
    root.mkdir()
    for i in range(n):
        square = "x * x" if i % 2 == 0 else "x + x"
        notebook(root / f"student{i:02d}.ipynb", "import time\ntime.sleep(1.0)",
                 f"def square(x):\n    return {square}", f"answer = {42 if i % 3 else 41}")
    return root


def process_tree(root: int) -> dict[int, str]:
    """pid -> start time (from /proc) of ``root`` and every descendant."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), fields[19])  # ppid, start time
    tree, frontier = {root: stats.get(root, (0, ""))[1]}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, (ppid, start) in stats.items():
            if ppid == parent and pid not in tree:
                tree[pid] = start
                frontier.append(pid)
    return tree


def still_running(tree: dict[int, str]) -> list[int]:
    alive = []
    for pid, start in tree.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[19] == start and fields[0] != "Z":
            alive.append(pid)
    return alive


def run_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "from reprokit.cli import main; main()",
                             "regrade", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


@pytest.mark.slow
def test_kill_9_mid_batch_then_rerun_grades_only_the_rest_and_matches(
        tiny_autograder: Path, tmp_path: Path) -> None:
    subs = slow_class(tmp_path / "subs", 9)
    shutil.copy(SAMPLES / "forever.ipynb", subs / "student-forever.ipynb")  # graded first: running at the kill
    common = [str(subs), "-a", str(tiny_autograder), "-j", "2", "--timeout", "20"]
    whole = run_cli(*common, "-o", str(tmp_path / "whole"))
    assert whole.wait(timeout=300) == 0, whole.stdout.read()

    out = tmp_path / "crashed"
    proc = run_cli(*common, "-o", str(out))
    deadline = time.monotonic() + 120
    while len(list((out / "results").glob("*.json"))) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, "regrade ended before the kill"
        time.sleep(0.05)
    tree = process_tree(proc.pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "results").glob("*.json")}
    assert 3 <= len(kept) < 10 and not (out / "grades.csv").exists()
    deadline = time.monotonic() + 30  # workers notice, tear their sandboxes down, and exit
    while still_running(tree) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert still_running(tree) == [], "the killed regrade left processes running"
    assert {p.name: p.stat().st_mtime_ns for p in (out / "results").glob("*.json")} == kept

    rerun = run_cli(*common, "-o", str(out))
    log = rerun.communicate(timeout=300)[0]
    assert rerun.returncode == 0, log
    assert f"{10 - len(kept)} graded now, {len(kept)} reused" in " ".join(log.split())
    assert {n: (out / "results" / n).stat().st_mtime_ns for n in kept} == kept
    assert read_csv(out / "grades.csv") == read_csv(tmp_path / "whole" / "grades.csv")


@pytest.mark.slow
def test_dask_cluster_grades_a_gradescope_export_like_the_local_pool(
        tiny_autograder: Path, tmp_path: Path) -> None:
    from dask.distributed import LocalCluster

    export = gradescope_export(tmp_path / "export", {"submission_111": SAMPLES / "full.ipynb",
                                                     "submission_222": SAMPLES / "partial.ipynb"})
    local = read_csv(regrade(export, tiny_autograder, out=tmp_path / "local", **QUICK).csv,
                     drop=("duration_s", "cpu_s", "fingerprint"))
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                      dashboard_address=None) as cluster:
        summary = regrade(export, tiny_autograder, out=tmp_path / "dask",
                          scheduler=cluster.scheduler_address, timeout_s=15)
    assert read_csv(summary.csv, drop=("duration_s", "cpu_s", "fingerprint")) == local
    assert [(r["student"], r["name"], r["total"]) for r in local] == [
        ("1815", "Ada Lovelace", "3"), ("1912", "Alan Turing", "1"),
        ("grace@example.edu", "Grace Hopper", "1")]
    assert all(json.loads(r["fingerprint"])["seed"] == 42 for r in read_csv(summary.csv))


@pytest.mark.slow
def test_ctrl_c_stops_at_once_keeps_results_and_leaves_nothing_running(
        tiny_autograder: Path, tmp_path: Path) -> None:
    from reprokit import sandbox

    subs = tmp_path / "subs"
    subs.mkdir()
    for order, name in enumerate(("full", "forever", "partial")):  # graded in this order
        shutil.copy(SAMPLES / f"{name}.ipynb", subs / f"{order}-{name}.ipynb")
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-c", "from reprokit.cli import main; main()",
                             "regrade", str(subs), "-a", str(tiny_autograder), "-j", "1",
                             "--timeout", "120", "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # its own process group, as in a terminal

    def forever_is_running() -> bool:
        if not (out / "results" / "0-full.json").exists():
            return False
        if not sandbox.can_drop_privileges():
            time.sleep(3)
            return True
        uids = []
        for pid in process_tree(proc.pid):
            with contextlib.suppress(OSError):
                uids.append(os.stat(f"/proc/{pid}").st_uid)
        return any(uid in sandbox.UID_RANGE for uid in uids)

    deadline = time.monotonic() + 120
    while not forever_is_running():
        assert proc.poll() is None and time.monotonic() < deadline, "regrade ended too early"
        time.sleep(0.2)
    tree = process_tree(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
    log = proc.communicate(timeout=30)[0]
    assert proc.returncode == 130, log
    assert "Run the same command again" in " ".join(log.split())
    deadline = time.monotonic() + 15
    while still_running(tree) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert still_running(tree) == [], "Ctrl-C left processes running"
    assert sorted(p.stem for p in (out / "results").glob("*.json")) == ["0-full"]
