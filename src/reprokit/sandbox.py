"""Run a submission as an untrusted process and talk to it only through data.

Three kinds of process take part:

* the **grader** (trusted): loads tests and hidden material, decides scores;
* the **template** (trusted): a long-lived interpreter with torch, NumPy, IPython
  and reprokit already imported; it forks one *zygote* per submission, so no
  submission pays for those imports and none inherits the grader's memory;
* the **zygote** (trusted): leaves the grader's mount, IPC, network and PID namespaces
  and forks the submission's *init*, the first process of the new PID namespace;
* the **init** (untrusted once the notebook starts): builds its jail (read-only OS and
  packages, one capped tmpfs for the work dir, /tmp and /dev/shm, a minimal /dev, its own
  /proc), takes resource limits, drops to a uid drawn for this submission, checks every
  layer and reports them (:data:`LAYERS`), executes the notebook's code cells, then
  serves requests. Each test file gets a fresh fork of it (a *session*), so a question
  cannot change the state another question sees. Killing the init ends its namespace and
  everything in it.

Messages are :mod:`reprokit.wire` JSON in both directions. The grader sees the
notebook through proxies: data arrives decoded into exact types, functions as
:class:`RemoteFunction` (calling one sends plain arguments and gets plain data
back), everything else as :class:`reprokit.wire.Opaque`.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import random
import re
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reprokit import cputime, wire

#: modules the template imports once, so every submission starts warm
DEFAULT_PRELOAD = (
    "numpy", "torch", "sklearn.datasets", "matplotlib", "matplotlib.pyplot", "IPython",
    "IPython.core.interactiveshell", "otter", "hypothesis", "reprokit.plain", "reprokit.seeding",
    "reprokit.bughunt", "reprokit.invariants", "reprokit.claims", "reprokit.data",
)
# For graders running side by side (``regrade -j N``, N > 1): OpenMP threads that sleep
# when idle instead of spinning, or they burn each other's cores (40 level-1 submissions,
# -j 2 on 2 cores: 65.7 s spinning, 46-52 s passive).
PARALLEL_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}
#: Graded code runs torch (and NumPy's BLAS) on this many threads, whatever the notebook
#: sets: one thread cannot oversubscribe the cores a grader was given, its CPU seconds do
#: not grow with load (spinning OpenMP threads on shared cores took 7.9 s for what one
#: thread did in 0.56 s), and the numbers are the same (the Zhang MLP's accuracies are
#: bit-identical on 1, 2 and 4 threads; tests/test_cputime.py keeps that checked).
GRADED_THREADS = 1
GRADED_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": str(GRADED_THREADS),
              "MKL_NUM_THREADS": str(GRADED_THREADS), "OPENBLAS_NUM_THREADS": str(GRADED_THREADS)}
#: how often the grader reads a waiting submission's CPU clock
POLL_S = 0.1
#: once a reply has started to arrive, all of it must be in within this many seconds
MESSAGE_S = 10.0
#: Grading uids are drawn at random from this range and checked unused on this machine, so
#: graders on one kernel (a host and its Docker containers, which do not remap uids) do not share
#: one: two graders meet on a uid with odds of about 1 in 2 * 10^9 per pair of submissions.
UID_RANGE = range(1 << 20, 1 << 31)
CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWPID = 0x00020000, 0x08000000, 0x40000000, 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1, 2, 4, 8, 32, 4096, 16384, 1 << 18)
#: The layers a submission's process is checked for, in the order the isolation report lists them.
LAYERS = ("uid", "network", "ipc", "pid", "filesystem", "disk", "dev", "limits")
#: The device nodes of a jail's /dev (bound from the host's, one by one).
DEV_NODES = ("null", "zero", "full", "random", "urandom")
#: A reply larger than this is the submission's error, refused before it is read.
REPLY_MAX_BYTES = 64 * 1024 * 1024
#: A reply whose JSON could decode into more than this many bytes is refused unread
#: (see :func:`reprokit.wire.decoded_size_bound`): the grader's memory per reply stays bounded.
REPLY_MAX_DECODED_BYTES = 384 * 1024 * 1024


class SandboxError(RuntimeError):
    """The sandbox itself could not start or lost its zygote."""


class StudentError(Exception):
    """The student's code raised while the grader called it."""


class GradingTimeout(Exception):
    """The submission did not answer within its time budget."""


class ProtocolViolation(Exception):
    """The submission sent something that is not a valid answer (it interfered with grading)."""


# --------------------------------------------------------------------------- grader side


@dataclass
class Limits:
    """Resource limits for one submission."""

    memory_mb: int = 4096
    nproc: int = 256
    file_size_mb: int = 512
    open_files: int = 512
    #: one private tmpfs holds the work dir, /tmp and /dev/shm: all a submission can write
    disk_mb: int = 512


class Template:
    """The warm template process; one per grader process (see :func:`template`)."""

    def __init__(self, preload: tuple[str, ...] = DEFAULT_PRELOAD):
        self.dir = Path(tempfile.mkdtemp(prefix="reprokit-template-"))
        os.chmod(self.dir, 0o700)
        self.socket_path = str(self.dir / "template.sock")
        env = dict(os.environ, MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1", **GRADED_ENV)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reprokit.sandbox", self.socket_path, json.dumps(list(preload))],
            # the template reads its stdin until EOF: it ends when this process does
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
            start_new_session=True,
        )
        line = self.proc.stdout.readline().decode().strip()
        if line != "ready":
            raise SandboxError(f"the grading template did not start (it said {line!r}); run "
                               f"`{sys.executable} -m reprokit.sandbox` to see why")
        self.lock = threading.Lock()

    def spawn(self) -> socket.socket:
        """Fork a fresh zygote and return the socket connected to it."""
        if self.proc.poll() is not None:
            raise SandboxError("the grading template has exited")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.socket_path)
        return sock

    def close(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


_template: Template | None = None
_template_lock = threading.Lock()


def template() -> Template:
    """The process-wide template, started on first use."""
    global _template
    with _template_lock:
        if _template is None or _template.proc.poll() is not None:
            _template = Template()
            atexit.register(_template.close)
        return _template


def can_drop_privileges() -> bool:
    """Whether submissions can run as an unprivileged uid (the grader runs as root)."""
    return hasattr(os, "geteuid") and os.geteuid() == 0


def _proc_status(pid: int | str) -> str | None:
    try:
        return Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None


def uid_in_use(uid: int) -> bool:
    """Whether any process this machine's /proc shows has ``uid`` as its real, effective or
    saved uid."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        status = _proc_status(entry.name)
        m = re.search(r"^Uid:\s+(\d+)\s+(\d+)\s+(\d+)", status or "", re.M)
        if m and uid in {int(g) for g in m.groups()}:
            return True
    return False


@contextlib.contextmanager
def sandbox_uid() -> Iterator[int | None]:
    """A uid for one submission (None when not root): drawn at random from :data:`UID_RANGE`
    and unused by every process in sight. Afterwards its processes are killed and its files in
    the shared /tmp and /dev/shm and its System V IPC objects are removed, for when the
    submission's namespaces could not be made."""
    if not can_drop_privileges():
        yield None
        return
    draw = random.SystemRandom()
    for _ in range(16):
        uid = draw.randrange(UID_RANGE.start, UID_RANGE.stop)
        if not uid_in_use(uid):
            break
    else:  # pragma: no cover - 16 draws from 2^31 uids, all in use
        raise SandboxError("no free sandbox uid")
    try:
        yield uid
    finally:
        kill_uid(uid)
        sweep_uid(uid)


def kill_uid(uid: int) -> None:
    """SIGKILL every process running as ``uid`` (only the kernel can tell them all).

    Safe only for a uid this grader drew (see :func:`sandbox_uid`): ``kill(-1)`` from that uid
    reaches every process of it in this PID namespace and those below it.
    """
    if uid not in UID_RANGE:
        raise ValueError(f"uid {uid} is not a sandbox uid")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the forked child
        try:
            os.setgid(uid)
            os.setuid(uid)
            for _ in range(3):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


_IPC_RMID = 0


def sweep_uid(uid: int) -> list[str]:
    """Remove what ``uid`` left in the machine's shared places: entries it owns at the top of
    /tmp, /var/tmp and /dev/shm, and its System V shared memory, semaphores and queues.
    Returns what was removed. Nothing is found there when the submission had its own IPC
    namespace and tmpfs; this is the fallback for when it could not."""
    removed = []
    for folder in ("/tmp", "/var/tmp", "/dev/shm"):
        with contextlib.suppress(OSError):
            for entry in os.scandir(folder):
                with contextlib.suppress(OSError):
                    if entry.stat(follow_symlinks=False).st_uid != uid:
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path, ignore_errors=True)
                    else:
                        os.unlink(entry.path)
                    removed.append(entry.path)
    libc = ctypes.CDLL(None, use_errno=True)
    for kind, rm in (("shm", lambda i: libc.shmctl(i, _IPC_RMID, None)),
                     ("sem", lambda i: libc.semctl(i, 0, _IPC_RMID)),
                     ("msg", lambda i: libc.msgctl(i, _IPC_RMID, None))):
        try:
            lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()
        except OSError:
            continue
        head = lines[0].split() if lines else []
        for line in lines[1:]:
            row = dict(zip(head, line.split(), strict=False))
            if row.get("uid") == str(uid) and row.get("id", "").isdigit() and rm(int(row["id"])) == 0:
                removed.append(f"System V {kind} {row['id']}")
    return removed


def _ppid_and_uid(pid: int) -> tuple[int, int] | None:
    status = _proc_status(pid)
    if status is None:
        return None
    ppid = int(re.search(r"^PPid:\s+(\d+)", status, re.M).group(1))
    uid = int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))
    return ppid, uid


def _child_by_inner_pid(parent: int, inner_pid: int) -> int | None:
    """The pid, as this process sees it, of the child of ``parent`` whose pid in its own PID
    namespace is ``inner_pid`` (a submission reports the pids it sees)."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        status = _proc_status(entry.name) or ""
        ppid = re.search(r"^PPid:\s+(\d+)", status, re.M)
        if ppid is None or int(ppid.group(1)) != parent:
            continue
        nspid = re.search(r"^NSpid:\s+([\d\s]+?)\s*$", status, re.M)
        if (int(nspid.group(1).split()[-1]) if nspid else int(entry.name)) == inner_pid:
            return int(entry.name)
    return None


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (OSError, AttributeError):
        return None


def _namespace(pid: int | str, kind: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return None


@dataclass
class ExecReport:
    """What executing the notebook did."""

    errors: list[dict] = field(default_factory=list)
    memory_error: bool = False
    duration_s: float = 0.0
    #: the layers that were set up and verified (see :attr:`Zygote.isolation`)
    isolation: list[str] = field(default_factory=list)
    cpu_s: float = 0.0


@dataclass
class Budget:
    """Limits for one wait on the submission: CPU seconds its processes may spend (counted
    by :class:`reprokit.cputime.CpuMeter`) and a wall-clock safety net."""

    cpu_deadline: float  # the meter's reading at which time is up
    wall_deadline: float  # time.monotonic() at which time is up
    cpu_limit_s: float  # for messages
    cpu_start: float
    wall_start: float

    @classmethod
    def start(cls, meter: cputime.CpuMeter, cpu_limit_s: float,
              wall_limit_s: float | None = None) -> Budget:
        cpu0, t0 = meter.seconds(), time.monotonic()
        wall = wall_limit_s if wall_limit_s is not None else cputime.WALL_FACTOR * cpu_limit_s
        return cls(cpu0 + cpu_limit_s, t0 + wall, cpu_limit_s, cpu0, t0)

    def overrun(self, meter: cputime.CpuMeter, doing: str) -> str | None:
        """Why time is up (None while it is not)."""
        cpu = meter.seconds()
        if cpu >= self.cpu_deadline:
            return f"the submission used more than {self.cpu_limit_s:.0f} CPU-seconds {doing}"
        if time.monotonic() >= self.wall_deadline:
            wall, used = time.monotonic() - self.wall_start, cpu - self.cpu_start
            return (f"the submission took longer than {wall:.0f} s of wall time {doing}"
                    + cputime.busy_note(used, wall))
        return None


class Zygote:
    """The grader's handle on one executing submission.

    The template forks the zygote, which unshares its namespaces and forks the submission's
    *init*: the first process of the new PID namespace, which builds the jail, drops to the
    sandbox uid, checks each layer and executes the notebook. Killing the init kills every
    process of the namespace, so nothing of the submission outlives :meth:`kill`.
    """

    def __init__(self, workdir: Path, cells: list[str], *, uid: int | None, seed: int | None,
                 limits: Limits, env: dict[str, str] | None = None):
        self.workdir, self.uid = workdir, uid
        self.dead = False
        self.violation: str | None = None  # set when the submission broke the wire protocol
        self.pid: int | None = None  # the zygote's
        self.init_pid: int | None = None  # the submission's first process
        self._pidfds: list[int] = []
        #: each layer of :data:`LAYERS`: "" when set up and verified, otherwise why it is missing
        self.isolation: dict[str, str] = {}
        tpl = template()
        self.sock = tpl.spawn()
        # a listener in the grader's network namespace that the submission must not reach
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            probe.bind(("127.0.0.1", 0))
            probe.listen(8)
            hello = self._setup_recv("starting")
            self.pid = int(hello["pid"])
            self._pidfds.append(_pidfd(self.pid) or -1)
            # before the notebook runs: everything it starts is counted
            self.meter = cputime.CpuMeter(self.pid, uid=uid)
            self.sock.settimeout(120)
            wire.send(self.sock, {
                "workdir": str(workdir), "uid": uid, "seed": seed, "cells": cells,
                "limits": limits.__dict__, "env": env or {},
                "probe_port": probe.getsockname()[1], "probe_path": str(tpl.dir),
            })
            jail = self._setup_recv("making its namespaces")
            init = jail.get("init")
            if type(init) is int:
                fd = _pidfd(init)
                info = _ppid_and_uid(init)
                if info is not None and info[0] == self.pid:
                    self.init_pid = init
                    if fd is not None:
                        self._pidfds.append(fd)
                elif fd is not None:
                    os.close(fd)
            if self.init_pid is None:
                raise SandboxError("the sandbox did not start the submission's process")
            checked = self._setup_recv("checking its isolation")
        except BaseException:
            self.kill()
            raise
        finally:
            probe.close()
        self.isolation = self._verify(jail.get("unshared") or {}, checked.get("layers") or {})

    def _setup_recv(self, doing: str) -> dict:
        # the sandbox's own code sends these, before any of the submission's: a failure is ours
        try:
            return wire.recv(self.sock, deadline=time.monotonic() + 120)
        except (OSError, EOFError, wire.ProtocolError) as e:
            raise SandboxError(f"the sandbox failed while {doing}: {type(e).__name__}: {e}") from None

    def _verify(self, unshared: dict, layers: dict) -> dict[str, str]:
        """Each layer: "" when it was set up and checked, otherwise why it is missing. The init's
        own checks ran before any of the submission's code; the namespaces are compared here too,
        from outside."""
        report = {}
        for layer in LAYERS:
            why = layers.get(layer, "not checked")
            report[layer] = why if type(why) is str else "not checked"
        for layer, kind in (("network", "net"), ("ipc", "ipc"), ("pid", "pid"), ("filesystem", "mnt")):
            ours, theirs = _namespace("self", kind), _namespace(self.init_pid, kind)
            if not report[layer] and (ours is None or theirs is None or ours == theirs):
                report[layer] = f"the submission shares the grader's {kind} namespace"
        info = _ppid_and_uid(self.init_pid)
        if not report["uid"] and (self.uid is None or info is None or info[1] != self.uid):
            report["uid"] = "the submission does not run as its sandbox uid"
        return report

    @property
    def active_layers(self) -> list[str]:
        """The isolation layers that were set up and verified."""
        return [layer for layer, why in self.isolation.items() if not why]

    def cpu_seconds(self) -> float:
        """CPU seconds the submission's processes have spent so far."""
        return self.meter.seconds()

    def execute(self, cpu_limit_s: float, wall_limit_s: float | None = None) -> ExecReport:
        """Wait for the notebook to finish executing, for at most ``cpu_limit_s`` CPU-seconds
        of its processes (and ``wall_limit_s``, default :data:`cputime.WALL_FACTOR` times that)."""
        budget = Budget.start(self.meter, cpu_limit_s, wall_limit_s)
        msg = self._recv(budget, "executing the notebook")
        if msg.get("op") != "executed":
            raise ProtocolViolation("the notebook interfered with the grader while it ran")
        errors = msg.get("errors")
        return ExecReport(
            errors=errors if type(errors) is list else [],
            memory_error=msg.get("memory_error") is True,
            duration_s=time.monotonic() - budget.wall_start,
            isolation=self.active_layers,
            cpu_s=self.meter.seconds() - budget.cpu_start,
        )

    def _recv(self, budget: Budget | float, doing: str, *, kill_on_timeout: bool = True) -> dict:
        """The next message, waiting while the submission computes within ``budget`` (a
        :class:`Budget`, or a number of CPU-seconds from now)."""
        if not isinstance(budget, Budget):
            budget = Budget.start(self.meter, float(budget))
        while True:
            why = budget.overrun(self.meter, doing)
            if why is not None:
                if kill_on_timeout:
                    self.kill()
                raise GradingTimeout(why)
            wait = min(POLL_S, max(budget.wall_deadline - time.monotonic(), 0.001))
            try:
                readable, _, _ = select.select([self.sock], [], [], wait)
            except (OSError, ValueError):  # the socket was closed under us
                readable = [self.sock]
            if readable:
                break
        # it has started to send: the whole message must be in within MESSAGE_S (a trickled
        # reply spends no CPU, so the CPU budget alone would let it stretch to the wall limit)
        deadline = min(max(budget.wall_deadline, time.monotonic() + 1.0), time.monotonic() + MESSAGE_S)
        try:
            return wire.recv(self.sock, deadline=deadline,
                             max_bytes=REPLY_MAX_BYTES, max_decoded_bytes=REPLY_MAX_DECODED_BYTES)
        except TimeoutError:
            if kill_on_timeout:
                self.kill()
            raise GradingTimeout(f"the submission's answer did not arrive in time {doing}") from None
        except (EOFError, OSError):
            self.dead = True
            raise ProtocolViolation(f"the submission's process ended while {doing}") from None
        except wire.ProtocolError as e:
            raise self.violated(f"the submission sent something unreadable while {doing} ({e})") from None

    def send(self, message: dict, timeout_s: float, doing: str) -> None:
        """Send to the submission, giving up after ``timeout_s`` (one that stops reading would
        otherwise block the grader once the socket's buffer is full)."""
        try:
            self.sock.settimeout(max(timeout_s, 0.001))
            wire.send(self.sock, message)
        except OSError:
            raise self.violated(f"the submission stopped reading while {doing}") from None

    def violated(self, why: str) -> ProtocolViolation:
        """Record that the submission broke the wire protocol and stop it; the caller raises
        what this returns. Grading then ends with status ``error``."""
        if self.violation is None:
            self.violation = why
        self.kill()
        return ProtocolViolation(why)

    @contextlib.contextmanager
    def session(self, cpu_limit_s: float, wall_limit_s: float | None = None) -> Iterator[Session]:
        """A fresh fork of the executed notebook, for one test file, whose processes may spend
        ``cpu_limit_s`` CPU-seconds (``wall_limit_s`` of wall time, by default
        :data:`cputime.WALL_FACTOR` times that)."""
        if self.dead:
            raise ProtocolViolation(self.violation or "the submission's process is gone")
        self.send({"op": "session"}, 30, "starting a session")
        msg = self._recv(Budget.start(self.meter, 30, 120), "starting a session")
        pid = msg.get("pid")
        # the fork reports its pid in its own PID namespace; find it among the init's children
        host_pid = _child_by_inner_pid(self.init_pid, pid) if type(pid) is int else None
        if msg.get("op") != "session" or host_pid is None:
            raise self.violated("the submission answered a session request with something else")
        s = Session(self, host_pid, Budget.start(self.meter, cpu_limit_s, wall_limit_s))
        try:
            yield s
        finally:
            s.close()

    def kill(self) -> None:
        """Kill the submission: its init (and with it its PID namespace), the zygote, and, where
        there is no PID namespace, every process of its uid or its process group."""
        self.dead = True
        zygote_fd, *init_fd = self._pidfds or [-1]
        for fd in init_fd:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(fd, signal.SIGKILL)
        if self.uid is not None and "pid" not in self.active_layers:
            kill_uid(self.uid)
        elif self.uid is None and self.pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        if zygote_fd >= 0:
            # the zygote ends once it has reaped its init, so once the whole namespace is gone
            with contextlib.suppress(OSError):
                if init_fd:
                    select.select([zygote_fd], [], [], 10)
                signal.pidfd_send_signal(zygote_fd, signal.SIGKILL)
        for fd in self._pidfds:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._pidfds = []
        with contextlib.suppress(OSError):
            self.sock.close()

    def close(self) -> None:
        if not self.dead:
            with contextlib.suppress(OSError, wire.ProtocolError):
                self.sock.settimeout(5)
                wire.send(self.sock, {"op": "shutdown"})
        self.kill()
        self.meter.close()

    @contextlib.contextmanager
    def branch(self, cells: list[str]) -> Iterator[Branch]:
        """A fork of this (executed) zygote that executes ``cells`` on top of its state.

        The branch behaves as a zygote of its own: :meth:`execute` waits for ``cells``,
        :meth:`session` forks it per test file. Used by :mod:`reprokit.mutation` to run
        only the cells after a prefix that many variants share. Branches run one at a time.
        """
        if self.dead:
            raise ProtocolViolation("the submission's process is gone")
        self.send({"op": "branch", "cells": list(cells)}, 30, "starting a branch")
        msg = self._recv(Budget.start(self.meter, 30, 120), "starting a branch")
        pid = msg.get("pid")
        # the fork reports its pid in its own PID namespace; find it among the init's children
        host_pid = _child_by_inner_pid(self.init_pid, pid) if type(pid) is int else None
        if msg.get("op") != "branch" or host_pid is None:
            raise self.violated("the submission answered a branch request with something else")
        b = Branch(self, host_pid)
        try:
            yield b
        finally:
            b.close()


class Branch(Zygote):
    """A fork of a zygote executing further cells (see :meth:`Zygote.branch`)."""

    def __init__(self, parent: Zygote, pid: int):  # noqa: D107 - no spawn: shares the socket
        self.parent, self.pid, self.workdir, self.uid = parent, pid, parent.workdir, parent.uid
        self.init_pid = pid  # the branch serves its sessions itself
        self.violation: str | None = None
        self._pidfds: list[int] = []
        self.isolation = parent.isolation
        self.sock = parent.sock
        # branches run one at a time: the parent's meter, from now on, counts this branch
        self.meter = parent.meter
        self._cpu_at_start = parent.meter.seconds()
        self.dead = False

    def cpu_seconds(self) -> float:
        """CPU seconds spent since the branch started (not the prefix's)."""
        return self.meter.seconds() - self._cpu_at_start

    def kill(self) -> None:
        """Kill the branch (as root: the whole uid, so its parent zygote too)."""
        self.dead = True
        if self.uid is not None:
            self.parent.kill()
        else:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)

    def close(self) -> None:
        """End the branch and wait until its parent zygote takes requests again."""
        if not self.dead:
            with contextlib.suppress(OSError, wire.ProtocolError):
                wire.send(self.sock, {"op": "shutdown"})
        elif self.uid is None:
            self.kill()
        if self.parent.dead:
            return
        try:
            msg = self.parent._recv(30, "ending a branch")
            while msg.get("op") != "branch_ended":
                msg = self.parent._recv(30, "ending a branch")
        except (GradingTimeout, ProtocolViolation):
            self.parent.kill()


class Session:
    """Requests to one fork of the executed notebook."""

    def __init__(self, zygote: Zygote, pid: int, budget: Budget):
        self.zygote, self.pid, self.budget = zygote, pid, budget
        self.closed = False
        self._callbacks: dict[int, Any] = {}
        self._runners: set[int] = set()  # bug-hunt runners this session has had

    # -- plumbing
    def _request(self, message: dict, doing: str) -> dict:
        if self.closed:
            raise ProtocolViolation("this session has ended")
        try:
            self.zygote.send(message, self.budget.wall_deadline - time.monotonic(), doing)
        except ProtocolViolation:
            self.closed = True
            raise
        while True:
            try:
                msg = self.zygote._recv(self.budget, doing, kill_on_timeout=False)
            except GradingTimeout as e:
                self.closed = True
                self._kill_fork()
                raise GradingTimeout(f"this question's tests were stopped: {e}") from None
            except ProtocolViolation:
                self.closed = True
                raise
            if msg.get("op") == "callback":
                try:
                    self._answer_callback(msg)
                except ProtocolViolation:
                    self.closed = True
                    raise
                continue
            return msg

    def _answer_callback(self, msg: dict) -> None:
        obj = self._callbacks.get(msg.get("id")) if type(msg.get("id")) is int else None
        attr, item = msg.get("attr"), msg.get("item")
        try:
            if obj is None:
                raise AttributeError("no such object")
            if msg.get("iter") is True:
                value = list(iter(obj))
            elif type(item) in (str, int):
                value = obj[item]
            elif type(attr) is str and not attr.startswith("_"):
                value = getattr(obj, attr)
            else:
                raise AttributeError(f"no attribute {attr!r}")
            reply = {"op": "callback_result", "value": wire.encode(value)}
        except (AttributeError, KeyError, IndexError, TypeError) as e:
            reply = {"op": "callback_result", "error": f"{type(e).__name__}: {e}"}
        self.zygote.send(reply, self.budget.wall_deadline - time.monotonic(), "answering its request")

    def _encode_arg(self, x: Any, path: str) -> Any:
        def ref(obj: Any, _path: str) -> Any:
            if isinstance(obj, RemoteFunction) and obj._session is self:
                return {"__ref__": obj._path}
            if getattr(type(obj), "__reprokit_callback__", False):
                key = len(self._callbacks) + 1
                self._callbacks[key] = obj
                return {"__callback__": key}
            return None
        return wire.encode(x, ref=ref, path=path)

    def _decode(self, x: Any) -> Any:
        def resolve(tag: str, payload: Any) -> Any:
            if tag == "__function__" and type(payload) is str:
                return RemoteFunction(self, payload)
            if (tag == "__function__" and type(payload) is list and len(payload) == 2
                    and all(type(p) is str for p in payload)):
                return RemoteFunction(self, payload[0], name=payload[1])
            return wire.Opaque(str(payload), "reference")
        try:
            return wire.decode(x, resolve=resolve)
        except wire.ProtocolError as e:
            self.closed = True
            raise self.zygote.violated(f"the submission sent something unreadable ({e})") from None

    # -- requests
    def lookup(self, names: list[str]) -> dict[str, Any]:
        """Values of notebook names: data decoded, functions as proxies, missing as None."""
        msg = self._request({"op": "lookup", "names": list(names)}, "looking up names")
        values = msg.get("values")
        if msg.get("op") != "values" or type(values) is not dict:
            raise ProtocolViolation("bad answer to a lookup")
        out = {}
        for name in names:
            if name in values:
                out[name] = self._decode(values[name])
        return out

    def call(self, path: str, args: tuple, kwargs: dict) -> Any:
        msg = self._request({
            "op": "call", "path": path,
            "args": [self._encode_arg(a, f"argument {i}") for i, a in enumerate(args)],
            "kwargs": {k: self._encode_arg(v, k) for k, v in kwargs.items()},
        }, f"running {path}()")
        return self._result(msg, path)

    def _result(self, msg: dict, what: str) -> Any:
        if msg.get("op") == "result":
            return self._decode(msg.get("value"))
        if msg.get("op") == "error":
            raise StudentError(f"{what} raised {msg.get('type', 'an error')}: {msg.get('message', '')}"
                               f"\n{msg.get('traceback', '')}".rstrip())
        raise ProtocolViolation(f"bad answer while running {what}")

    def observe(self, path: str, args: tuple, kwargs: dict, spec: dict) -> dict:
        """Call a student function and observe its side effects in the session (see
        :func:`reprokit.audit.observe_call`); the answer is plain data."""
        msg = self._request({
            "op": "observe", "path": path, "spec": spec,
            "args": [self._encode_arg(a, f"argument {i}") for i, a in enumerate(args)],
            "kwargs": {k: self._encode_arg(v, k) for k, v in kwargs.items()},
        }, f"running {path}()")
        out = self._result(msg, path)
        if type(out) is not dict or not {"value", "rng_changed", "calls", "opened"} <= set(out):
            raise ProtocolViolation("bad answer to an observed call")
        return out

    def run_tests_against(self, tests: dict[str, str], code: bytes, timeout_s: float) -> dict:
        """Run the student's test functions (name -> path) against one compiled implementation
        (:func:`reprokit.bughunt.compile_implementation`), in a fresh fork of this session.

        The fork (the *runner*) takes the code from the grader itself and sends its outcomes
        itself: the session that forks one runner after another never holds an
        implementation or a result. Then the session reports the runner gone.
        """
        import base64

        limit = self._run_budget(float(timeout_s) * max(1, len(tests)) + 30.0)
        self._request_start({"op": "bughunt", "tests": tests, "timeout_s": timeout_s})
        msg = self._bughunt_recv(limit, "starting a bug-hunt run")
        if msg.get("op") != "bughunt_ready":
            return self._bughunt_finish(msg, None, "the bug-hunt run did not start")
        # the runner reports its pid in the submission's PID namespace; find it among the
        # session's children as this process sees them
        inner = msg.get("pid")
        pid = _child_by_inner_pid(self.pid, inner) if type(inner) is int else None
        # A runner that lingers could pose as the next one and see two implementations: the
        # code goes only to a child of the session that never had any before.
        if pid is None or pid in self._runners:
            self.closed = True
            self._kill_fork()
            raise ProtocolViolation("the submission answered a bug-hunt request with something else")
        self._runners.add(pid)
        self.zygote.send({"code": base64.b64encode(code).decode("ascii")}, 30,
                         "sending the implementation")
        try:
            msg = self._bughunt_recv(limit, "running your tests on an implementation")
        except GradingTimeout:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)  # the session reports it gone, then we go on
            stopped = {name: {"status": "timeout", "message": "the tests did not finish on this "
                              "implementation in time and were stopped"} for name in tests}
            return self._bughunt_finish(self._bughunt_recv(self._run_budget(30), "ending a run"),
                                        stopped, "")
        if msg.get("op") == "bughunt_outcomes":
            out = msg.get("value")
            return self._bughunt_finish(self._bughunt_recv(self._run_budget(30), "ending a run"),
                                        out if type(out) is dict else {}, "")
        abrupt = {name: {"status": "error", "message": "the process running the tests ended "
                         "abruptly (os._exit, a crash or running out of memory)"} for name in tests}
        return self._bughunt_finish(msg, abrupt, "")  # the runner ended without a word

    def tests_digest(self, tests: dict[str, str]) -> str:
        """:func:`reprokit.bughunt.tests_digest` of the named test functions, computed there."""
        msg = self._request({"op": "bughunt", "digest": True, "tests": tests}, "reading your tests")
        out = self._result(msg, "your tests")
        if type(out) is not str:
            raise ProtocolViolation("bad answer from the bug hunt")
        return out

    def _request_start(self, message: dict) -> None:
        if self.closed:
            raise ProtocolViolation("this session has ended")
        try:
            self.zygote.send(message, 30, "starting a bug-hunt run")
        except ProtocolViolation:
            self.closed = True
            raise

    def _run_budget(self, cpu_s: float) -> Budget:
        """``cpu_s`` CPU-seconds for one bug-hunt run, within what is left of the question's."""
        run = Budget.start(self.zygote.meter, cpu_s)
        run.cpu_deadline = min(run.cpu_deadline, self.budget.cpu_deadline)
        run.wall_deadline = min(run.wall_deadline, self.budget.wall_deadline)
        return run

    def _bughunt_recv(self, limit: Budget, doing: str) -> dict:
        try:
            return self.zygote._recv(limit, doing, kill_on_timeout=False)
        except GradingTimeout as e:
            if self.budget.overrun(self.zygote.meter, doing) is not None:
                self.closed = True
                self._kill_fork()
                raise GradingTimeout(f"this question's tests were stopped: {e}") from None
            raise
        except ProtocolViolation:
            self.closed = True
            raise

    def _bughunt_finish(self, ended: dict, out: dict | None, failure: str) -> dict:
        """``ended`` is the session's word that the runner is gone; ``out`` what the runner said."""
        if ended.get("op") == "error":
            raise StudentError(f"the bug hunt failed: {ended.get('type', 'an error')}: "
                               f"{ended.get('message', '')}")
        if ended.get("op") != "result" or ended.get("value") != "bughunt_done":
            self.closed = True
            self._kill_fork()
            raise ProtocolViolation("the submission interfered with the bug hunt's messages")
        if out is None:
            raise StudentError(failure)
        return out

    def close(self) -> None:
        if self.closed:
            self._kill_fork()
        else:
            self.closed = True
            try:
                self.zygote.sock.settimeout(5)
                wire.send(self.zygote.sock, {"op": "end"})
            except OSError:
                self._kill_fork()
        if self.zygote.dead:
            return
        try:
            ending = Budget.start(self.zygote.meter, 15, 60)
            msg = self.zygote._recv(ending, "ending a session")
            while msg.get("op") != "session_ended":
                msg = self.zygote._recv(ending, "ending a session")
        except (GradingTimeout, ProtocolViolation):
            pass

    def _kill_fork(self) -> None:
        info = _ppid_and_uid(self.pid)
        if info is not None and info[0] == self.zygote.init_pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(self.pid, signal.SIGKILL)


class RemoteFunction:
    """A function defined in the submission; calling it runs it there, on plain data."""

    def __init__(self, session: Session, path: str, name: str | None = None):
        self._session, self._path = session, path
        self.__name__ = name if name and name.isidentifier() else path.split("[")[0]
        self.__qualname__ = self.__name__
        self._reprokit_remote = self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._session.call(self._path, args, kwargs)

    def run_tests_against(self, tests: dict[str, Any], code: bytes, timeout_s: float = 30.0) -> dict:
        """Bug-hunt dispatch: ``tests`` maps test names to RemoteFunctions of this session."""
        return self._session.run_tests_against(self._paths(tests), code, timeout_s)

    def tests_digest(self, tests: dict[str, Any]) -> str:
        """The digest of these remote test functions that seeds the bug hunt's order."""
        return self._session.tests_digest(self._paths(tests))

    def _paths(self, tests: dict[str, Any]) -> dict[str, str]:
        paths = {}
        for name, fn in tests.items():
            if not isinstance(fn, RemoteFunction) or fn._session is not self._session:
                raise TypeError(f"{name} is not a function from this notebook")
            paths[name] = fn._path
        return paths

    def __repr__(self) -> str:
        return f"<student function {self._path}>"


def proxy_environment(session: Session, names: list[str]) -> dict[str, Any]:
    """A global environment for Otter test functions: each name the tests ask for."""
    return session.lookup(sorted(set(names) - {"env"}))


# --------------------------------------------------------------------------- template side

_VISIBLE: list[str] = []


def _template_main(socket_path: str, preload: list[str]) -> None:  # pragma: no cover - subprocess
    import importlib
    import warnings

    warnings.filterwarnings("ignore")
    cwd = os.getcwd()
    sys.path[:] = [p for p in sys.path if p not in ("", ".", cwd)]
    for name in preload:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    with contextlib.suppress(Exception):
        # the first optimiser imports torch._dynamo (5-7 s): pay it once, here
        import torch

        torch.optim.Adam([torch.zeros(1, requires_grad=True)])
    global _VISIBLE
    _VISIBLE = _visible_paths()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # zygotes are reaped by the kernel
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(socket_path)
    os.chmod(socket_path, 0o600)
    server.listen(64)

    def _orphaned() -> None:
        sys.stdin.buffer.read()  # EOF when the grader exits, however it exits
        os._exit(0)

    threading.Thread(target=_orphaned, daemon=True).start()
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        pid = os.fork()
        if pid == 0:
            server.close()
            os.close(0)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            try:
                _zygote_main(conn)
            except BaseException:  # noqa: BLE001 - report nothing; the grader sees EOF
                pass
            os._exit(0)
        conn.close()


def _mount(libc: Any, source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    def enc(v):
        return (v.encode() if v is not None else None)
    if libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {source} on {target}: {os.strerror(err)}")


def _visible_paths() -> list[str]:
    """What a submission may see of the machine: the OS, Python, installed packages."""
    paths = {"/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc", "/opt/conda"}
    paths |= {sys.prefix, sys.base_prefix, sys.exec_prefix}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None)
        if "." in name or not file:
            continue
        root = os.path.dirname(os.path.dirname(os.path.abspath(file))) if file.endswith(
            "__init__.py") else os.path.dirname(os.path.abspath(file))
        paths.add(root)
    keep = sorted(p for p in paths if os.path.exists(p))
    # drop paths inside others
    return [p for p in keep if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in keep)]


def _unshare_namespaces() -> dict[str, str]:
    """Leave the grader's namespaces; each layer maps to "" or why it could not be left. A new
    PID namespace holds this process's *next child*, not this process."""
    libc = ctypes.CDLL(None, use_errno=True)
    out = {}
    for layer, flag, name in (("filesystem", CLONE_NEWNS, "CLONE_NEWNS"), ("ipc", CLONE_NEWIPC, "CLONE_NEWIPC"),
                              ("network", CLONE_NEWNET, "CLONE_NEWNET"), ("pid", CLONE_NEWPID, "CLONE_NEWPID")):
        if libc.unshare(flag) != 0:
            out[layer] = f"unshare({name}) failed: {os.strerror(ctypes.get_errno())}"
        else:
            out[layer] = ""
    return out


def _bind(libc: Any, source: str, target: str, flags: int) -> None:
    _mount(libc, source, target, None, MS_BIND | MS_REC)
    _mount(libc, None, target, None, MS_BIND | MS_REMOUNT | flags)


def _enter_jail(workdir: str, visible: list[str], uid: int | None, disk_mb: int) -> None:
    """Make this process's (private) mount namespace a jail and enter it.

    Its root is a small read-only tmpfs holding ``visible`` (read-only binds), a minimal /dev and
    a /proc of its own PID namespace. One private tmpfs of ``disk_mb`` holds the work dir (a copy
    of the grader's), /tmp and /dev/shm, so that is all the submission can write, and it vanishes
    with the namespace. Hidden tests, chaffs, the repository and other submissions are simply
    not there.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
    base = os.path.dirname(workdir)
    jail, scratch = os.path.join(base, "jail"), os.path.join(base, "scratch")
    os.makedirs(jail, exist_ok=True)
    os.makedirs(scratch, exist_ok=True)
    _mount(libc, "tmpfs", scratch, "tmpfs", MS_NOSUID | MS_NODEV,
           f"size={int(disk_mb)}m,nr_inodes=65536,mode=755")
    shutil.copytree(workdir, scratch + "/work", symlinks=True)
    for name, mode in (("tmp", 0o1777), ("shm", 0o1777)):
        os.mkdir(f"{scratch}/{name}")
        os.chmod(f"{scratch}/{name}", mode)
    if uid is not None:
        for root, dirs, files in os.walk(scratch + "/work"):
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.lchown(name, uid, uid)
    os.chmod(scratch + "/work", 0o700)

    _mount(libc, "tmpfs", jail, "tmpfs", MS_NOSUID | MS_NODEV, "size=16m,mode=755")
    # a private /tmp first: packages installed under /tmp (a venv, a clone) are bound on top
    os.makedirs(jail + "/tmp", exist_ok=True)
    _bind(libc, scratch + "/tmp", jail + "/tmp", MS_NOSUID | MS_NODEV)
    for path in visible:
        if (workdir + "/").startswith(path.rstrip("/") + "/"):
            continue  # never a folder that holds the grading dirs (e.g. a module in /tmp itself)
        target = jail + path
        if os.path.islink(path):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.symlink(os.readlink(path), target)
            continue
        os.makedirs(target, exist_ok=True)
        _bind(libc, path, target, MS_RDONLY | MS_NOSUID)
    # a minimal /dev: a few harmless nodes, a private /dev/shm, nothing of the host's
    os.makedirs(jail + "/dev", exist_ok=True)
    _mount(libc, "tmpfs", jail + "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=755")
    for node in DEV_NODES:
        open(f"{jail}/dev/{node}", "w").close()
        _bind(libc, f"/dev/{node}", f"{jail}/dev/{node}", MS_NOSUID | MS_NOEXEC)
    os.mkdir(jail + "/dev/shm")
    _bind(libc, scratch + "/shm", jail + "/dev/shm", MS_NOSUID | MS_NODEV)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{jail}/dev/{name}")
    _mount(libc, None, jail + "/dev", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NOEXEC)
    # /proc of this process's PID namespace: with one, it shows the submission's processes only
    os.makedirs(jail + "/proc", exist_ok=True)
    _mount(libc, "proc", jail + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    os.makedirs(jail + workdir, exist_ok=True)
    _bind(libc, scratch + "/work", jail + workdir, MS_NOSUID | MS_NODEV)
    _mount(libc, None, jail, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chroot(jail)
    os.chdir(workdir)


def _drop_privileges(uid: int | None, limits: dict) -> None:
    mb = 1024 * 1024
    for res, value in (
        (resource.RLIMIT_AS, limits["memory_mb"] * mb),
        (resource.RLIMIT_FSIZE, limits["file_size_mb"] * mb),
        (resource.RLIMIT_NOFILE, limits["open_files"]),
        (resource.RLIMIT_CORE, 0),
    ):
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(res, (value, value))
    if uid is None:
        return
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NPROC, (limits["nproc"], limits["nproc"]))
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def _check_layers(config: dict, unshared: dict[str, str], jail_error: str) -> dict[str, str]:
    """Check, from inside and before any of the submission's code runs, that each layer holds.
    Each maps to "" or to why it is missing; :meth:`Zygote._verify` adds the outside view."""
    out: dict[str, str] = {}
    uid, limits = config["uid"], config["limits"]
    if uid is None:
        out["uid"] = "the grader does not run as root, so the submission runs as the grader's user"
    elif os.getresuid() != (uid, uid, uid) or os.getresgid() != (uid, uid, uid) or os.getgroups():
        out["uid"] = "the uid switch did not take"
    else:
        out["uid"] = ""

    out["network"] = unshared["network"]
    if not out["network"]:
        names = [name for _, name in socket.if_nameindex()]
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        probe.settimeout(2)
        try:
            probe.connect(("127.0.0.1", int(config["probe_port"])))
            out["network"] = "the submission reached a listener of the grader's on 127.0.0.1"
        except OSError:
            if names != ["lo"]:
                out["network"] = f"the network namespace has interfaces {names}"
        finally:
            probe.close()

    out["ipc"] = unshared["ipc"]
    out["pid"] = unshared["pid"]
    if not out["pid"]:
        seen = sorted(int(e) for e in os.listdir("/proc") if e.isdigit())
        if os.getpid() != 1 or seen != [1]:
            out["pid"] = f"/proc shows {len(seen)} processes besides the submission's"

    out["filesystem"] = jail_error
    if not jail_error and os.path.exists(config["probe_path"]):
        out["filesystem"] = "the grader's folders are visible"
    out["disk"] = out["dev"] = jail_error
    if not jail_error:
        devices = {os.stat(p).st_dev for p in (".", "/tmp", "/dev/shm")}
        st = os.statvfs(".")
        if len(devices) != 1 or st.f_blocks * st.f_frsize > limits["disk_mb"] * 1024 * 1024:
            out["disk"] = "the work dir, /tmp and /dev/shm are not one capped tmpfs"
        extra = set(os.listdir("/dev")) - {*DEV_NODES, "shm", "fd", "stdin", "stdout", "stderr"}
        if extra:
            out["dev"] = f"/dev holds {sorted(extra)[:5]}"

    want = {resource.RLIMIT_AS: limits["memory_mb"] * 1024 * 1024,
            resource.RLIMIT_FSIZE: limits["file_size_mb"] * 1024 * 1024,
            resource.RLIMIT_NOFILE: limits["open_files"]}
    wrong = [res for res, value in want.items() if resource.getrlimit(res)[1] > value]
    out["limits"] = f"{len(wrong)} resource limit(s) did not take" if wrong else ""
    return out


def _zygote_main(conn: socket.socket) -> None:  # pragma: no cover - runs in the zygote
    os.setsid()
    wire.send(conn, {"pid": os.getpid()})
    config = wire.recv(conn)
    config["visible"] = _VISIBLE
    unshared = _unshare_namespaces()
    go, ready = os.pipe()
    init = os.fork()  # the first process of the new PID namespace, where there is one
    if init:
        os.close(go)
        wire.send(conn, {"op": "jail", "init": init, "unshared": unshared})
        os.close(ready)  # the init may speak now
        conn.close()  # so the grader sees EOF once the init is gone
        os.waitpid(init, 0)
        os._exit(0)
    os.close(ready)
    os.read(go, 1)
    os.close(go)
    _init_main(conn, config, unshared)


def _init_main(conn: socket.socket, config: dict, unshared: dict[str, str]) -> None:  # pragma: no cover
    workdir = config["workdir"]
    jail_error = unshared["filesystem"]
    if not jail_error:
        try:
            _enter_jail(workdir, config["visible"], config["uid"], config["limits"]["disk_mb"])
        except OSError as e:
            jail_error = f"the jail could not be built: {e}"
    if jail_error:
        os.chdir(workdir)
    log = os.open(os.path.join(workdir, ".reprokit-output.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    if jail_error:
        print(f"reprokit: no file-system isolation ({jail_error})", flush=True)
    _drop_privileges(config["uid"], config["limits"])
    wire.send(conn, {"op": "isolation", "layers": _check_layers(config, unshared, jail_error)})
    tmp = os.path.join(workdir, ".tmp")
    os.makedirs(tmp, exist_ok=True)
    os.environ.update({"HOME": workdir, "TMPDIR": tmp, "MPLBACKEND": "Agg", "MPLCONFIGDIR": tmp,
                       "REPROKIT_SANDBOX": "1", **config.get("env", {})})
    tempfile.tempdir = tmp
    sys.path.insert(0, workdir)
    clamp_torch_threads()
    ns = _execute(config["cells"], config.get("seed"), conn)
    _serve_zygote(conn, ns, config.get("seed"))


class _InertNotebook:
    """Stands in for ``otter.Notebook`` while grading: the grader runs the tests."""

    def __init__(self, *args: Any, **kwargs: Any):
        pass

    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None


def _seed(seed: int) -> None:
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    with contextlib.suppress(ImportError):
        import torch

        torch.manual_seed(seed)


def _execute(cells: list[str], seed: int | None, conn: socket.socket) -> dict:  # pragma: no cover
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    with contextlib.suppress(ImportError):
        import otter

        otter.Notebook = _InertNotebook
    c = Config()
    c.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=c)
    errors, memory_error = [], False
    for index, source in enumerate(cells):
        if seed is not None:
            _seed(seed)
        try:
            result = shell.run_cell(source, store_history=False)
        except BaseException as e:  # noqa: BLE001 - SystemExit and friends from student code
            errors.append({"cell": index, "type": type(e).__name__, "message": str(e)[:500]})
            continue
        err = result.error_in_exec or result.error_before_exec
        if err is not None:
            memory_error |= isinstance(err, MemoryError)
            errors.append({"cell": index, "type": type(err).__name__, "message": str(err)[:500]})
    sys.stdout.flush()
    wire.send(conn, {"op": "executed", "errors": errors, "memory_error": memory_error})
    return shell.user_ns


def clamp_torch_threads(limit: int = GRADED_THREADS) -> None:  # pragma: no cover - in the zygote
    """Run torch on at most ``limit`` threads from now on, whatever the notebook asks for:
    ``torch.set_num_threads(n)`` keeps working but is capped at ``limit``."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    original = getattr(torch.set_num_threads, "__wrapped__", torch.set_num_threads)

    def set_num_threads(n: int) -> None:
        original(max(1, min(int(n), limit)))

    set_num_threads.__wrapped__ = original  # type: ignore[attr-defined]
    set_num_threads.__doc__ = original.__doc__
    torch.set_num_threads = set_num_threads
    original(limit)


def one_thread_after_fork() -> None:  # pragma: no cover - runs in forked children
    """torch's OpenMP pool does not survive ``fork``: a child that enters a parallel region
    the parent already used waits forever. One thread gives the same numbers (measured on the
    Zhang MLP with 1, 2 and 4 threads) and never deadlocks."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _serve_zygote(conn: socket.socket, ns: dict, seed: int | None = None) -> None:  # pragma: no cover
    while True:
        msg = wire.recv(conn)
        op = msg.get("op")
        if op == "branch":  # execute more cells in a fork, then serve as a zygote (mutation)
            pid = os.fork()
            if pid == 0:
                os.setpgid(0, 0)
                one_thread_after_fork()
                wire.send(conn, {"op": "branch", "pid": os.getpid()})
                try:
                    cells = [c for c in msg.get("cells", []) if type(c) is str]
                    _serve_zygote(conn, _execute(cells, seed, conn), seed)
                finally:
                    os._exit(0)
            _, status = os.waitpid(pid, 0)
            wire.send(conn, {"op": "branch_ended", "status": status})
        elif op == "session":
            pid = os.fork()
            if pid == 0:
                os.setpgid(0, 0)
                one_thread_after_fork()
                wire.send(conn, {"op": "session", "pid": os.getpid()})
                try:
                    _serve_session(conn, ns)
                finally:
                    os._exit(0)
            _, status = os.waitpid(pid, 0)
            wire.send(conn, {"op": "session_ended", "status": status})
        elif op == "shutdown":
            return


_PATH_PART = re.compile(r"\[(\d+|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")\]")


def _resolve(ns: dict, path: str) -> Any:
    import ast

    head = path.split("[", 1)[0]
    obj = ns[head]
    for part in _PATH_PART.findall(path[len(head):]):
        obj = obj[ast.literal_eval(part)]
    return obj


class _CallbackStub:
    """In the session: an object that lives in the grader; each attribute read asks it."""

    def __init__(self, conn: socket.socket, key: int):
        object.__setattr__(self, "_conn", conn)
        object.__setattr__(self, "_key", key)

    def _ask(self, **request: Any) -> Any:
        wire.send(self._conn, {"op": "callback", "id": self._key, **request})
        reply = wire.recv(self._conn)
        if "error" in reply:
            raise AttributeError(reply["error"])
        return wire.decode(reply.get("value"))

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return self._ask(attr=attr)

    def __getitem__(self, key: str | int) -> Any:
        return self._ask(item=key)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._ask(iter=True))


def _serve_session(conn: socket.socket, ns: dict) -> None:  # pragma: no cover
    def ref(obj: Any, path: str) -> Any:
        if callable(obj) and not isinstance(obj, type):
            name = getattr(obj, "__name__", None)
            return {"__function__": [path, name if type(name) is str else path]}
        return None

    def resolve(tag: str, payload: Any) -> Any:
        if tag == "__ref__":
            return _resolve(ns, payload)
        if tag == "__callback__":
            return _CallbackStub(conn, payload)
        return wire.Opaque(str(payload), "reference")

    while True:
        msg = wire.recv(conn)
        op = msg.get("op")
        if op == "end":
            return
        try:
            if op == "lookup":
                values = {}
                for name in msg["names"]:
                    if name in ns and not name.startswith("_"):
                        values[name] = wire.encode(ns[name], ref=ref, path=name)
                wire.send(conn, {"op": "values", "values": values})
                continue
            if op == "call":
                fn = _resolve(ns, msg["path"])
                args = [wire.decode(a, resolve=resolve) for a in msg["args"]]
                kwargs = {k: wire.decode(v, resolve=resolve) for k, v in msg["kwargs"].items()}
                value = fn(*args, **kwargs)
            elif op == "observe":  # reprokit.audit.observe_call: side effects seen here
                from reprokit.audit import observe_here

                fn = _resolve(ns, msg["path"])
                args = [wire.decode(a, resolve=resolve) for a in msg["args"]]
                kwargs = {k: wire.decode(v, resolve=resolve) for k, v in msg["kwargs"].items()}
                spec = msg.get("spec") or {}
                obs = observe_here(fn, tuple(args), kwargs, watch_calls=spec.get("watch_calls"),
                                   watch_opens=spec.get("watch_opens") or (),
                                   watch_c_calls=spec.get("watch_c_calls") or (),
                                   capture_args=spec.get("capture_args"),
                                   watch_ops=spec.get("watch_ops") or ())
                value = {"value": obs.value, "rng_changed": list(obs.rng_changed),
                         "calls": list(obs.calls), "opened": list(obs.opened),
                         "c_calls": obs.c_calls, "captured": list(obs.captured),
                         "ops": obs.ops}
            elif op == "bughunt":
                value = _isolated_bughunt(ns, msg, conn)
            else:
                raise ValueError(f"unknown request {op!r}")
            reply = {"op": "result", "value": wire.encode(value, path="result")}
        except BaseException as e:  # noqa: BLE001 - student code may raise anything
            reply = {"op": "error", "type": type(e).__name__, "message": str(e)[:2000],
                     "traceback": "".join(traceback.format_exception(e)[-3:])[:3000]}
        wire.send(conn, reply)


def _isolated_bughunt(ns: dict, msg: dict, conn: socket.socket) -> Any:  # pragma: no cover
    """Run student tests against one implementation in a fresh fork, so nothing carries over.

    The fork (the runner) reads the compiled implementation from the grader and sends its
    outcomes itself; this session only forks, waits and clears up, so it never holds an
    implementation or an outcome that a later runner could inherit. With ``digest`` it
    answers :func:`reprokit.bughunt.tests_digest` of the tests instead.
    """
    import base64

    from reprokit import bughunt

    if msg.get("digest"):
        return bughunt.tests_digest({name: _resolve(ns, path) for name, path in msg["tests"].items()})
    # Student code must not run in this process between runs (it would see them all).
    sys.settrace(None)
    sys.setprofile(None)
    threading.settrace(None)  # type: ignore[arg-type]
    threading.setprofile(None)  # type: ignore[arg-type]
    import gc

    gc.callbacks.clear()
    for sig in (signal.SIGCHLD, signal.SIGALRM, signal.SIGPROF, signal.SIGVTALRM, signal.SIGUSR1,
                signal.SIGUSR2):
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # Python's own setting
    sweep = _run_sweeper()
    root = tempfile.mkdtemp(prefix="reprokit-run-")
    pid = os.fork()
    if pid == 0:
        try:
            one_thread_after_fork()
            tests = {name: _resolve(ns, path) for name, path in msg["tests"].items()}
            wire.send(conn, {"op": "bughunt_ready", "pid": os.getpid()})
            code = base64.b64decode(wire.recv(conn)["code"])
            result = bughunt.run_compiled(tests, code, float(msg["timeout_s"]), root)
            del code
            if "load_error" in result:
                reply = {"op": "bughunt_outcomes", "value": {"__load_error__": result["load_error"]}}
            else:
                reply = {"op": "bughunt_outcomes", "value": result["ok"]}
            wire.send(conn, reply)
        except BaseException:  # noqa: BLE001 - the grader sees the runner end without outcomes
            pass
        os._exit(0)
    os.waitpid(pid, 0)  # the grader stops a runner that overruns
    shutil.rmtree(root, ignore_errors=True)
    sweep()
    return "bughunt_done"


def _run_sweeper() -> Any:  # pragma: no cover - runs in the session
    """What a bug-hunt run may leave where the next one would see it, removed after it ends.

    Only inside the jail, under a uid reserved for this submission: there ``/tmp`` is the
    submission's own and whatever in ``/dev/shm`` that uid owns is the submission's. New
    entries in the work dir go too. (Outside the jail these are shared with other users.)
    """
    if os.environ.get("REPROKIT_SANDBOX") != "1" or os.getuid() not in UID_RANGE:
        return lambda: None
    uid = os.getuid()
    places = ["/tmp", "/dev/shm", "/dev/mqueue", os.getcwd(), os.environ.get("TMPDIR", "")]

    def listing() -> set[str]:
        out = set()
        for place in places:
            with contextlib.suppress(OSError):
                out |= {os.path.join(place, n) for n in os.listdir(place)} if place else set()
        return out

    before = listing()

    def sweep() -> None:
        for path in listing() - before:
            try:
                if os.lstat(path).st_uid != uid:
                    continue
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)
            except OSError:
                pass

    return sweep


if __name__ == "__main__":  # pragma: no cover
    _template_main(sys.argv[1], json.loads(sys.argv[2]))
