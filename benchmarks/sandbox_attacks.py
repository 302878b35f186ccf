"""The sandbox against the security corpus: scores, time, the grader's memory, host leftovers.

Run as root: ``python benchmarks/sandbox_attacks.py [--timeout 30]``. Builds the tiny ``sec``
assignment of tests/security with Otter Assign, grades the blank notebook, the reference and
every attack of ``attacks.py`` and ``host_attacks.py`` one after another in this process, and
prints one row each: status, score against the blank's, seconds against ``timeout + 10``, this
grader's peak resident memory while grading it (VmHWM, reset before each grade), and what it
left on the host (files of a sandbox uid in /dev/shm, /tmp, /var/tmp; System V IPC objects;
processes). Goals (issue 11): every attack scores at most the blank; every grade ends within
its timeout + 10 s; the grader's peak stays under 1 GB (the submission's own memory cap is on
top, in its process); nothing is left behind.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent.parent / "tests"
sys.path[:0] = [str(HERE), str(HERE / "security")]

from attacks import ATTACKS  # noqa: E402
from host_attacks import HOST_ATTACKS  # noqa: E402
from test_security import attack_notebook, host_leftovers  # noqa: E402

from reprokit.grading import grade  # noqa: E402


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--memory-mb", type=int, default=2048)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sandbox-bench-"))
    work.chmod(0o755)
    subprocess.run(["otter", "assign", str(HERE / "security" / "sec.ipynb"), str(work / "build"),
                    "--no-run-tests"], check=True, capture_output=True)
    (zip_path,) = (work / "build" / "autograder").glob("sec-autograder*.zip")
    with zipfile.ZipFile(zip_path, "a") as zf:
        zf.writestr("reprokit.json", json.dumps({"public_files": ["public_data.txt"],
                                                 "hidden_files": ["hidden_data.txt"], "seed": 42,
                                                 "time_budget_s": 10}))
    built = {"student": work / "build" / "student" / "sec.ipynb"}
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    notebooks = {"blank": built["student"], "reference": work / "build" / "autograder" / "sec.ipynb"}
    for name, cells in {**ATTACKS, **HOST_ATTACKS}.items():
        cells = [c.replace("{port}", str(port)) for c in cells]
        notebooks[name] = attack_notebook(built, cells, work / f"{name}.ipynb")

    table = Table(title=f"security corpus, --timeout {args.timeout:g}, memory cap {args.memory_mb} MB")
    for col in ("submission", "status", "score", "s", "grader peak MB", "left on host"):
        table.add_column(col)
    blank = None
    worst = {"over_blank": 0, "late": 0, "peak": 0.0, "left": 0}
    for name, nb in notebooks.items():
        before = host_leftovers()
        _reset_peak()
        t0 = time.monotonic()
        r = grade(nb, zip_path, timeout_s=args.timeout, memory_mb=args.memory_mb)
        took = time.monotonic() - t0
        peak = _peak_mb()
        time.sleep(0.5)
        after = host_leftovers()
        left = {k: sorted(after[k] - before[k])[:3] for k in after if after[k] - before[k]}
        if name == "blank":
            blank = r.score
        attack = name not in ("blank", "reference")
        worst["over_blank"] += attack and r.score > blank
        worst["late"] += took > args.timeout + 10
        worst["peak"] = max(worst["peak"], peak)
        worst["left"] += bool(left)
        table.add_row(name, r.status, f"{r.score:g}/{r.possible:g}", f"{took:.1f}", f"{peak:.0f}",
                      json.dumps(left) if left else "-")
    console = Console(width=160)
    console.print(table)
    console.print(f"attacks above the blank: {worst['over_blank']}; grades over timeout+10 s: "
                  f"{worst['late']}; grader peak: {worst['peak']:.0f} MB; with leftovers: {worst['left']}")


if __name__ == "__main__":
    main()
