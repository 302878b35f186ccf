"""The sandbox's bug-hunt runners: fresh folders, no leftovers, no processes, no source.

A small notebook is executed in a real zygote (as under ``reprokit grade``) and its tests
are hunted over toy implementations through the session's runners. Quick: about 15 s.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from reprokit import bughunt, sandbox

CELLS = ['''
import os, sys, tempfile
TOKEN = "reprokit-trace-" + os.urandom(6).hex()

def test_starts_clean_and_leaves_traces(implementation):
    assert os.listdir(".") == [], f"work dir holds {os.listdir('.')}"
    assert os.listdir(tempfile.gettempdir()) == [], "TMPDIR is not empty"
    for place in ("/tmp", "/dev/shm"):
        mine = [n for n in os.listdir(place) if n.startswith(TOKEN)]
        assert mine == [], f"{place} holds {mine} from an earlier run"
    for place in (".", tempfile.gettempdir(), "/tmp", "/dev/shm"):
        try:
            open(os.path.join(place, f"{TOKEN}-{os.getpid()}"), "w").write("x")
        except OSError:
            pass

def test_sees_no_source_above_it(implementation):
    frame = sys._getframe(1)
    while frame is not None:
        for value in list(frame.f_locals.values()):
            assert not (isinstance(value, str) and "def add" in value), "source in a frame"
        frame = frame.f_back
    assert implementation.add.__code__.co_filename == "<implementation>"
    assert implementation.add.__code__.co_firstlineno == 1

def test_cannot_start_a_process(implementation):
    if os.getuid() != 0:
        try:
            pid = os.fork()
        except OSError:
            return
        if pid == 0:
            os._exit(0)
        raise AssertionError("a run started a process that could outlive it")

def test_add(implementation):
    assert implementation.add(2, 2) == 4

TESTS = {k: v for k, v in dict(globals()).items() if k.startswith("test_")}

def test_poses_as_the_next_runner(implementation):
    # forge this run's outcomes and the session's "done", then answer the next request
    # as if this process were a fresh runner, to see a second implementation
    from reprokit import wire
    frame = sys._getframe(1)
    while frame is not None and "conn" not in frame.f_locals:
        frame = frame.f_back
    conn = frame.f_locals["conn"]
    wire.send(conn, {"op": "bughunt_outcomes",
                     "value": {"test_poses_as_the_next_runner": {"status": "passed", "message": ""}}})
    wire.send(conn, {"op": "result", "value": "bughunt_done"})
    wire.recv(conn)
    wire.send(conn, {"op": "bughunt_ready", "pid": os.getpid()})
    wire.recv(conn)
    open("/tmp/reprokit-second-implementation-seen", "w").write("x")
''']

WHEAT = '"""Adds, a wheat whose docstring the tests must never see."""\ndef add(a, b):\n    return a + b\n'
CHAFF = '"""The planted bug: subtracts."""\ndef add(a, b):\n    return a - b\n'


@pytest.fixture(scope="module")
def zygote():
    base = Path(tempfile.mkdtemp())
    base.chmod(0o711)
    work = base / "work"
    work.mkdir()
    with sandbox.sandbox_uid() as uid:
        if uid is not None:
            os.chown(work, uid, uid)
        z = sandbox.Zygote(work, CELLS, uid=uid, seed=0, limits=sandbox.Limits(memory_mb=2048))
        assert z.execute(60).errors == []
        yield z
        z.close()
    shutil.rmtree(base, ignore_errors=True)


def test_runners_start_fresh_see_no_source_and_leave_nothing(zygote: sandbox.Zygote,
                                                             tmp_path: Path) -> None:
    for name, text in (("w1", WHEAT), ("w2", WHEAT + "\n"), ("c", CHAFF)):
        (tmp_path / f"{name}.py").write_text(text)
    with zygote.session(120) as s:
        env = s.lookup(["TESTS", "TOKEN"])
        report = bughunt.hunt(env["TESTS"], [tmp_path / "w1.py", tmp_path / "w2.py"],
                              [tmp_path / "c.py"], timeout_s=20)
    assert report.wheat_failures == [], report.summary()
    assert report.caught == {"hidden chaff 1": ["test_add"]}, report.summary()
    if sandbox.can_drop_privileges():  # inside the jail the runs' traces are swept
        assert [n for n in os.listdir("/dev/shm") if n.startswith(env["TOKEN"])] == []


def test_order_is_drawn_from_the_submissions_tests(zygote: sandbox.Zygote) -> None:
    with zygote.session(60) as s:
        tests = s.lookup(["TESTS"])["TESTS"]
        remote = next(iter(tests.values()))._reprokit_remote
        first, again = remote.tests_digest(tests), remote.tests_digest(tests)
        fewer = remote.tests_digest({"test_add": tests["test_add"]})
    assert first == again and first != fewer


def test_a_runner_cannot_pose_as_the_next_one(zygote: sandbox.Zygote, tmp_path: Path) -> None:
    for name, text in (("w1", WHEAT), ("w2", WHEAT + "\n")):
        (tmp_path / f"{name}.py").write_text(text)
    with zygote.session(120) as s:
        tests = s.lookup(["test_poses_as_the_next_runner"])
        report = bughunt.hunt(tests, [tmp_path / "w1.py", tmp_path / "w2.py"], [], timeout_s=20)
    outcomes = [r.outcomes["test_poses_as_the_next_runner"] for r in report.results]
    assert sorted(o["status"] for o in outcomes) == ["error", "passed"], outcomes
    assert any("something else" in o["message"] for o in outcomes), outcomes
