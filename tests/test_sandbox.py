"""The sandbox's wire format and proxies: data in, data out, nothing else."""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from zygotes import scratch_zygote

from reprokit import sandbox, wire
from reprokit.audit import RecordingSplits


def test_wire_round_trip_builds_exact_types() -> None:
    value = {"a": [1, 2.5, None, True, "x"], "t": (np.arange(3, dtype=np.int32),),
             "tensor": torch.ones(2, 2), 3: float("nan")}
    out = wire.decode(wire.encode(value))
    assert out["a"] == [1, 2.5, None, True, "x"]
    assert type(out["t"]) is tuple and out["t"][0].dtype == np.int32
    assert type(out["tensor"]) is torch.Tensor and out["tensor"].sum().item() == 4.0
    assert math.isnan(out[3])


@pytest.mark.parametrize("payload", [
    {"__pickle__": "gASV"},
    {"__ndarray__": {"dtype": "object", "shape": [1], "data": ""}},
    {"__ndarray__": {"dtype": "float32", "shape": [4], "data": "AAAA"}},
    {"a": 1, "b": 2},
])
def test_wire_refuses_anything_but_data(payload: dict) -> None:
    with pytest.raises(wire.ProtocolError):
        wire.decode(payload)


def test_wire_turns_student_classes_into_opaque_values() -> None:
    class Liar(float):
        def __eq__(self, other: object) -> bool:
            return True

    out = wire.decode(wire.encode([Liar(1.0)]))
    assert isinstance(out[0], wire.Opaque)
    with pytest.raises(TypeError, match="Liar"):
        out[0] == 1.0  # noqa: B015


CELLS = [
    "state = []\n"
    "def bump():\n    state.append(1)\n    return len(state)\n",
    "def search(splits):\n    X, y = splits.val\n    return float(X.sum())\n",
    "def cheat(splits):\n    train, val, test = splits\n    return float(test[0].sum())\n",
    "def boom(x):\n    raise ValueError(f'bad {x}')\n",
    "def double(a):\n    return a * 2\n",
    "TESTS = [double, bump]\n",
    "def test_add(implementation):\n    assert implementation.add(2, 2) == 4\n"
    "def test_exit(implementation):\n    import os\n    if implementation.add(1, 1) != 2:\n        os._exit(3)\n"
    "HUNT = [test_add]\n",
    # the notebook uses torch's thread pool before the grader forks its sessions
    "import torch\ntorch.set_num_threads(2)\nfloat(torch.ones(2_000_000).exp().sum())\n"
    "def big_sum():\n    return float(torch.ones(2_000_000).exp().sum())\n",
]


@pytest.fixture(scope="module")
def zygote():
    with scratch_zygote(CELLS) as z:
        report = z.execute(60)
        assert report.errors == []
        yield z


def test_each_session_starts_from_the_executed_notebook(zygote: sandbox.Zygote) -> None:
    with zygote.session(30) as s:
        bump = s.lookup(["bump"])["bump"]
        assert [bump(), bump()] == [1, 2]
    with zygote.session(30) as s:
        assert s.lookup(["bump"])["bump"]() == 1


def test_remote_call_sends_and_returns_plain_data(zygote: sandbox.Zygote) -> None:
    with zygote.session(30) as s:
        out = s.lookup(["double"])["double"](torch.arange(3))
    assert type(out) is torch.Tensor and out.tolist() == [0, 2, 4]


def test_sessions_do_not_deadlock_on_the_parents_thread_pool(zygote: sandbox.Zygote) -> None:
    # OpenMP's pool does not survive fork: without one thread per session this call hangs
    with zygote.session(30) as s:
        assert s.lookup(["big_sum"])["big_sum"]() == pytest.approx(2_000_000 * math.e, rel=1e-3)


def test_student_exception_arrives_as_student_error(zygote: sandbox.Zygote) -> None:
    with zygote.session(30) as s, pytest.raises(sandbox.StudentError, match="ValueError: bad 7"):
        s.lookup(["boom"])["boom"](7)


def test_missing_names_are_absent(zygote: sandbox.Zygote) -> None:
    with zygote.session(30) as s:
        assert s.lookup(["nope", "bump"]).keys() == {"bump"}


def splits() -> RecordingSplits:
    pair = (torch.ones(4, 2), torch.zeros(4, dtype=torch.long))
    return RecordingSplits(train=pair, val=pair, test=pair)


def test_callback_objects_record_access_in_the_grader(zygote: sandbox.Zygote) -> None:
    honest, cheater = splits(), splits()
    with zygote.session(30) as s:
        env = s.lookup(["search", "cheat"])
        assert env["search"](honest) == 8.0
        assert env["cheat"](cheater) == 8.0
    assert honest.accessed == {"val"}
    assert "test" in cheater.accessed


def test_functions_in_containers_keep_their_names(zygote: sandbox.Zygote) -> None:
    with zygote.session(30) as s:
        tests = s.lookup(["TESTS"])["TESTS"]
        assert [t.__name__ for t in tests] == ["double", "bump"]
        assert tests[0](3) == 6


def test_bug_hunt_runs_student_tests_inside_the_sandbox(zygote: sandbox.Zygote, tmp_path: Path) -> None:
    from reprokit.bughunt import hunt

    (tmp_path / "wheat.py").write_text('"""Adds."""\ndef add(a, b):\n    return a + b\n')
    (tmp_path / "chaff.py").write_text('"""Subtracts."""\ndef add(a, b):\n    return a - b\n')
    with zygote.session(60) as s:
        tests = s.lookup(["HUNT"])["HUNT"]
        report = hunt(tests, [tmp_path / "wheat.py"], [tmp_path / "chaff.py"], timeout_s=20)
    assert report.wheat_failures == []
    assert list(report.caught.values()) == [["test_add"]]


def test_bug_hunt_contains_a_test_that_kills_its_process(zygote: sandbox.Zygote, tmp_path: Path) -> None:
    from reprokit.bughunt import hunt

    (tmp_path / "wheat.py").write_text('"""Adds."""\ndef add(a, b):\n    return a + b\n')
    (tmp_path / "chaff.py").write_text('"""Subtracts."""\ndef add(a, b):\n    return a - b\n')
    with zygote.session(60) as s:
        tests = s.lookup(["test_exit"])
        report = hunt(tests, [tmp_path / "wheat.py"], [tmp_path / "chaff.py"], timeout_s=20)
        assert s.lookup(["double"])["double"](2) == 4  # the session survived
    assert report.wheat_failures == []


def test_packages_installed_under_tmp_stay_importable_in_the_jail(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A venv or a clone in /tmp (the jail mounts its own /tmp) keeps its lazy imports."""
    root = tmp_path / "site"
    (root / "tmppkg_reprokit").mkdir(parents=True)
    (root / "tmppkg_reprokit" / "__init__.py").write_text("")
    (root / "tmppkg_reprokit" / "lazy.py").write_text("VALUE = 41 + 1\n")
    for p in (tmp_path, root, root / "tmppkg_reprokit"):
        p.chmod(0o755)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), *filter(None, [os.environ.get("PYTHONPATH")])]))
    own = sandbox.Template(preload=sandbox.DEFAULT_PRELOAD + ("tmppkg_reprokit",))
    monkeypatch.setattr(sandbox, "_template", own)
    work = tmp_path / "grade" / "work"
    work.mkdir(parents=True)
    (tmp_path / "grade").chmod(0o711)
    try:
        with sandbox.sandbox_uid() as uid:
            if uid is not None:
                os.chown(work, uid, uid)
            z = sandbox.Zygote(work, ["from tmppkg_reprokit.lazy import VALUE\n"], uid=uid,
                               seed=0, limits=sandbox.Limits(memory_mb=2048))
            try:
                report = z.execute(60)
                assert report.errors == []
                with z.session(30) as s:
                    assert s.lookup(["VALUE"])["VALUE"] == 42
            finally:
                z.close()
    finally:
        own.close()


# --------------------------------------------------------------------------- wire limits


def _pair() -> tuple:
    import socket

    return socket.socketpair()


def _send_later(sock: object, data: bytes) -> None:
    """Send from a thread: a socket pair's buffer holds less than some of these messages."""
    import threading

    threading.Thread(target=lambda: sock.sendall(data), daemon=True).start()


def test_wire_deadline_bounds_the_whole_message_not_each_recv() -> None:
    """A reply trickled a byte at a time ends at its deadline, however often bytes arrive."""
    import struct
    import threading
    import time

    a, b = _pair()
    stop = threading.Event()

    def trickle() -> None:
        b.sendall(struct.pack("!Q", 1000))
        while not stop.wait(0.05):
            b.sendall(b" ")

    threading.Thread(target=trickle, daemon=True).start()
    t0 = time.monotonic()
    with pytest.raises(wire.LateMessage):
        wire.recv(a, deadline=t0 + 0.5)
    stop.set()
    assert time.monotonic() - t0 < 1.5
    a.close()
    b.close()


def test_wire_deadline_with_nothing_sent_is_a_plain_timeout() -> None:
    import time

    a, b = _pair()
    with pytest.raises(TimeoutError) as info:
        wire.recv(a, deadline=time.monotonic() + 0.2)
    assert not isinstance(info.value, wire.ProtocolError)
    a.close()
    b.close()


def test_wire_refuses_an_oversized_length_prefix_before_allocating() -> None:
    import struct
    import tracemalloc

    a, b = _pair()
    b.sendall(struct.pack("!Q", 1 << 40))
    tracemalloc.start()
    with pytest.raises(wire.MessageTooLarge):
        wire.recv(a, max_bytes=1 << 20)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 1 << 20
    a.close()
    b.close()


SHAPES = {
    "empty lists": b"[" + b",".join([b"[]"] * 200_000) + b"]",
    "empty dicts": b"[" + b",".join([b"{}"] * 200_000) + b"]",
    "one-key dicts": b"[" + b",".join([b'{"a":1}'] * 200_000) + b"]",
    "unique keys": b"{" + b",".join(b'"k%d":1' % i for i in range(200_000)) + b"}",
    "floats": b"[" + b",".join([b"1.5"] * 200_000) + b"]",
    "strings": b"[" + b",".join(b'"%d"' % i for i in range(200_000)) + b"]",
    "base64 array": b'{"__ndarray__":{"dtype":"uint8","shape":[3000000],"data":"'
                    + b"A" * 4_000_000 + b'"}}',
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_decoded_size_bound_covers_what_decoding_takes(shape: str) -> None:
    """The cap on a reply's decoded size is checked before json.loads: the bound must hold."""
    import json
    import tracemalloc

    body = SHAPES[shape]
    tracemalloc.start()
    value = json.loads(body)
    with contextlib.suppress(wire.ProtocolError):  # the grader decodes what it parsed
        value = (value, wire.decode(value))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    del value
    assert peak <= wire.decoded_size_bound(body), (shape, peak, wire.decoded_size_bound(body))


def test_wire_refuses_a_reply_that_would_decode_too_large() -> None:
    a, b = _pair()
    body = SHAPES["empty lists"]
    _send_later(b, len(body).to_bytes(8, "big") + body)
    with pytest.raises(wire.MessageTooLarge, match="too many values"):
        wire.recv(a, max_decoded_bytes=len(body) * 4)
    a.close()
    b.close()


@pytest.mark.parametrize("body", [b'{"op": "r\xc3\xa9sult"}', b"[" * 100_000 + b"]" * 100_000, b"[1]"])
def test_wire_refuses_non_ascii_deep_and_non_object_bodies(body: bytes) -> None:
    a, b = _pair()
    _send_later(b, len(body).to_bytes(8, "big") + body)
    with pytest.raises(wire.ProtocolError):
        wire.recv(a)
    a.close()
    b.close()


# --------------------------------------------------------------------------- uids


def test_sandbox_uids_come_from_a_large_range_and_skip_uids_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    if not sandbox.can_drop_privileges():
        pytest.skip("uids are drawn only when the grader runs as root")
    import subprocess

    busy = sandbox.UID_RANGE.start + 12345
    sleeper = subprocess.Popen(["sleep", "60"], user=busy)
    try:
        draws = iter([busy, busy + 1])
        monkeypatch.setattr(sandbox.random.SystemRandom, "randrange", lambda self, a, b: next(draws))
        with sandbox.sandbox_uid() as uid:
            assert uid == busy + 1
        assert sleeper.poll() is None, "the end of a grade killed a process of another uid"
    finally:
        sleeper.kill()
        sleeper.wait()
    assert len(sandbox.UID_RANGE) > 2**30


def test_kill_uid_refuses_a_uid_it_did_not_draw() -> None:
    with pytest.raises(ValueError):
        sandbox.kill_uid(61000)


def test_grader_side_tests_run_torch_on_the_sandboxes_thread_count() -> None:
    """The grader's own re-runs use the submission's thread count, then the caller's comes back."""
    from reprokit.grading import _deterministic

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with _deterministic(0):
            inside = torch.get_num_threads()
        assert inside == sandbox.GRADED_THREADS
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
