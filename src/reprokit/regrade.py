"""``reprokit regrade``: grade a whole class, resumably, on every core or on a dask cluster.

Each submission is graded by :func:`reprokit.grading.grade` (which isolates it: its own
process, temp dir, time and memory limits). This module only schedules that call and keeps
the books:

* **workers**: a local process pool (long-lived ``forkserver`` workers, so each pays the
  imports and the sandbox's warm template once), or a ``dask.distributed`` cluster when
  ``--scheduler`` names one (the submission's and the autograder's bytes travel with the
  task, so workers need no shared file system);
* **results**: one JSON per submission under ``OUT/results/``, written atomically the moment
  it comes back and keyed by the SHA-256 of the submission's and the autograder's contents;
* **resume**: a rerun reuses every result whose key still matches, so after a crash, a
  ``kill -9`` or Ctrl-C the same command grades only what is missing;
* **report**: ``OUT/grades.csv`` (rows sorted by student), ``OUT/scores.png`` (a histogram
  per question) and a summary table in the terminal.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from reprokit.grading import TIMEOUT_HELP, AutograderError, GradeResult, QuestionScore

RESULTS_DIR = "results"
CSV_NAME = "grades.csv"
HISTOGRAM_NAME = "scores.png"
GRADESCOPE_METADATA = "submission_metadata.yml"
_KEY_SALT = b"reprokit-regrade-v1\0"
_SAFE = re.compile(r"[^A-Za-z0-9._@+-]+")
#: how often a submission may take a worker process down with it before it is scored "error"
MAX_ATTEMPTS = 2


# --------------------------------------------------------------------------- submissions


@dataclass(frozen=True)
class Submitter:
    """A student named in a Gradescope export (``sid`` and ``email`` may be empty)."""

    name: str = ""
    email: str = ""
    sid: str = ""

    @property
    def student(self) -> str:
        """The identifier a grade sheet matches on: the SID, else the email, else the name."""
        return self.sid or self.email or self.name


@dataclass
class Submission:
    """One thing to grade: a notebook, a zip from ``grader.export()``, or a folder."""

    id: str
    path: Path
    submitters: tuple[Submitter, ...] = ()

    @property
    def students(self) -> list[str]:
        """The student identifiers this submission's grade goes to (at least one)."""
        names = [s.student for s in self.submitters if s.student]
        return names or [self.id]


def _safe_id(name: str) -> str:
    return _SAFE.sub("_", name).strip("._") or "submission"


def discover_submissions(path: str | Path) -> list[Submission]:
    """The submissions in ``path``, sorted by id.

    ``path`` is either a Gradescope "Export Submissions" folder (it holds
    ``submission_metadata.yml`` and one ``submission_<id>/`` folder per submission) or a
    plain folder of ``.ipynb`` files (the student is the file stem), ``.zip`` exports, or
    one sub-folder per student.
    """
    root = Path(path)
    if not root.is_dir():
        raise click.UsageError(f"expected a folder of submissions, but {root} is not a folder")
    if (root / GRADESCOPE_METADATA).exists():
        subs = _gradescope_submissions(root)
    else:
        subs = []
        for entry in sorted(root.iterdir()):
            if entry.name.startswith(".") or entry.name == "__pycache__":
                continue
            if entry.is_file() and entry.suffix in (".ipynb", ".zip"):
                subs.append(Submission(entry.stem, entry))
            elif entry.is_dir() and (any(entry.rglob("*.ipynb")) or any(entry.glob("*.zip"))):
                subs.append(Submission(entry.name, entry))
    seen: dict[str, int] = {}
    for sub in subs:  # results are files: ids must be safe and unique
        safe = _safe_id(sub.id)
        seen[safe] = seen.get(safe, 0) + 1
        sub.id = safe if seen[safe] == 1 else f"{safe}-{seen[safe]}"
    if not subs:
        raise click.UsageError(
            f"no submissions found in {root}: expected .ipynb files (one per student) or a "
            f"Gradescope export (a folder with {GRADESCOPE_METADATA})")
    return sorted(subs, key=lambda s: s.id)


def _yaml_loader() -> type:
    import yaml

    class Loader(yaml.SafeLoader):
        """SafeLoader that reads Ruby-tagged values (``!ruby/object:BigDecimal``) as plain data."""

    def _untagged(loader: Any, suffix: str, node: Any) -> Any:
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node)
        return loader.construct_scalar(node)

    Loader.add_multi_constructor("!", _untagged)
    return Loader


def read_gradescope_metadata(path: str | Path) -> dict[str, tuple[Submitter, ...]]:
    """Folder name -> submitters, from an export's ``submission_metadata.yml``.

    Gradescope writes Ruby-style symbol keys (``:submitters:``, ``:name:``, ``:sid:``,
    ``:email:``); a group submission lists several submitters.
    """
    import yaml

    text = Path(path).read_text(encoding="utf-8")
    try:
        data = yaml.load(text, Loader=_yaml_loader())  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        raise click.UsageError(f"{path} is not valid YAML ({e}); is this a Gradescope export?") from None
    if not isinstance(data, dict):
        raise click.UsageError(f"{path}: expected a mapping of submission folders, found "
                               f"{type(data).__name__}")

    def get(d: dict, key: str) -> Any:
        return d.get(f":{key}", d.get(key)) if isinstance(d, dict) else None

    out = {}
    for folder, meta in data.items():
        people = get(meta, "submitters") or []
        out[str(folder)] = tuple(
            Submitter(str(get(p, "name") or ""), str(get(p, "email") or ""), str(get(p, "sid") or ""))
            for p in people if isinstance(p, dict))
    return out


def _gradescope_submissions(root: Path) -> list[Submission]:
    subs = []
    for folder, submitters in read_gradescope_metadata(root / GRADESCOPE_METADATA).items():
        path = root / folder
        if not path.is_dir():
            click.echo(f"warning: {GRADESCOPE_METADATA} lists {folder}, but {path} is missing; "
                       "skipped", err=True)
            continue
        subs.append(Submission(folder, path, submitters))
    return subs


# --------------------------------------------------------------------------- content keys


def _files(path: Path) -> list[tuple[str, Path]]:
    if path.is_file():
        return [(path.name, path)]
    return sorted((p.relative_to(path).as_posix(), p) for p in path.rglob("*") if p.is_file())


def content_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, or of a folder's relative paths and file contents."""
    path = Path(path)
    h = hashlib.sha256()
    if path.is_file():
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        return h.hexdigest()
    for rel, p in _files(path):
        h.update(rel.encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def result_key(submission_digest: str, autograder_digest: str) -> str:
    """The key a stored result must carry to be reused: both contents, hashed together."""
    return hashlib.sha256(_KEY_SALT + submission_digest.encode() + b"\0"
                          + autograder_digest.encode()).hexdigest()


# --------------------------------------------------------------------------- the worker side


def grade_task(task: dict, autograder_blob: bytes | None = None) -> dict:
    """Grade one submission in a worker; never raises.

    ``task`` names the submission by ``path`` (shared file system) or carries it as
    ``files`` (relative path -> bytes); the autograder is ``task["autograder"]`` (a path)
    or ``autograder_blob`` (a zip's bytes, cached per worker by digest). Returns
    ``{"id", "key", "result"}``, or ``"autograder_error"`` / ``"infrastructure_error"``
    (a message) when the fault is not the submission's.
    """
    from reprokit.grading import grade, warm_up

    out: dict[str, Any] = {"id": task["id"], "key": task["key"]}
    tmp = None
    warm_up()  # a no-op in a warm worker; a dask worker pays its start-up here, off the clock
    try:
        autograder = task.get("autograder")
        if autograder_blob is not None:
            autograder = _cached_autograder(autograder_blob, task["autograder_digest"])
        submission = task.get("path")
        if task.get("files") is not None:
            tmp = Path(tempfile.mkdtemp(prefix="reprokit-regrade-sub-"))
            for rel, data in task["files"].items():
                dest = tmp / rel
                if tmp not in dest.resolve().parents:
                    raise ValueError(f"unsafe path in submission: {rel!r}")
                dest.parent.mkdir(parents=True, exist_ok=True)
                dest.write_bytes(data)
            submission = tmp / task["files_root"] if task.get("files_root") else tmp
        result = grade(submission, autograder, timeout_s=task.get("timeout_s"),
                       memory_mb=task.get("memory_mb", 4096))
        out["result"] = result.to_json()
    except AutograderError as e:
        out["autograder_error"] = str(e)
    except Exception as e:  # noqa: BLE001 - the batch must go on; the record says why
        out["infrastructure_error"] = (f"{type(e).__name__}: {e}\n"
                                       + "".join(traceback.format_exc(limit=6))[-2000:])
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _cached_autograder(blob: bytes, digest: str) -> Path:
    cache = Path(tempfile.gettempdir()) / "reprokit-regrade-autograders"
    cache.mkdir(mode=0o700, exist_ok=True)
    path = cache / f"{digest}.zip"
    if not path.exists():
        tmp = cache / f".{digest}.{os.getpid()}.{threading.get_ident()}.tmp"
        tmp.write_bytes(blob)
        os.replace(tmp, path)
    return path


def _worker_init(parent_pid: int) -> None:
    """Pool worker start-up: die with the parent, cleanly, and warm the sandbox now.

    SIGTERM raises :class:`SystemExit`, so a submission being graded is torn down by
    :func:`reprokit.grading.grade`'s own clean-up (its sandbox processes killed, its uid
    released). A watchdog thread sends that SIGTERM when the regrade process disappears
    (``kill -9``, a crash), and kills whatever is left of this worker's tree after a grace
    period, so nothing keeps running for a run that no longer exists.
    """
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the regrade's to handle
    first_ppid = os.getppid()  # the forkserver, which exits when the regrade does

    def watch() -> None:
        while _alive(parent_pid) and os.getppid() == first_ppid:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5.0)
        _kill_tree(os.getpid())
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="reprokit-parent-watch").start()
    from reprokit.grading import warm_up

    warm_up()


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_tree(root: int) -> None:
    """SIGKILL every descendant of ``root``, and every process of a sandbox uid among them."""
    from reprokit import sandbox

    children: dict[int, list[tuple[int, int]]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            status = Path(entry.path, "status").read_text()
        except OSError:
            continue
        ppid = re.search(r"^PPid:\s+(\d+)", status, re.M)
        uid = re.search(r"^Uid:\s+(\d+)", status, re.M)
        if ppid and uid:
            children.setdefault(int(ppid.group(1)), []).append((int(entry.name), int(uid.group(1))))
    frontier, found = [root], []
    while frontier:
        for pid, uid in children.get(frontier.pop(), []):
            found.append((pid, uid))
            frontier.append(pid)
    for pid, _ in found:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    for uid in {uid for _, uid in found if uid in sandbox.UID_RANGE}:
        with contextlib.suppress(Exception):
            sandbox.kill_uid(uid)  # what a submission forked away from the tree


# --------------------------------------------------------------------------- schedulers


Done = Callable[[dict], None]


def _run_local(tasks: list[dict], jobs: int, on_done: Done) -> None:
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    from reprokit.sandbox import PARALLEL_ENV

    if jobs > 1:  # before the forkserver starts, so workers and their sandboxes inherit it
        for key, value in PARALLEL_ENV.items():
            os.environ.setdefault(key, value)
    ctx = multiprocessing.get_context("forkserver")
    # workers fork from a server that imported these once (torch and otter included)
    ctx.set_forkserver_preload(["reprokit.grading", "reprokit.regrade", "reprokit.seeding",
                                "otter.test_files"])
    attempts: Counter[str] = Counter()
    queue = list(tasks)
    while queue:
        pool = ProcessPoolExecutor(max_workers=max(1, min(jobs, len(queue))), mp_context=ctx,
                                   initializer=_worker_init, initargs=(os.getpid(),))
        broken: list[dict] = []
        try:
            pending = {pool.submit(grade_task, t): t for t in queue}
            queue = []
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    task = pending.pop(fut)
                    try:
                        outcome = fut.result()
                    except BrokenProcessPool:
                        broken.append(task)
                        continue
                    except Exception as e:  # noqa: BLE001 - the batch goes on
                        outcome = _grader_failure(task, f"{type(e).__name__}: {e}")
                    on_done(outcome)
        except BaseException:
            _terminate(pool)
            raise
        pool.shutdown(wait=True)
        for task in broken:  # a worker died (e.g. the kernel's OOM killer): try again
            attempts[task["id"]] += 1
            if attempts[task["id"]] >= MAX_ATTEMPTS:
                on_done(_grader_failure(task, f"a grading worker died {MAX_ATTEMPTS} times "
                                              "while this submission was being graded"))
            else:
                queue.append(task)


def _grader_failure(task: dict, why: str) -> dict:
    return {"id": task["id"], "key": task["key"], "infrastructure_error": why}


def _terminate(pool: Any) -> None:
    """Stop a pool now: SIGTERM (each worker tears its sandbox down), then SIGKILL."""
    procs = list((getattr(pool, "_processes", None) or {}).values())  # no public API before 3.14
    pool.shutdown(wait=False, cancel_futures=True)  # (this forgets the processes)
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + 5.0
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()


def _client(scheduler: Any) -> tuple[Any, bool]:
    from dask.distributed import Client

    if isinstance(scheduler, Client):
        return scheduler, False
    address = str(scheduler)
    if address.endswith(".json") and Path(address).exists():
        return Client(scheduler_file=address), True
    return Client(address), True


def _payload(sub: Submission) -> tuple[dict[str, bytes], str]:
    if sub.path.is_file():
        return {sub.path.name: sub.path.read_bytes()}, sub.path.name
    return {rel: p.read_bytes() for rel, p in _files(sub.path)}, ""


def _autograder_bytes(path: Path) -> bytes:
    if path.is_file():
        return path.read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, p in _files(path):
            zf.write(p, rel)
    return buf.getvalue()


def _run_dask(tasks: list[dict], subs: dict[str, Submission], autograder: Path,
              scheduler: Any, on_done: Done) -> None:
    from dask.distributed import as_completed

    client, owned = _client(scheduler)
    try:
        blob = client.scatter(_autograder_bytes(autograder), broadcast=True)
        futures = {}
        for t in tasks:
            files, root = _payload(subs[t["id"]])
            remote = {**t, "autograder": None, "path": None, "files": files, "files_root": root}
            fut = client.submit(grade_task, remote, blob, pure=False,
                                key=f"reprokit-regrade-{t['id']}-{t['key'][:12]}")
            futures[fut] = t
        try:
            for fut in as_completed(list(futures)):
                try:
                    outcome = fut.result()
                except Exception as e:  # noqa: BLE001 - e.g. KilledWorker; the batch goes on
                    outcome = _grader_failure(futures[fut], f"dask: {type(e).__name__}: {e}")
                on_done(outcome)
        except BaseException:
            client.cancel(list(futures))
            raise
    finally:
        if owned:
            client.close()


# --------------------------------------------------------------------------- the books


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _record(sub: Submission, key: str, outcome: dict,
            questions: dict[str, QuestionScore] | None) -> dict:
    if "result" in outcome:
        result = outcome["result"]
    else:  # not the submission's fault: scored "error" now, graded again on the next run
        qs = [QuestionScore(q.name, 0.0, q.possible, "not graded", q.hidden).__dict__
              for q in (questions or {}).values()]
        result = GradeResult("error", {}, 0.0, sum(q["possible"] for q in qs), 0.0,
                             "the grader failed, not the submission; rerun to grade it again: "
                             + outcome.get("infrastructure_error", "")[:1500]).to_json()
        result["questions"] = qs
    return {"submission": sub.id, "key": key, "source": str(sub.path),
            "submitters": [s.__dict__ for s in sub.submitters], "result": result,
            "retry": "result" not in outcome}


def _load_record(path: Path, key: str) -> dict | None:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if record.get("key") != key or record.get("retry") or "result" not in record:
        return None
    try:
        GradeResult.from_json(record["result"])
    except (TypeError, KeyError):
        return None
    return record


def _fmt(x: float) -> str:
    return f"{round(float(x), 6):g}"


def csv_rows(subs: list[Submission], results: dict[str, GradeResult]) -> tuple[list[str], list[dict]]:
    """The grade sheet: header and rows (one per student, sorted by student)."""
    qnames: list[str] = []
    for sub in subs:
        for name in results[sub.id].questions:
            if name not in qnames:
                qnames.append(name)
    header = ["student", "name", "email", "submission", *qnames, "total", "possible", "status",
              "cpu_s", "duration_s", "fingerprint"]
    rows = []
    for sub in subs:
        r = results[sub.id]
        people = sub.submitters or (Submitter(),)
        for person in people:
            row = {"student": person.student or sub.id, "name": person.name, "email": person.email,
                   "submission": sub.id}
            for q in qnames:
                row[q] = _fmt(r.questions[q].score) if q in r.questions else "0"
            row.update(total=_fmt(r.score), possible=_fmt(r.possible), status=r.status,
                       cpu_s=f"{r.cpu_s:.3f}", duration_s=f"{r.duration_s:.3f}",
                       fingerprint=json.dumps(r.fingerprint, sort_keys=True, separators=(",", ":")))
            rows.append(row)
    rows.sort(key=lambda row: (row["student"], row["submission"]))
    return header, rows


def write_csv(path: Path, header: list[str], rows: list[dict]) -> None:
    """Write the grade sheet atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    _atomic_write(path, buf.getvalue())


def write_histogram(path: Path, results: Iterable[GradeResult]) -> None:
    """A PNG with one histogram of scores per question, and one of the totals."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    results = list(results)
    per_q: dict[str, tuple[list[float], float]] = {}
    for r in results:
        for q in r.questions.values():
            scores, _ = per_q.setdefault(q.name, ([], q.possible))
            scores.append(q.score)
    panels = [*((n, s, p) for n, (s, p) in per_q.items()),
              ("total", [r.score for r in results], max((r.possible for r in results), default=1.0))]
    cols = min(3, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig = Figure(figsize=(4 * cols, 3 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    for i, (name, scores, possible) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        top = possible if possible > 0 else 1.0
        ax.hist(scores, bins=min(20, max(2, int(top * 2) + 1)), range=(0, top), color="#4477aa",
                edgecolor="white")
        ax.set_title(f"{name} (out of {_fmt(possible)})")
        ax.set_xlabel("score")
        ax.set_ylabel("submissions")
    fig.suptitle(f"reprokit regrade: {len(results)} submissions")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fig.savefig(tmp, format="png", dpi=100)
    os.replace(tmp, path)


@dataclass
class RegradeSummary:
    """What a regrade produced."""

    out: Path
    csv: Path
    histogram: Path
    results: dict[str, GradeResult]
    rows: list[dict] = field(default_factory=list)
    graded: int = 0
    reused: int = 0
    duration_s: float = 0.0

    @property
    def statuses(self) -> Counter:
        """How many submissions ended in each status."""
        return Counter(r.status for r in self.results.values())

    def table(self) -> Any:
        """A rich table: per question, the mean, full marks and zeros."""
        from rich.table import Table

        table = Table(title=f"regrade: {len(self.results)} submissions "
                            f"({self.graded} graded now, {self.reused} reused)")
        for col, justify in (("question", "left"), ("possible", "right"), ("mean", "right"),
                             ("full marks", "right"), ("zero", "right")):
            table.add_column(col, justify=justify)
        results = list(self.results.values())
        names = list(dict.fromkeys(n for r in results for n in r.questions))
        for name in [*names, "total"]:
            if name == "total":
                pairs = [(r.score, r.possible) for r in results]
            else:
                pairs = [(r.questions[name].score, r.questions[name].possible) for r in results
                         if name in r.questions]
            if not pairs:
                continue
            mean = sum(s for s, _ in pairs) / len(pairs)
            table.add_row(name, _fmt(max(p for _, p in pairs)), f"{mean:.2f}",
                          str(sum(1 for s, p in pairs if p and s >= p)),
                          str(sum(1 for s, _ in pairs if s == 0)),
                          style="bold" if name == "total" else None)
        return table


def _progress(console: Any) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("[bold]grading"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("elapsed"), TimeElapsedColumn(), TextColumn("ETA"),
                    TimeRemainingColumn(), TextColumn("{task.fields[last]}"), console=console,
                    transient=False)


class _NoProgress:
    def __enter__(self) -> _NoProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def add_task(self, *args: Any, **kwargs: Any) -> int:
        return 0

    def update(self, *args: Any, **kwargs: Any) -> None:
        return None


def regrade(
    submissions: str | Path,
    autograder: str | Path,
    *,
    jobs: int | None = None,
    out: str | Path = "regrade-out",
    scheduler: Any = None,
    timeout_s: float | None = None,
    memory_mb: int = 4096,
    progress: bool = False,
    console: Any = None,
) -> RegradeSummary:
    """Grade every submission in ``submissions`` with ``autograder``, reusing stored results.

    ``jobs`` local worker processes (default: every core), or the dask cluster at
    ``scheduler`` (an address such as ``tcp://host:8786``, a scheduler JSON file, or a
    ``dask.distributed.Client``). ``timeout_s`` and ``memory_mb`` go to
    :func:`reprokit.grading.grade` for each submission. Writes ``out/results/*.json``,
    ``out/grades.csv`` and ``out/scores.png``. Raises :class:`AutograderError` when the
    autograder is unusable; a bad submission only gets its status.
    """
    from reprokit.grading import load_autograder

    t0 = time.monotonic()
    autograder = Path(autograder)
    if not autograder.exists():
        raise AutograderError(f"autograder {autograder} does not exist; build one with "
                              "`reprokit build assignments/<paper>`")
    with tempfile.TemporaryDirectory(prefix="reprokit-regrade-check-") as tmp:
        load_autograder(autograder, Path(tmp))  # fail once, early, for a broken autograder
    subs = discover_submissions(submissions)
    out = Path(out)
    results_dir = out / RESULTS_DIR
    results_dir.mkdir(parents=True, exist_ok=True)
    for stale in results_dir.glob(".*.tmp"):  # left by a killed run
        stale.unlink(missing_ok=True)

    ag_digest = content_digest(autograder)
    by_id = {s.id: s for s in subs}
    keys = {s.id: result_key(content_digest(s.path), ag_digest) for s in subs}
    results: dict[str, GradeResult] = {}
    for s in subs:
        record = _load_record(results_dir / f"{s.id}.json", keys[s.id])
        if record is not None:
            results[s.id] = GradeResult.from_json(record["result"])
    reused = len(results)
    todo = [s for s in subs if s.id not in results]
    tasks = [{"id": s.id, "key": keys[s.id], "path": str(s.path), "autograder": str(autograder),
              "autograder_digest": ag_digest, "timeout_s": timeout_s, "memory_mb": memory_mb}
             for s in todo]

    if console is None:
        from rich.console import Console

        console = Console(stderr=True)
    bar = _progress(console) if progress else _NoProgress()
    with bar:
        task_id = bar.add_task("grading", total=len(subs), completed=reused, last="")

        def on_done(outcome: dict) -> None:
            sub = by_id[outcome["id"]]
            if "autograder_error" in outcome:
                raise AutograderError(outcome["autograder_error"])
            known = next(iter(results.values())).questions if results else None
            record = _record(sub, outcome["key"], outcome, known)
            _atomic_write(results_dir / f"{sub.id}.json", json.dumps(record, indent=1))
            results[sub.id] = GradeResult.from_json(record["result"])
            r = results[sub.id]
            bar.update(task_id, advance=1, last=f"{sub.id}: {r.status} {_fmt(r.score)}/{_fmt(r.possible)}")

        if tasks and scheduler is not None:
            _run_dask(tasks, by_id, autograder, scheduler, on_done)
        elif tasks:
            _run_local(tasks, jobs or _cores(), on_done)

    header, rows = csv_rows(subs, _fill_missing_questions(results))
    summary = RegradeSummary(out=out, csv=out / CSV_NAME, histogram=out / HISTOGRAM_NAME,
                             results={s.id: results[s.id] for s in subs}, rows=rows,
                             graded=len(todo), reused=reused)
    write_csv(summary.csv, header, rows)
    write_histogram(summary.histogram, summary.results.values())
    summary.duration_s = round(time.monotonic() - t0, 3)
    return summary


def _fill_missing_questions(results: dict[str, GradeResult]) -> dict[str, GradeResult]:
    """Results lacking questions (a grader failure before any was known) get zero rows."""
    full = next((r.questions for r in results.values() if r.questions), {})
    for r in results.values():
        if not r.questions and full:
            r.questions = {n: QuestionScore(n, 0.0, q.possible, "not graded", q.hidden)
                           for n, q in full.items()}
            r.possible = sum(q.possible for q in r.questions.values())
    return results


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _iter_messages(summary: RegradeSummary) -> Iterator[str]:
    for sid, r in summary.results.items():
        if r.status != "graded":
            yield f"{sid}: {r.status}: {r.message.splitlines()[0] if r.message else ''}"


# --------------------------------------------------------------------------- CLI


@click.command("regrade")
@click.argument("submissions", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--autograder", "-a", required=True, type=click.Path(exists=True, path_type=Path),
              help="The built autograder zip (or its extracted folder).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Local worker processes (default: every core).")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("regrade-out"),
              show_default=True, help="Where results/, grades.csv and scores.png go.")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="A dask.distributed scheduler (tcp://host:8786 or a scheduler JSON file) "
                   "to grade on instead of local processes.")
@click.option("--timeout", "timeout_s", type=float, default=None, help=TIMEOUT_HELP)
@click.option("--memory-mb", type=click.IntRange(min=256), default=4096, show_default=True,
              help="Memory cap per submission.")
def regrade_command(submissions: Path, autograder: Path, jobs: int | None, out: Path,
                    scheduler: str | None, timeout_s: float | None, memory_mb: int) -> None:
    """Grade every submission in SUBMISSIONS (a folder of notebooks or a Gradescope export).

    Rerunning the same command grades only what is missing or changed, so a crash or
    Ctrl-C loses nothing already graded.
    """
    from rich.console import Console

    console = Console()
    try:
        summary = regrade(submissions, autograder, jobs=jobs, out=out, scheduler=scheduler,
                          timeout_s=timeout_s, memory_mb=memory_mb, progress=True,
                          console=Console(stderr=True))
    except AutograderError as e:
        raise click.ClickException(f"the autograder cannot be used: {e}") from None
    except KeyboardInterrupt:
        done = len(list((out / RESULTS_DIR).glob("*.json")))
        console.print(f"[yellow]interrupted; {done} result(s) kept in {out / RESULTS_DIR}. "
                      "Run the same command again to grade the rest.", soft_wrap=True)
        sys.exit(130)
    console.print(summary.table())
    statuses = ", ".join(f"{n} {s}" for s, n in sorted(summary.statuses.items()))
    console.print(f"{statuses}; {summary.duration_s:.1f} s")
    for line in _iter_messages(summary):
        console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)
    console.print(f"wrote {summary.csv}, {summary.histogram} and {len(summary.results)} results "
                  f"in {summary.out / RESULTS_DIR}", soft_wrap=True)
