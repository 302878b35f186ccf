"""CPU seconds spent by one submission's processes: the clock its budgets are counted on.

Wall-clock time depends on what else the machine is doing: on two cores shared with
four busy processes a notebook takes several times longer, and a wall-clock budget
then fails correct work. The CPU seconds a submission's own processes spend barely
move with load, so budgets and timeouts count those (wall time stays only as a
generous safety net, see :data:`WALL_FACTOR`).

:class:`CpuMeter` measures a process tree two ways, the best one that works here:

* **cgroup v2**: the submission's first process is moved into a fresh cgroup, which
  every process it starts inherits; ``cpu.stat``'s ``usage_usec`` is exact and
  includes processes that have already exited. Needs a writable cgroup v2 hierarchy
  (root on a host; usually not inside Docker's default profile).
* **/proc**: otherwise, the grader sums ``utime + stime`` over the submission's
  processes (those of its sandbox uid, or of its session), remembering the last
  reading of each process that has gone. A process that starts and ends between
  two readings is missed; the wall-clock safety net still bounds it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

#: wall-clock safety net, as a multiple of a CPU budget: a sleeping or blocked
#: submission still ends, and a busy machine has ten times the room it needs
WALL_FACTOR = 10.0
#: wall time this many times the CPU time (and some seconds more) means the machine was busy
BUSY_RATIO = 2.0
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cgroup2_root() -> Path | None:
    """The cgroup v2 directory this process belongs to, if the v2 hierarchy is mounted."""
    try:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
        membership = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    mount = next((line.split(" - ")[0].split()[4] for line in mounts
                  if " - cgroup2 " in line), None)
    rel = next((line[3:] for line in membership if line.startswith("0::")), None)
    if mount is None or rel is None:
        return None
    return Path(mount) / rel.lstrip("/")


def busy_note(cpu_s: float, wall_s: float) -> str:
    """A phrase for messages when wall time is far above CPU time ('' otherwise)."""
    if wall_s > BUSY_RATIO * cpu_s + 1.0:
        return (f" (it used {cpu_s:.1f} CPU-seconds in {wall_s:.0f} s of wall time: the machine "
                "was busy, or the code was waiting rather than computing)")
    return ""


class CpuMeter:
    """CPU seconds used so far by the processes of one submission.

    ``pid`` is its first process (the zygote), to be moved into a private cgroup;
    ``uid`` (when the submission runs as its own uid) or ``sid`` (its session) picks
    its processes out of ``/proc`` when no cgroup can be made.
    """

    def __init__(self, pid: int, *, uid: int | None = None, sid: int | None = None):
        self.pid, self.uid, self.sid = pid, uid, sid if sid is not None else pid
        self.cgroup: Path | None = None
        self._seen: dict[tuple[int, int], float] = {}
        self._gone = 0.0
        self._attach()

    @property
    def method(self) -> str:
        return "cgroup" if self.cgroup is not None else "proc"

    def _attach(self) -> None:
        root = _cgroup2_root()
        if root is None or os.environ.get("REPROKIT_NO_CGROUP"):
            return
        group = root / f"reprokit-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            group.mkdir()
        except OSError:
            return
        try:
            (group / "cgroup.procs").write_text(str(self.pid))
            self._read_cgroup(group)
        except (OSError, ValueError):
            with contextlib.suppress(OSError):
                group.rmdir()
            return
        self.cgroup = group

    @staticmethod
    def _read_cgroup(group: Path) -> float:
        for line in (group / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec":
                return int(value) / 1e6
        raise ValueError("cpu.stat has no usage_usec")

    def seconds(self) -> float:
        """CPU seconds used so far by every process of the submission, living or gone."""
        if self.cgroup is not None:
            try:
                return self._read_cgroup(self.cgroup)
            except (OSError, ValueError):
                self.cgroup = None  # fall back for the rest of this submission
        return self._scan()

    def _scan(self) -> float:
        live: dict[tuple[int, int], float] = {}
        try:
            entries = os.listdir("/proc")
        except OSError:
            return self._gone + sum(self._seen.values())
        for entry in entries:
            if not entry.isdigit():
                continue
            try:
                if self.uid is not None and os.stat(f"/proc/{entry}").st_uid != self.uid:
                    continue
                with open(f"/proc/{entry}/stat", "rb") as f:
                    stat = f.read().decode("ascii", "replace")
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()
            # fields[0] is field 3 (state): session is field 6, utime 14, stime 15, start 22
            if self.uid is None and int(fields[3]) != self.sid:
                continue
            key = (int(entry), int(fields[19]))
            live[key] = (int(fields[11]) + int(fields[12])) / _TICKS
        for key, value in self._seen.items():
            if key not in live:
                self._gone += value
        self._seen = live
        return self._gone + sum(live.values())

    def close(self) -> None:
        """Remove the cgroup (once its processes are gone)."""
        if self.cgroup is not None:
            with contextlib.suppress(OSError):
                (self.cgroup / "cgroup.kill").write_text("1")
            for _ in range(50):
                try:
                    self.cgroup.rmdir()
                    break
                except OSError:
                    import time

                    time.sleep(0.02)
            self.cgroup = None
