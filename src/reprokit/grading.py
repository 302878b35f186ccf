"""Grade one submission against an autograder, without trusting the submission.

:func:`grade` is the one entry point that ``reprokit regrade``, the build's QA gate
and the Gradescope zip (:mod:`reprokit.gradescope`) share. It loads the tests and
the hidden material in this (trusted) process, executes the notebook in a sandboxed
zygote (:mod:`reprokit.sandbox`), then runs Otter's own exception-based test files
here, against proxies of the notebook's names. What the submission does can change
only the data it hands over, never the tests, the comparisons or the scores.

The policy on budgets: a notebook that does not finish executing within its time
budget, or that runs out of memory, scores zero on every question (status
``timeout`` / ``out-of-memory``), so blowing the budget never keeps earlier credit.
``possible`` always comes from the autograder, never from what ran.

Budgets count CPU-seconds of the submission's own processes
(:mod:`reprokit.cputime`), not wall time, so a grade does not depend on how busy the
machine is; wall time is only a safety net (:data:`reprokit.cputime.WALL_FACTOR`
times the CPU budget). :func:`limits` is the one place the defaults come from.
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import json
import os
import shutil
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click

from reprokit import cputime, sandbox

STATUSES = ("graded", "timeout", "out-of-memory", "error", "invalid-notebook", "wrong-assignment")
MANIFEST = "reprokit.json"
_MATERIAL: contextvars.ContextVar[Path | None] = contextvars.ContextVar("reprokit_material", default=None)


class AutograderError(RuntimeError):
    """The autograder itself is broken (not the submission's fault)."""


def material_path(name: str = "") -> Path:
    """Where a test finds shipped material (``wheats``, ``chaffs/hidden``, ``weights`` ...).

    While :func:`grade` runs a test it is the trusted copy of the autograder's
    ``files/``; under ``otter run`` or in a notebook it is the current directory.
    """
    root = _MATERIAL.get()
    return (root if root is not None else Path.cwd()) / name


_MODULES: dict[str, Any] = {}


def material_module(relpath: str) -> Any:
    """The shipped module at ``material_path(relpath)`` (e.g. ``"authors/randlabels.py"``),
    imported under a private name: the grader's own copy of the authors' code, which nothing
    the submission imported or patched can reach. Modules are cached by content, so a
    regrade imports each one once per worker."""
    import hashlib
    import importlib.util
    import sys

    path = material_path(relpath)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    if digest not in _MODULES:
        name = f"reprokit_material_{path.stem}_{digest}"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while it executes
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        _MODULES[digest] = module
    return _MODULES[digest]


@dataclass
class QuestionScore:
    """One question's result."""

    name: str
    score: float
    possible: float
    output: str = ""
    hidden: bool = False
    #: the public test cases' share of ``score`` / ``possible`` and their summary (what a
    #: student may see before the due date); the rest is the hidden tests'
    public_score: float = 0.0
    public_possible: float = 0.0
    public_output: str = ""
    hidden_output: str = ""


@dataclass
class GradeResult:
    """The result of grading one submission (JSON round-trippable)."""

    status: str
    questions: dict[str, QuestionScore]
    score: float
    possible: float
    duration_s: float
    message: str = ""
    fingerprint: dict = field(default_factory=dict)
    cpu_s: float = 0.0  # CPU-seconds of the submission's processes (what budgets count)

    def to_json(self) -> dict:
        d = asdict(self)
        d["questions"] = [asdict(q) for q in self.questions.values()]
        return d

    @classmethod
    def from_json(cls, d: dict) -> GradeResult:
        qs = {q["name"]: QuestionScore(**q) for q in d["questions"]}
        return cls(**{**d, "questions": qs})

    @property
    def percent(self) -> float:
        return 100.0 * self.score / self.possible if self.possible else 0.0

    def to_gradescope(self, *, show_hidden: bool = False,
                       hidden_visibility: str = "after_due_date") -> dict:
        """Gradescope's ``results.json`` (see docs/gradescope.md for the layout).

        Per question, its public tests are one entry students always see (``visible``),
        with their messages; its hidden tests another, shown ``hidden_visibility`` (by
        default after the due date), whose messages appear only with ``show_hidden``.
        A last entry, for instructors only (``hidden``, no points), records the status,
        the time and the isolation layers that were active. A ``wrong-assignment``
        result carries no score at all: nothing about it is a grade.
        """
        instructors = {
            "name": "Grading environment (instructors only)", "score": 0.0, "max_score": 0.0,
            "visibility": "hidden",
            "output": (f"status: {self.status}\nmessage: {self.message}\n"
                       f"duration: {self.duration_s:g} s\n"
                       f"isolation layers: {', '.join(self.fingerprint.get('isolation') or []) or 'none'}\n"
                       f"missing layers: {json.dumps(self.fingerprint.get('isolation_missing') or {})}\n"
                       f"fingerprint: {json.dumps(self.fingerprint, sort_keys=True, default=str)}"),
        }
        if self.status == "wrong-assignment":
            notice = f"Not graded: {self.message}"
            return {"output": notice, "stdout_visibility": "hidden",
                    "tests": [{"name": "Wrong assignment: not graded", "output": notice,
                               "visibility": "visible", "status": "failed"},
                              {k: v for k, v in instructors.items() if k not in ("score", "max_score")}],
                    "extra_data": {"reprokit_status": self.status}}
        tests: list[dict[str, Any]] = []
        if self.status != "graded":
            tests.append({"name": f"Submission: {self.status}", "score": 0.0, "max_score": 0.0,
                          "visibility": "visible", "status": "failed", "output": self.message})
        for q in self.questions.values():
            hidden_possible = round(q.possible - q.public_possible, 5)
            if q.public_possible > 0 or q.public_output or hidden_possible <= 0:
                passed = q.public_score >= q.public_possible - 1e-9
                tests.append({"name": f"{q.name}: public tests", "score": round(q.public_score, 5),
                              "max_score": round(q.public_possible, 5), "visibility": "visible",
                              "status": "passed" if passed else "failed",
                              "output": q.public_output or q.output.split("\n")[0],
                              "extra_data": {"question": q.name, "part": "public"}})
            if hidden_possible > 0:
                earned = round(max(0.0, q.score - q.public_score), 5)
                output = (q.hidden_output if show_hidden and q.hidden_output else
                          f"{q.name}: hidden tests: {earned:g} of {hidden_possible:g} point(s).")
                tests.append({"name": f"{q.name}: hidden tests", "score": earned,
                              "max_score": hidden_possible, "visibility": hidden_visibility,
                              "status": "passed" if earned >= hidden_possible - 1e-9 else "failed",
                              "output": output, "extra_data": {"question": q.name, "part": "hidden"}})
        tests.append(instructors)
        summary = ("Public tests are shown now; hidden tests and the total after the due date."
                   if self.status == "graded" else f"{self.status}: {self.message}")
        if self.status == "graded" and self.message:
            summary += f"\n{self.message}"
        return {"score": round(self.score, 5), "tests": tests, "stdout_visibility": "hidden",
                "output": f"reprokit graded this notebook. {summary}".strip(),
                "extra_data": {"reprokit_status": self.status}}


def question_score(tf: Any) -> QuestionScore:
    """One Otter test file's result, with the public test cases' share kept apart."""
    public_possible = float(sum(tc.points or 0 for tc in tf.test_cases if not tc.hidden))
    results = list(getattr(tf, "test_case_results", []) or [])
    if not results:
        return QuestionScore(tf.name, 0.0, float(tf.possible), "not graded", hidden=not tf.all_public,
                             public_possible=public_possible, public_output="not graded")
    public = [r for r in results if not r.test_case.hidden]
    if tf.all_or_nothing:
        public_score = public_possible if tf.passed_all else 0.0
    else:
        public_score = float(sum(r.test_case.points or 0 for r in public if r.passed))
    score = float(tf.score)
    public_score = min(public_score, score)
    hidden_output = ""
    if not tf.all_public:
        failed = [r for r in results if r.test_case.hidden and not r.passed]
        hidden_output = "\n\n".join(f"{r.test_case.name}:\n{(r.message or '').strip()}" for r in failed) \
            or f"{tf.name}: every hidden test passed."
    return QuestionScore(tf.name, score, float(tf.possible), tf.summary(), hidden=not tf.all_public,
                         public_score=public_score, public_possible=public_possible,
                         public_output=tf.summary(public_only=True) if public else "",
                         hidden_output=hidden_output)


# --------------------------------------------------------------------------- autograder


@dataclass
class Autograder:
    """A built autograder, copied into a private directory the sandbox cannot read."""

    root: Path
    config: dict
    manifest: dict
    tests: list[Path]

    @property
    def files(self) -> Path:
        return self.root / "files"

    @property
    def seed(self) -> int | None:
        seed = self.manifest.get("seed", self.config.get("seed"))
        return int(seed) if seed is not None else None

    @property
    def time_budget_s(self) -> float:
        return float(self.manifest.get("time_budget_s", 60))

    @property
    def assignment_name(self) -> str | None:
        """The Otter assignment name this autograder grades (``name`` in the master's
        ASSIGNMENT CONFIG), if it has one."""
        name = self.manifest.get("assignment_name") or self.config.get("assignment_name")
        return str(name) if name else None

    def public_files(self) -> list[Path]:
        names = self.manifest.get("public_files")
        if names is None:  # a plain Otter zip: everything, as otter run does
            return sorted(self.files.iterdir()) if self.files.is_dir() else []
        return [self.files / n for n in names if (self.files / n).exists()]


def load_autograder(path: str | Path, into: Path) -> Autograder:
    """Copy an autograder zip or folder into ``into`` (private) and read its config."""
    path = Path(path)
    root = into / "autograder"
    if path.is_dir():
        shutil.copytree(path, root, symlinks=False)
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            zf.extractall(root)
    else:
        raise AutograderError(f"{path}: not an autograder zip or folder")
    config = _read_json(root / "otter_config.json")
    manifest = _read_json(root / MANIFEST)
    tests = sorted((root / "tests").glob("*.py"))
    if not tests:
        raise AutograderError(f"{path}: the autograder has no tests/*.py")
    return Autograder(root, config, manifest, tests)


def _read_json(path: Path) -> dict:
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as e:
        raise AutograderError(f"{path.name}: {e}") from None


def _load_tests(ag: Autograder) -> list[Any]:
    from otter.test_files.exception_test import ExceptionTestFile

    out = []
    for path in ag.tests:
        try:
            out.append(ExceptionTestFile.from_file(str(path)))
        except Exception as e:  # noqa: BLE001
            raise AutograderError(f"test file {path.name} does not load: {e}") from e
    return out


def _test_names(test_file: Any) -> list[str]:
    names: set[str] = set()
    for tc in test_file.test_cases:
        names.update(inspect.signature(tc.body.test_func).parameters)
    return sorted(names)


# --------------------------------------------------------------------------- submission


class InvalidSubmission(ValueError):
    """The submission is not a readable notebook."""


def read_cells(path: Path) -> tuple[list[str], Path]:
    """The code cells of a submission (.ipynb, or a folder/zip holding one)."""
    import nbformat

    if path.is_dir():
        nbs = sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        zips = sorted(path.glob("*.zip"))
        if not nbs and len(zips) == 1:  # an export from grader.export()
            nbs = zips
        if len(nbs) != 1:
            raise InvalidSubmission(f"expected one notebook in {path.name}, found {len(nbs)}")
        path = nbs[0]
    if path.suffix == ".zip":
        try:
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if n.endswith(".ipynb") and "checkpoint" not in n]
                if len(names) != 1:
                    raise InvalidSubmission(f"expected one notebook in {path.name}, found {len(names)}")
                text = zf.read(names[0]).decode("utf-8")
        except zipfile.BadZipFile as e:
            raise InvalidSubmission(f"{path.name}: {e}") from None
    else:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidSubmission(f"{path.name}: {e}") from None
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as e:  # noqa: BLE001 - nbformat raises several kinds
        raise InvalidSubmission(f"{path.name} is not a valid notebook: {str(e)[:300]}") from None
    cells = []
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata", {})
        if "otter_ignore" in meta.get("tags", []) or meta.get("otter", {}).get("ignore"):
            continue
        source = cell.get("source", "")
        cells.append(source if isinstance(source, str) else "".join(source))
    return cells, path


def notebook_assignment_name(path: Path) -> str | None:
    """The Otter assignment name a notebook (or an export zip holding one) carries:
    ``metadata.otter.assignment_name``, written by Otter Assign. None when absent."""
    try:
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as zf:
                names = [n for n in zf.namelist() if n.endswith(".ipynb") and "checkpoint" not in n]
                text = zf.read(names[0]).decode("utf-8") if len(names) == 1 else "{}"
        else:
            text = path.read_text(encoding="utf-8")
        meta = json.loads(text).get("metadata") or {}
    except (OSError, ValueError, zipfile.BadZipFile, AttributeError):
        return None
    name = (meta.get("otter") or {}).get("assignment_name") if isinstance(meta, dict) else None
    return str(name) if name else None


def wrong_assignment(notebook: Path, ag: Autograder) -> str:
    """Why ``notebook`` is not a submission for ``ag`` (its Otter assignment name names
    another assignment), or "" when it may be graded. A notebook without a name (metadata
    lost, e.g. cells pasted into a fresh notebook) is graded: the name is a guard against
    uploading the wrong file, not a credential."""
    expected, got = ag.assignment_name, notebook_assignment_name(notebook)
    if not expected or not got or got == expected:
        return ""
    return (f"this notebook belongs to assignment {got!r}, but this autograder grades "
            f"{expected!r}. Submit the notebook of assignment {expected!r} (nothing was graded).")


# --------------------------------------------------------------------------- grade


def _fingerprint(seed: int | None) -> dict:
    try:
        from reprokit.seeding import fingerprint
    except ImportError:  # pragma: no cover
        return {}
    try:
        return fingerprint(seed)
    except TypeError:  # pragma: no cover - older signature
        return fingerprint()


def _zero(tests: list[Any], why: str = "not graded") -> dict[str, QuestionScore]:
    return {
        tf.name: QuestionScore(tf.name, 0.0, float(tf.possible), why,
                               hidden=not tf.all_public,
                               public_possible=float(sum(tc.points or 0 for tc in tf.test_cases
                                                         if not tc.hidden)),
                               public_output=why)
        for tf in tests
    }


def _prepare_workdir(base: Path, notebook: Path, ag: Autograder, uid: int | None) -> Path:
    work = base / "work"
    work.mkdir()
    shutil.copy(notebook, work / notebook.name)
    for item in ag.public_files():
        dest = work / item.relative_to(ag.files)  # chaffs/public/x.py stays chaffs/public/x.py
        dest.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if item.is_dir() else shutil.copy)(item, dest)
    if uid is not None:
        for root, dirs, files in os.walk(work):
            for name in [root, *(os.path.join(root, d) for d in dirs), *(os.path.join(root, f) for f in files)]:
                os.chown(name, uid, uid)
    os.chmod(work, 0o700)
    return work


GRADER_IMPORTS = ("otter.test_files.exception_test", "hypothesis", "reprokit.seeding",
                  "reprokit.plain", "reprokit.claims", "sklearn.datasets")


def warm_up() -> None:
    """Pay the grader's one-off costs now (its imports, the sandbox's warm template), so
    they are not counted in the first submission's time budget. Safe to call repeatedly;
    a failure here is left for :func:`grade` to report per submission."""
    import importlib

    for module in GRADER_IMPORTS:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    with contextlib.suppress(Exception):
        sandbox.template()


def limits(time_budget_s: float) -> tuple[float, float]:
    """The default CPU-second limits for an assignment whose notebook should take
    ``time_budget_s``: (the whole submission, each question). Four times the budget for
    the whole (at least 240 s), twice for each question (at least 60 s): room for a
    slower but honest solution, and a hang still ends."""
    return max(240.0, 4 * time_budget_s), max(60.0, 2 * time_budget_s)


#: the help text of ``--timeout`` in ``reprokit grade`` and ``reprokit regrade``
TIMEOUT_HELP = ("CPU-seconds the submission's processes may spend in all (default: 4x the "
                "assignment's time_budget_s, at least 240; each question 2x, at least 60). Wall "
                f"time is capped at {cputime.WALL_FACTOR:g}x as a safety net.")


def grade(
    submission: str | Path,
    autograder: str | Path,
    *,
    timeout_s: float | None = None,
    memory_mb: int = 4096,
    question_timeout_s: float | None = None,
) -> GradeResult:
    """Grade ``submission`` with ``autograder`` (a built zip or an extracted folder).

    ``timeout_s`` bounds the CPU-seconds of the whole submission and ``question_timeout_s``
    those of each test file (defaults: :func:`limits`); wall time is bounded at
    :data:`reprokit.cputime.WALL_FACTOR` times each. A question that hangs scores zero and
    the others are still graded. Never raises for a bad submission: its status says what
    went wrong and every question it could not earn scores zero. Raises
    :class:`AutograderError` when the autograder itself is unusable.
    """
    sandbox.template()  # start (once per process) before the submission's clock starts
    t0 = time.monotonic()
    base = Path(tempfile.mkdtemp(prefix="reprokit-grade-"))
    os.chmod(base, 0o711)  # the sandbox may pass through to its own work dir, not list it
    try:
        private = base / "private"
        private.mkdir(mode=0o700)
        ag = load_autograder(autograder, private)
        tests = _load_tests(ag)
        total_cpu, question_cpu = limits(ag.time_budget_s)
        if timeout_s is not None:
            total_cpu = timeout_s
        if question_timeout_s is not None:
            question_cpu = question_timeout_s
        wall_deadline = t0 + cputime.WALL_FACTOR * total_cpu

        isolation: dict[str, str] = {}
        zygote: sandbox.Zygote | None = None

        def finish(status: str, message: str, questions: dict[str, QuestionScore]) -> GradeResult:
            fp = _fingerprint(ag.seed)
            # the layers that were set up and verified, and why each other one is missing
            fp["isolation"] = [layer for layer, why in isolation.items() if not why]
            fp["isolation_missing"] = {layer: why for layer, why in isolation.items() if why}
            cpu = zygote.cpu_seconds() if zygote is not None else 0.0
            return GradeResult(
                status=status, questions=questions,
                score=float(sum(q.score for q in questions.values())),
                possible=float(sum(q.possible for q in questions.values())),
                duration_s=round(time.monotonic() - t0, 3), message=message,
                fingerprint=fp, cpu_s=round(cpu, 3),
            )

        try:
            cells, notebook = read_cells(Path(submission))
        except InvalidSubmission as e:
            return finish("invalid-notebook", str(e), _zero(tests))
        wrong = wrong_assignment(notebook, ag)
        if wrong:
            return finish("wrong-assignment", wrong, _zero(tests, "not graded: wrong assignment"))

        with sandbox.sandbox_uid() as uid:
            work = _prepare_workdir(base, notebook, ag, uid)
            limits_ = sandbox.Limits(memory_mb=memory_mb)
            zygote = sandbox.Zygote(work, cells, uid=uid, seed=ag.seed, limits=limits_)
            isolation.update(zygote.isolation)
            try:
                try:
                    report = zygote.execute(total_cpu, wall_deadline - time.monotonic())
                except sandbox.GradingTimeout as e:
                    return finish("timeout", f"{e}; every question scores zero", _zero(tests))
                except sandbox.ProtocolViolation as e:
                    return finish("error", f"{e} (did it call os._exit or crash?); every question "
                                  "scores zero", _zero(tests))
                if report.memory_error:
                    where = next((er["cell"] for er in report.errors if er["type"] == "MemoryError"), "?")
                    return finish("out-of-memory", f"code cell {where} ran out of memory (limit "
                                  f"{memory_mb} MB); every question scores zero", _zero(tests))
                questions, status, message = _run_tests(zygote, tests, ag, total_cpu, question_cpu,
                                                        wall_deadline)
                if zygote.violation is not None:
                    return finish("error", f"{zygote.violation}; the questions it had not earned "
                                  "by then score zero", questions)
                if report.errors and status == "graded":
                    first = report.errors[0]
                    message = (f"{len(report.errors)} cell(s) raised; first: code cell {first['cell']}"
                               f" {first['type']}: {first['message'][:200]}")
                return finish(status, message, questions)
            finally:
                zygote.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def _deterministic(seed: int | None):
    """Derandomized hypothesis, seeded RNGs and torch on :data:`sandbox.GRADED_THREADS`
    threads while the grader runs tests. A test that re-runs the authors' code then computes
    with the thread count the submission had in the sandbox, whatever the grading machine's
    core count: at high learning rates a different reduction order changes the trained
    weights, and the grade must not depend on the machine."""
    import torch
    from hypothesis import settings

    threads = torch.get_num_threads()
    torch.set_num_threads(sandbox.GRADED_THREADS)

    settings.register_profile("reprokit-grading-engine", derandomize=True, database=None,
                              deadline=None, print_blob=False)
    previous = getattr(settings, "_current_profile", None) or "default"
    settings.load_profile("reprokit-grading-engine")
    try:
        try:
            from reprokit.seeding import seeded
        except ImportError:  # pragma: no cover
            seeded = None
        with seeded(seed if seed is not None else 0) if seeded else contextlib.nullcontext():
            yield
    finally:
        settings.load_profile(previous)
        torch.set_num_threads(threads)


def _run_tests(zygote: sandbox.Zygote, tests: list[Any], ag: Autograder, total_cpu: float,
               question_cpu: float, wall_deadline: float
               ) -> tuple[dict[str, QuestionScore], str, str]:
    questions = _zero(tests)
    status, message = "graded", ""
    token = _MATERIAL.set(ag.files)
    try:
        for tf in tests:
            cpu_left = total_cpu - zygote.cpu_seconds()
            wall_left = wall_deadline - time.monotonic()
            if cpu_left <= 0 or wall_left <= 0:
                # Blowing the whole budget never keeps earlier credit.
                spent = (f"{total_cpu:.0f} CPU-seconds" if cpu_left <= 0 else
                         f"{cputime.WALL_FACTOR * total_cpu:.0f} s of wall time")
                return _zero(tests), "timeout", (
                    f"the submission's budget ({spent}) ran out before every question was "
                    "graded; every question scores zero")
            per_question = min(cpu_left, question_cpu)
            if zygote.dead:
                questions[tf.name].output = "not graded: the submission's process was lost"
                continue
            try:
                with zygote.session(per_question, min(wall_left, cputime.WALL_FACTOR * per_question)) \
                        as session, _deterministic(ag.seed):
                    env = sandbox.proxy_environment(session, _test_names(tf))
                    tf.run(env)
            except sandbox.GradingTimeout as e:
                tf.test_case_results = []
                questions[tf.name].output = f"not graded: {e}"
                continue
            except sandbox.ProtocolViolation as e:
                tf.test_case_results = []
                questions[tf.name].output = f"not graded: {e}"
                if zygote.violation is not None:
                    break
                continue
            if zygote.violation is not None:  # even where a test caught what the proxy raised
                questions[tf.name].output = f"not graded: {zygote.violation}"
                break
            if tf.test_case_results:
                questions[tf.name] = question_score(tf)
    finally:
        _MATERIAL.reset(token)
    return questions, status, message


# --------------------------------------------------------------------------- CLI


@click.command("grade")
@click.argument("submission", type=click.Path(exists=True, path_type=Path))
@click.option("--autograder", "-a", required=True, type=click.Path(exists=True, path_type=Path),
              help="A built autograder zip (or its extracted folder).")
@click.option("--output", "-o", type=click.Path(path_type=Path), default=None,
              help="Write the result as JSON here.")
@click.option("--timeout", "timeout_s", type=float, default=None, help=TIMEOUT_HELP)
@click.option("--memory-mb", type=int, default=4096, show_default=True, help="Memory cap.")
def grade_command(submission: Path, autograder: Path, output: Path | None,
                  timeout_s: float | None, memory_mb: int) -> None:
    """Grade one SUBMISSION securely and print a table of its questions."""
    from rich.console import Console
    from rich.table import Table

    result = grade(submission, autograder, timeout_s=timeout_s, memory_mb=memory_mb)
    table = Table(title=f"{submission.name}: {result.status}")
    for col in ("question", "score", "possible"):
        table.add_column(col)
    for q in result.questions.values():
        table.add_row(q.name, f"{q.score:g}", f"{q.possible:g}")
    table.add_row("total", f"{result.score:g}", f"{result.possible:g}", style="bold")
    console = Console()
    console.print(table)
    if result.message:
        console.print(result.message)
    if output is not None:
        tmp = output.with_suffix(".tmp")
        tmp.write_text(json.dumps(result.to_json(), indent=2))
        os.replace(tmp, output)

