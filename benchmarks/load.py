"""Benchmark: does a grade depend on how busy the machine is?

    python benchmarks/load.py                      # every level of the bundled paper
    python benchmarks/load.py --level 02 --burners 4 --repeat 5

Builds the paper's autograder zips (without the QA gate) into a temporary folder, then grades
each level's reference solution with :func:`reprokit.grading.grade`, first on the machine as
it is ("idle"), then with ``--burners`` CPU-burning processes beside it ("loaded"). Printed per
level: score, the reference's CPU-seconds (what budgets count) and wall seconds in both
conditions, and the loaded-to-idle ratios. The goal is a CPU ratio <= 1.3 on every level and
the same score in both; the wall ratio shows what a wall-clock budget would have suffered.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "assignments" / "zhang2017-random-labels"


@contextmanager
def burners(n: int):
    procs = [subprocess.Popen([sys.executable, "-c", "while True:\n    pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--paper", type=Path, default=PAPER)
    parser.add_argument("--level", action="append", default=None, help="e.g. 02; repeatable")
    parser.add_argument("--burners", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1, help="grades per condition (median)")
    args = parser.parse_args()

    from reprokit.build import build
    from reprokit.grading import grade, warm_up

    out = Path(tempfile.mkdtemp(prefix="reprokit-load-"))
    result = build(args.paper, out, levels=args.level, qa=False)
    warm_up()
    print(f"{os.cpu_count()} cores; load average before: {os.getloadavg()[0]:.2f}; "
          f"{args.burners} burners when loaded; median of {args.repeat}")
    header = ("level", "score", "cpu idle", "cpu loaded", "cpu ratio", "wall idle",
              "wall loaded", "wall ratio")
    print("  ".join(f"{h:>11}" for h in header))
    worst = 0.0
    for lb in result.levels:
        runs: dict[str, list] = {"idle": [], "loaded": []}
        for condition in ("idle", "loaded"):
            with burners(args.burners if condition == "loaded" else 0):
                for _ in range(args.repeat):
                    runs[condition].append(grade(lb.solution, lb.zipfile))
        scores = {f"{r.score:g}/{r.possible:g}" for rs in runs.values() for r in rs}
        cpu = {c: statistics.median(r.cpu_s for r in rs) for c, rs in runs.items()}
        wall = {c: statistics.median(r.duration_s for r in rs) for c, rs in runs.items()}
        ratio = cpu["loaded"] / cpu["idle"] if cpu["idle"] else float("nan")
        worst = max(worst, ratio)
        row = (lb.level, " | ".join(sorted(scores)), f"{cpu['idle']:.1f}", f"{cpu['loaded']:.1f}",
               f"{ratio:.2f}", f"{wall['idle']:.1f}", f"{wall['loaded']:.1f}",
               f"{wall['loaded'] / wall['idle']:.2f}")
        print("  ".join(f"{v:>11}" for v in row), flush=True)
    print(f"worst CPU ratio (loaded / idle): {worst:.2f} (goal <= 1.3)")


if __name__ == "__main__":
    main()
