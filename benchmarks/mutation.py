"""Benchmark: the mutation gate's speed, per level and for a whole paper.

    python benchmarks/mutation.py                                  # Zhang, every level
    python benchmarks/mutation.py --paper tests/fixtures/tiny-paper --level 01 --level 04
    python benchmarks/mutation.py --max-per-question 4 --workers 2
    python benchmarks/mutation.py --compare-plain                  # also grade each mutant whole

The paper is built once without any QA (``build(..., qa=False)``) into a temporary folder;
then for each level the reference is graded once (its time sets the mutants' timeouts, as
in the build) and :func:`reprokit.mutation.gate_level` runs on the built zip.

Printed per level: mutants graded, killed, seconds, mutants per second, the CPU-seconds the
gate spent (every mutant's processes, prefixes, controls and the tests' grader side: the
load-independent measure on a shared machine), and with
``--compare-plain`` the seconds the same mutants take when each mutated notebook is graded
whole by :func:`reprokit.grading.grade` (no prefix reuse, one at a time); then the whole
gate's time against the goal (<= 300 s on 2 cores). The workers' start-up (imports and the
sandbox template, paid once per build) is printed on its own line, not in any level.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def _plain_seconds(lb, mutants) -> float:
    """Grade each mutated notebook whole, one after another (the unoptimised way)."""
    from reprokit.grading import grade, read_cells

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        for m in mutants:
            nb = nbformat.read(lb.solution, as_version=4)
            cells, _ = read_cells(lb.solution)
            code = [c for c in nb.cells if c.cell_type == "code" and c.source in cells]
            code[m.cell].source = m.source
            path = Path(tmp) / f"{m.id}.ipynb"
            nbformat.write(nb, path)
            grade(path, lb.zipfile)
    return time.monotonic() - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paper", type=Path, default=ROOT / "assignments" / "zhang2017-random-labels")
    parser.add_argument("--level", action="append", default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--max-per-question", type=int, default=None,
                        help="default: paper.yaml's mutation.max_per_question (8)")
    parser.add_argument("--compare-plain", action="store_true")
    parser.add_argument("--report-dir", type=Path, default=None,
                        help="write each level's mutation-report.json there and print per question")
    args = parser.parse_args()

    from reprokit.build import build
    from reprokit.grading import grade, warm_up
    from reprokit.mutation import gate_level, level_mutants, read_settings, shutdown_pool, warm_pool

    settings = read_settings(args.paper)
    if args.max_per_question:
        settings.max_per_question = args.max_per_question
    with tempfile.TemporaryDirectory(prefix="reprokit-bench-mutation-") as tmp:
        wheel = Path(tmp) / "reprokit-0.1.0-py3-none-any.whl"
        wheel.write_bytes(b"benchmark: not a real wheel")
        built = build(args.paper, Path(tmp) / "dist", levels=args.level, qa=False, wheel=wheel)
        warm_up()
        print(f"workers' start-up (once per build): {warm_pool(args.workers):.1f} s")
        print(f"{'level':<16}{'mutants':>8}{'killed':>8}{'seconds':>9}{'mutants/s':>11}"
              f"{'cpu s':>9}{'plain s':>9}")
        total, total_mutants, total_cpu = 0.0, 0, 0.0
        for lb in built.levels:
            ref = grade(lb.solution, lb.zipfile)
            t0 = time.monotonic()
            report = gate_level(lb.master.path, lb.solution, lb.zipfile, lb.level, settings,
                                reference_time_s=ref.duration_s, workers=args.workers)
            seconds = time.monotonic() - t0
            total += seconds
            total_mutants += report.graded
            total_cpu += report.cpu_s
            plain = ""
            if args.compare_plain and report.graded:
                per_q, _ = level_mutants(lb.master.path, lb.solution, lb.level,
                                         settings.max_per_question)
                plain = f"{_plain_seconds(lb, [m for ms in per_q.values() for m in ms]):9.1f}"
            rate = report.graded / seconds if seconds else 0.0
            print(f"{lb.level:<16}{report.graded:>8}{report.killed:>8}{seconds:>9.1f}{rate:>11.2f}"
                  f"{report.cpu_s:>9.1f}{plain}", flush=True)
            if args.report_dir:
                from reprokit.mutation import write_report

                (args.report_dir / lb.level).mkdir(parents=True, exist_ok=True)
                write_report(args.report_dir / lb.level, [report])
                for line in report.lines():
                    print("    " + line, flush=True)
        shutdown_pool()
    print(f"whole gate: {total_mutants} mutants in {total:.1f} s "
          f"({total_mutants / total if total else 0:.2f} mutants/s, {args.workers} workers); "
          f"goal <= 300 s on 2 cores: {'met' if total <= 300 else 'NOT met'}")
    # Wall time depends on what else the machine runs; CPU-seconds do not. Spread over two
    # otherwise idle cores the gate cannot take less than half of them.
    print(f"whole gate: {total_cpu:.1f} CPU-seconds (mutants, prefixes, controls and their tests; "
          f"not the workers' start-up); on 2 idle cores at least {total_cpu / 2:.1f} s; load "
          f"average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
