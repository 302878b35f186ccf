"""Run a submission as an untrusted process and talk to it only through data.

Three kinds of process take part:

* the **grader** (trusted): loads tests and hidden material, decides scores;
* the **template** (trusted): a long-lived interpreter with torch, NumPy, IPython
  and reprokit already imported; it forks one *zygote* per submission, so no
  submission pays for those imports and none inherits the grader's memory;
* the **zygote** (untrusted once the notebook starts): drops to an unprivileged
  uid where it can (root), leaves the network, takes resource limits, executes the
  notebook's code cells in its own directory, then serves requests. Each test file
  gets a fresh fork of it (a *session*), so a question cannot change the state
  another question sees.

Messages are :mod:`reprokit.wire` JSON in both directions. The grader sees the
notebook through proxies: data arrives decoded into exact types, functions as
:class:`RemoteFunction` (calling one sends plain arguments and gets plain data
back), everything else as :class:`reprokit.wire.Opaque`.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import json
import os
import re
import resource
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

from reprokit import wire

#: modules the template imports once, so every submission starts warm
DEFAULT_PRELOAD = (
    "numpy", "torch", "sklearn.datasets", "matplotlib", "matplotlib.pyplot", "IPython",
    "IPython.core.interactiveshell", "otter", "hypothesis", "reprokit.plain", "reprokit.seeding",
    "reprokit.bughunt", "reprokit.invariants", "reprokit.claims", "reprokit.data",
)
# For graders running side by side (``regrade -j N``, N > 1): OpenMP threads that sleep
# when idle instead of spinning, or they burn each other's cores (40 level-1 submissions,
# -j 2 on 2 cores: 65.7 s spinning, 46-52 s passive). A lone grader is faster spinning
# (median 1.7 s against 2.0 s per submission), so this is not the default.
PARALLEL_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}
UID_RANGE = range(61000, 61512)
_LOCK_DIR = Path(tempfile.gettempdir()) / "reprokit-uids"
CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18


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


class Template:
    """The warm template process; one per grader process (see :func:`template`)."""

    def __init__(self, preload: tuple[str, ...] = DEFAULT_PRELOAD):
        self.dir = Path(tempfile.mkdtemp(prefix="reprokit-template-"))
        os.chmod(self.dir, 0o700)
        self.socket_path = str(self.dir / "template.sock")
        env = dict(os.environ, MPLBACKEND="Agg", PYTHONDONTWRITEBYTECODE="1")
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


@contextlib.contextmanager
def sandbox_uid() -> Iterator[int | None]:
    """Reserve a uid from :data:`UID_RANGE` for one submission (None when not root)."""
    if not can_drop_privileges():
        yield None
        return
    _LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
    for uid in UID_RANGE:
        fd = os.open(_LOCK_DIR / f"{uid}.lock", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        try:
            kill_uid(uid)  # leftovers of a crashed grader
            yield uid
        finally:
            kill_uid(uid)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        return
    raise SandboxError("no free sandbox uid")


def kill_uid(uid: int) -> None:
    """SIGKILL every process running as ``uid`` (only the kernel can tell them all)."""
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


def _ppid_and_uid(pid: int) -> tuple[int, int] | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    ppid = int(re.search(r"^PPid:\s+(\d+)", status, re.M).group(1))
    uid = int(re.search(r"^Uid:\s+(\d+)", status, re.M).group(1))
    return ppid, uid


@dataclass
class ExecReport:
    """What executing the notebook did."""

    errors: list[dict] = field(default_factory=list)
    memory_error: bool = False
    duration_s: float = 0.0
    isolation: list[str] = field(default_factory=list)


class Zygote:
    """The grader's handle on one executing submission."""

    def __init__(self, workdir: Path, cells: list[str], *, uid: int | None, seed: int | None,
                 limits: Limits, env: dict[str, str] | None = None):
        self.workdir, self.uid = workdir, uid
        self.sock = template().spawn()
        self.sock.settimeout(60)
        hello = wire.recv(self.sock)
        self.pid = int(hello["pid"])
        wire.send(self.sock, {
            "workdir": str(workdir), "uid": uid, "seed": seed, "cells": cells,
            "limits": limits.__dict__, "env": env or {},
        })
        self.dead = False

    def execute(self, timeout_s: float) -> ExecReport:
        """Wait for the notebook to finish executing."""
        t0 = time.monotonic()
        msg = self._recv(timeout_s, "executing the notebook")
        if msg.get("op") != "executed":
            raise ProtocolViolation("the notebook interfered with the grader while it ran")
        errors = msg.get("errors")
        return ExecReport(
            errors=errors if type(errors) is list else [],
            memory_error=msg.get("memory_error") is True,
            duration_s=time.monotonic() - t0,
            isolation=[str(x) for x in msg.get("isolation", []) if type(x) is str],
        )

    def _recv(self, timeout_s: float, doing: str, *, kill_on_timeout: bool = True) -> dict:
        self.sock.settimeout(max(timeout_s, 0.001))
        try:
            return wire.recv(self.sock)
        except TimeoutError:
            if kill_on_timeout:
                self.kill()
            raise GradingTimeout(f"the submission took longer than {timeout_s:.0f} s {doing}") from None
        except EOFError:
            self.dead = True
            raise ProtocolViolation(f"the submission's process ended while {doing}") from None
        except wire.ProtocolError as e:
            self.kill()
            raise ProtocolViolation(f"the submission sent something unreadable ({e})") from None

    @contextlib.contextmanager
    def session(self, timeout_s: float) -> Iterator[Session]:
        """A fresh fork of the executed notebook, for one test file."""
        if self.dead:
            raise ProtocolViolation("the submission's process is gone")
        wire.send(self.sock, {"op": "session"})
        msg = self._recv(30, "starting a session")
        pid = msg.get("pid")
        info = _ppid_and_uid(pid) if type(pid) is int else None
        if msg.get("op") != "session" or info is None or info[0] != self.pid:
            self.kill()
            raise ProtocolViolation("the submission answered a session request with something else")
        s = Session(self, pid, deadline=time.monotonic() + timeout_s, timeout_s=timeout_s)
        try:
            yield s
        finally:
            s.close()

    def kill(self) -> None:
        """Kill the zygote and everything it started."""
        self.dead = True
        if self.uid is not None:
            kill_uid(self.uid)
        else:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(OSError):
            self.sock.close()

    def close(self) -> None:
        if not self.dead:
            with contextlib.suppress(OSError, wire.ProtocolError):
                wire.send(self.sock, {"op": "shutdown"})
        self.kill()


class Session:
    """Requests to one fork of the executed notebook."""

    def __init__(self, zygote: Zygote, pid: int, deadline: float, timeout_s: float = 0.0):
        self.zygote, self.pid, self.deadline = zygote, pid, deadline
        self.timeout_s = timeout_s
        self.closed = False
        self._callbacks: dict[int, Any] = {}

    # -- plumbing
    def _request(self, message: dict, doing: str) -> dict:
        if self.closed:
            raise ProtocolViolation("this session has ended")
        wire.send(self.zygote.sock, message)
        while True:
            remaining = self.deadline - time.monotonic()
            try:
                msg = self.zygote._recv(remaining, doing, kill_on_timeout=False)
            except GradingTimeout:
                self.closed = True
                self._kill_fork()
                raise GradingTimeout(f"this question's tests took longer than {self.timeout_s:.0f} s "
                                     f"(stopped while {doing})") from None
            except ProtocolViolation:
                self.closed = True
                raise
            if msg.get("op") == "callback":
                self._answer_callback(msg)
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
        wire.send(self.zygote.sock, reply)

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
        return wire.decode(x, resolve=resolve)

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

    def run_tests_against(self, tests: dict[str, str], source: str, timeout_s: float) -> dict:
        """Run the student's test functions (name -> path) against an implementation's source,
        in a fresh fork of this session (see :mod:`reprokit.bughunt`)."""
        msg = self._request({"op": "bughunt", "tests": tests, "source": source,
                             "timeout_s": timeout_s}, "running your tests on an implementation")
        out = self._result(msg, "your tests")
        if type(out) is not dict:
            raise ProtocolViolation("bad answer from the bug hunt")
        return out

    def close(self) -> None:
        if self.closed:
            self._kill_fork()
        else:
            self.closed = True
            try:
                wire.send(self.zygote.sock, {"op": "end"})
            except OSError:
                self._kill_fork()
        if self.zygote.dead:
            return
        try:
            msg = self.zygote._recv(15, "ending a session")
            while msg.get("op") != "session_ended":
                msg = self.zygote._recv(15, "ending a session")
        except (GradingTimeout, ProtocolViolation):
            pass

    def _kill_fork(self) -> None:
        info = _ppid_and_uid(self.pid)
        if info is not None and info[0] == self.zygote.pid:
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

    def run_tests_against(self, tests: dict[str, Any], source: str, timeout_s: float = 30.0) -> dict:
        """Bug-hunt dispatch: ``tests`` maps test names to RemoteFunctions of this session."""
        paths = {}
        for name, fn in tests.items():
            if not isinstance(fn, RemoteFunction) or fn._session is not self._session:
                raise TypeError(f"{name} is not a function from this notebook")
            paths[name] = fn._path
        return self._session.run_tests_against(paths, source, timeout_s)

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


def _enter_jail(workdir: str, visible: list[str]) -> None:
    """A private mount namespace whose root holds only ``visible`` (read-only) and the work dir.

    Hidden tests, chaffs, the repository and other submissions are simply not there.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
    jail = os.path.join(os.path.dirname(workdir), "jail")
    os.makedirs(jail, exist_ok=True)
    _mount(libc, "tmpfs", jail, "tmpfs", MS_NOSUID | MS_NODEV, "size=256m,mode=755")
    # a private /tmp first: packages installed under /tmp (a venv, a clone) are bound on top
    os.makedirs(jail + "/tmp", exist_ok=True)
    _mount(libc, "tmpfs", jail + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=512m,mode=1777")
    for path in visible:
        if (workdir + "/").startswith(path.rstrip("/") + "/"):
            continue  # never a folder that holds the grading dirs (e.g. a module in /tmp itself)
        target = jail + path
        if os.path.islink(path):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.symlink(os.readlink(path), target)
            continue
        os.makedirs(target, exist_ok=True)
        _mount(libc, path, target, None, MS_BIND | MS_REC)
        _mount(libc, None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID)
    os.makedirs(jail + "/dev", exist_ok=True)
    _mount(libc, "/dev", jail + "/dev", None, MS_BIND | MS_REC)
    os.makedirs(jail + "/proc", exist_ok=True)
    _mount(libc, "proc", jail + "/proc", "proc", MS_NOSUID | MS_NODEV)
    os.makedirs(jail + workdir, exist_ok=True)
    _mount(libc, workdir, jail + workdir, None, MS_BIND)
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
    libc = ctypes.CDLL(None, use_errno=True)
    libc.unshare(CLONE_NEWNET)  # no network; best effort (needs CAP_SYS_ADMIN)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NPROC, (limits["nproc"], limits["nproc"]))
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def _zygote_main(conn: socket.socket) -> None:  # pragma: no cover - runs in the zygote
    os.setsid()
    wire.send(conn, {"pid": os.getpid()})
    config = wire.recv(conn)
    config["visible"] = _VISIBLE
    workdir = config["workdir"]
    os.chdir(workdir)
    log = os.open(os.path.join(workdir, ".reprokit-output.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    isolation = ["uid", "network", "limits"] if config["uid"] is not None else ["limits"]
    if config["uid"] is not None:
        try:
            _enter_jail(workdir, config["visible"])
            isolation.append("filesystem")
        except OSError as e:
            print(f"reprokit: no file-system isolation ({e})", flush=True)
    _drop_privileges(config["uid"], config["limits"])
    tmp = os.path.join(workdir, ".tmp")
    os.makedirs(tmp, exist_ok=True)
    os.environ.update({"HOME": workdir, "TMPDIR": tmp, "MPLBACKEND": "Agg", "MPLCONFIGDIR": tmp,
                       "REPROKIT_SANDBOX": "1", **config.get("env", {})})
    tempfile.tempdir = tmp
    sys.path.insert(0, workdir)
    ns = _execute(config["cells"], config.get("seed"), conn, isolation)
    _serve_zygote(conn, ns)


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


def _execute(cells: list[str], seed: int | None, conn: socket.socket,
             isolation: list[str]) -> dict:  # pragma: no cover
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
    wire.send(conn, {"op": "executed", "errors": errors, "memory_error": memory_error,
                     "isolation": isolation})
    return shell.user_ns


def one_thread_after_fork() -> None:  # pragma: no cover - runs in forked children
    """torch's OpenMP pool does not survive ``fork``: a child that enters a parallel region
    the parent already used waits forever. One thread gives the same numbers (measured on the
    Zhang MLP with 1, 2 and 4 threads) and never deadlocks."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _serve_zygote(conn: socket.socket, ns: dict) -> None:  # pragma: no cover
    while True:
        msg = wire.recv(conn)
        op = msg.get("op")
        if op == "session":
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
                                   capture_args=spec.get("capture_args"))
                value = {"value": obs.value, "rng_changed": list(obs.rng_changed),
                         "calls": list(obs.calls), "opened": list(obs.opened),
                         "c_calls": obs.c_calls, "captured": list(obs.captured)}
            elif op == "bughunt":
                value = _isolated_bughunt(ns, msg)
            else:
                raise ValueError(f"unknown request {op!r}")
            reply = {"op": "result", "value": wire.encode(value, path="result")}
        except BaseException as e:  # noqa: BLE001 - student code may raise anything
            reply = {"op": "error", "type": type(e).__name__, "message": str(e)[:2000],
                     "traceback": "".join(traceback.format_exception(e)[-3:])[:3000]}
        wire.send(conn, reply)


def _isolated_bughunt(ns: dict, msg: dict) -> Any:  # pragma: no cover
    """Run student tests against one implementation in a fork, so nothing carries over."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        one_thread_after_fork()
        try:
            from reprokit.bughunt import load_implementation, run_tests_against

            impl = load_implementation(msg["source"])
            tests = {name: _resolve(ns, path) for name, path in msg["tests"].items()}
            out = run_tests_against(tests, impl, timeout_s=float(msg["timeout_s"]))
            data = json.dumps({"ok": out})
        except BaseException as e:  # noqa: BLE001
            data = json.dumps({"error": f"{type(e).__name__}: {e}"})
        with os.fdopen(w, "w") as f:
            f.write(data)
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        data = f.read()
    os.waitpid(pid, 0)
    try:
        parsed = json.loads(data)
    except ValueError:
        raise RuntimeError("the tests crashed the process (os._exit or a fatal error)") from None
    if "error" in parsed:
        raise RuntimeError(parsed["error"])
    return parsed["ok"]


if __name__ == "__main__":  # pragma: no cover
    _template_main(sys.argv[1], json.loads(sys.argv[2]))
