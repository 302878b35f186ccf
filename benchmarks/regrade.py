"""Benchmark: ``reprokit regrade -j 2`` against a sequential loop of ``otter run``.

    python benchmarks/regrade.py            # 40 submissions
    python benchmarks/regrade.py --quick    # 6 submissions, to try it out

The class is generated from a built level (default: the first level of the first paper,
``dist/zhang2017-random-labels/01-rerun``, written by ``reprokit build
assignments/zhang2017-random-labels``): a third correct (the reference solution), a third
partial (the solution's first half of answer cells, the student's second half), a third
blank (the student notebook). Without a built level it falls back to the tiny
tests/fixtures/regrade-master notebook, built here with ``otter assign``, and says so.

Printed: both wall times and their ratio (goal >= 1.9), and the per-submission overhead
over the notebook's own execution time (goal <= 1 s): each result's ``duration_s`` minus
the time the same cells take in an already-warm IPython, and that overhead amortised with
worker start-up (wall x jobs / submissions minus execution time).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LEVEL = ROOT / "dist" / "zhang2017-random-labels" / "01-rerun"
TINY_MASTER = ROOT / "tests" / "fixtures" / "regrade-master" / "tiny.ipynb"
KINDS = ("correct", "partial", "blank")


def built_level(level_dir: Path, work: Path) -> tuple[Path, Path, Path, str]:
    """(autograder zip, solution notebook, student notebook, where they came from)."""
    zips = sorted(level_dir.glob("*-autograder*.zip")) if level_dir.is_dir() else []
    if zips:
        name = level_dir.name
        return (zips[0], level_dir / "solutions" / f"{name}.ipynb",
                level_dir / "student" / f"{name}.ipynb", str(level_dir))
    out = work / "tiny-build"
    subprocess.run(["otter", "assign", str(TINY_MASTER), str(out), "--no-run-tests"], check=True,
                   capture_output=True)
    (zip_path,) = (out / "autograder").glob("tiny-autograder*.zip")
    with zipfile.ZipFile(zip_path, "a") as zf:
        zf.writestr("reprokit.json", json.dumps({"public_files": [], "hidden_files": [],
                                                 "time_budget_s": 10, "seed": 42}))
    return (zip_path, out / "autograder" / "tiny.ipynb", out / "student" / "tiny.ipynb",
            f"the tiny fixture {TINY_MASTER.relative_to(ROOT)} ({level_dir} is not built)")


def make_class(solution: Path, student: Path, n: int, dest: Path) -> dict[str, str]:
    """``n`` submissions named ``student<i>.ipynb``; returns name -> kind."""
    sol = nbformat.read(solution, as_version=4)
    blank = nbformat.read(student, as_version=4)
    # pair code cells in order (markdown differs: manual answers, placeholders)
    sol_code = [c for c in sol.cells if c.cell_type == "code"]
    blank_code = [i for i, c in enumerate(blank.cells) if c.cell_type == "code"]
    if len(sol_code) != len(blank_code):
        raise SystemExit(f"{solution} and {student} have different code cells; rebuild the level")
    answers = [(i, c) for i, c in zip(blank_code, sol_code, strict=True) if c.source != blank.cells[i].source]
    partial = nbformat.from_dict(json.loads(json.dumps(blank)))
    for i, cell in answers[: max(1, len(answers) // 2)]:
        partial.cells[i] = cell
    notebooks = {"correct": sol, "partial": partial, "blank": blank}
    dest.mkdir(parents=True)
    kinds = {}
    for i in range(n):
        kind = KINDS[i % 3]
        name = f"student{i:02d}"
        nbformat.write(notebooks[kind], dest / f"{name}.ipynb")
        kinds[name] = kind
    return kinds


def execution_times(submissions: Path, kinds: dict[str, str], autograder: Path,
                    work: Path) -> dict[str, list[float]]:
    """Seconds each kind's code cells take in a warm IPython (imports already paid), and
    the cells followed by the autograder's tests in that same process (no isolation)."""
    files = work / "exec"
    with zipfile.ZipFile(autograder) as zf:
        zf.extractall(files)
    first = {kind: submissions / f"{name}.ipynb" for name, kind in sorted(kinds.items())}
    script = r"""
import json, os, sys, time, warnings
warnings.filterwarnings("ignore")
from reprokit.sandbox import DEFAULT_PRELOAD
import importlib
for m in DEFAULT_PRELOAD:
    try: importlib.import_module(m)
    except Exception: pass
import nbformat
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance()
from otter.test_files import ExceptionTestFile
tests = sorted(p for p in os.listdir(sys.argv[2]) if p.endswith(".py"))
out = {}
for kind, path in json.loads(sys.argv[1]).items():
    cells = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    times, with_tests = [], []
    for _ in range(2):  # the first pass pays one-off imports; keep the faster
        shell.reset(new_session=True)
        t0 = time.perf_counter()
        for src in cells:
            shell.run_cell(src, silent=True)
        times.append(time.perf_counter() - t0)
        for name in tests:  # what otter's grading does next, in the same warm process
            ExceptionTestFile.from_file(os.path.join(sys.argv[2], name)).run(shell.user_ns)
        with_tests.append(time.perf_counter() - t0)
    out[kind] = [min(times), min(with_tests)]
print(json.dumps(out))
"""
    cwd = files / "files" if (files / "files").is_dir() else files
    proc = subprocess.run([sys.executable, "-c", script,
                           json.dumps({k: str(p) for k, p in first.items()}), str(files / "tests")],
                          cwd=cwd, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def time_regrade(submissions: Path, autograder: Path, out: Path, jobs: int) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "from reprokit.cli import main; main()", "regrade",
                    str(submissions), "-a", str(autograder), "-j", str(jobs), "-o", str(out)],
                   check=True, capture_output=True)
    return time.perf_counter() - t0


def time_otter(submissions: Path, autograder: Path, out: Path) -> tuple[float, dict[str, float]]:
    scores = {}
    t0 = time.perf_counter()
    for nb in sorted(submissions.glob("*.ipynb")):
        dest = out / nb.stem
        dest.mkdir(parents=True)
        subprocess.run(["otter", "run", str(nb), "-a", str(autograder), "-o", str(dest),
                        "--no-logo"], capture_output=True)
        results = dest / "results.json"
        scores[nb.stem] = (sum(t.get("score", 0) for t in json.loads(results.read_text())["tests"]
                               if t.get("max_score")) if results.exists() else float("nan"))
    return time.perf_counter() - t0, scores


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its numbers."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="6 submissions instead of 40")
    parser.add_argument("-n", type=int, default=None, help="number of submissions")
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--level", type=Path, default=DEFAULT_LEVEL,
                        help=f"a built level folder (default {DEFAULT_LEVEL.relative_to(ROOT)})")
    parser.add_argument("--skip-otter", action="store_true", help="time reprokit regrade only")
    args = parser.parse_args(argv)
    n = args.n or (6 if args.quick else 40)

    work = Path(tempfile.mkdtemp(prefix="reprokit-bench-regrade-"))
    try:
        autograder, solution, student, source = built_level(args.level, work)
        submissions = work / "submissions"
        kinds = make_class(solution, student, n, submissions)
        exec_s = execution_times(submissions, kinds, autograder, work)
        print(f"source: {source}")
        print(f"{n} submissions ({', '.join(f'{sum(k == x for k in kinds.values())} {x}' for x in KINDS)})")
        print("notebook execution in a warm IPython: "
              + ", ".join(f"{k} {v[0]:.3f} s" for k, v in exec_s.items()))
        print("execution + every test file, same process: "
              + ", ".join(f"{k} {v[1]:.3f} s" for k, v in exec_s.items()))

        regrade_wall = time_regrade(submissions, autograder, work / "regrade", args.jobs)
        results = {p.stem: json.loads(p.read_text())["result"]
                   for p in (work / "regrade" / "results").glob("*.json")}
        print(f"reprokit regrade -j {args.jobs}: {regrade_wall:.1f} s wall "
              f"({regrade_wall / n:.2f} s per submission)")
        for i, what in enumerate(("execution", "execution + tests")):
            overhead = [r["duration_s"] - exec_s[kinds[name]][i] for name, r in results.items()]
            mean_work = statistics.mean(exec_s[k][i] for k in kinds.values())
            amortised = regrade_wall * args.jobs / n - mean_work
            print(f"overhead per submission over {what}: mean {statistics.mean(overhead):.3f} s, "
                  f"max {max(overhead):.3f} s; with worker start-up amortised {amortised:.3f} s "
                  "(goal <= 1 s)")
        if not args.skip_otter:
            otter_wall, otter_scores = time_otter(submissions, autograder, work / "otter")
            mismatched = [s for s, r in results.items()
                          if abs(r["score"] - otter_scores.get(s, float("nan"))) > 1e-9]
            print(f"otter run, sequential: {otter_wall:.1f} s wall ({otter_wall / n:.2f} s per "
                  "submission)")
            print(f"ratio otter / regrade: {otter_wall / regrade_wall:.2f} (goal >= 1.9)")
            print(f"scores that differ between the two: {len(mismatched)} {mismatched[:5]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
