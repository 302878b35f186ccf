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

from reprokit import sandbox

STATUSES = ("graded", "timeout", "out-of-memory", "error", "invalid-notebook")
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

    def to_gradescope(self, *, show_hidden: bool = False) -> dict:
        """Gradescope's ``results.json``."""
        visibility = "after_published" if show_hidden else "hidden"
        tests: list[dict[str, Any]] = []
        if self.status != "graded":
            tests.append({"name": f"Submission: {self.status}", "score": 0.0, "max_score": 0.0,
                          "visibility": "visible", "output": self.message})
        public = "\n".join(
            f"{q.name}: {q.output.split(chr(10))[0]}" for q in self.questions.values() if not q.hidden
        )
        tests.append({"name": "Public Tests", "visibility": "visible", "output": public,
                      "score": 0.0, "max_score": 0.0})
        for q in self.questions.values():
            tests.append({"name": q.name, "score": round(q.score, 5), "max_score": round(q.possible, 5),
                          "visibility": visibility, "output": q.output})
        if "isolation" in self.fingerprint:  # for instructors: what kept this submission in
            active = self.fingerprint["isolation"]
            missing = self.fingerprint.get("isolation_missing") or {}
            tests.append({"name": "Grading isolation", "score": 0.0, "max_score": 0.0,
                          "visibility": "hidden", "output": "\n".join(
                              [f"active: {', '.join(active) or 'none'}"]
                              + [f"missing {layer}: {why}" for layer, why in missing.items()])})
        return {"score": round(self.score, 5), "tests": tests,
                "output": f"reprokit: {self.status}. {self.message}".strip()}


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


def _zero(tests: list[Any]) -> dict[str, QuestionScore]:
    return {
        tf.name: QuestionScore(tf.name, 0.0, float(tf.possible), "not graded",
                               hidden=not tf.all_public)
        for tf in tests
    }


def _prepare_workdir(base: Path, notebook: Path, ag: Autograder, uid: int | None) -> Path:
    work = base / "work"
    work.mkdir()
    shutil.copy(notebook, work / notebook.name)
    for item in ag.public_files():
        dest = work / item.name
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


def grade(
    submission: str | Path,
    autograder: str | Path,
    *,
    timeout_s: float | None = None,
    memory_mb: int = 4096,
    question_timeout_s: float | None = None,
) -> GradeResult:
    """Grade ``submission`` with ``autograder`` (a built zip or an extracted folder).

    ``timeout_s`` bounds the whole submission (default: four times the assignment's
    budget, at least 240 s); ``question_timeout_s`` bounds each test file (default:
    twice the budget, at least 60 s): a question that hangs scores zero and the others are
    still graded. Never raises for a bad submission: its status says what went wrong and every
    question it could not earn scores zero. Raises :class:`AutograderError` when the
    autograder itself is unusable.
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
        budget = timeout_s if timeout_s is not None else max(240.0, 4 * ag.time_budget_s)
        deadline = t0 + budget

        isolation: dict[str, str] = {}

        def finish(status: str, message: str, questions: dict[str, QuestionScore]) -> GradeResult:
            fp = _fingerprint(ag.seed)
            # the layers that were set up and verified, and why each other one is missing
            fp["isolation"] = [layer for layer, why in isolation.items() if not why]
            fp["isolation_missing"] = {layer: why for layer, why in isolation.items() if why}
            return GradeResult(
                status=status, questions=questions,
                score=float(sum(q.score for q in questions.values())),
                possible=float(sum(q.possible for q in questions.values())),
                duration_s=round(time.monotonic() - t0, 3), message=message,
                fingerprint=fp,
            )

        try:
            cells, notebook = read_cells(Path(submission))
        except InvalidSubmission as e:
            return finish("invalid-notebook", str(e), _zero(tests))

        with sandbox.sandbox_uid() as uid:
            work = _prepare_workdir(base, notebook, ag, uid)
            limits = sandbox.Limits(memory_mb=memory_mb)
            zygote = sandbox.Zygote(work, cells, uid=uid, seed=ag.seed, limits=limits)
            isolation.update(zygote.isolation)
            try:
                try:
                    report = zygote.execute(deadline - time.monotonic())
                except sandbox.GradingTimeout as e:
                    return finish("timeout", f"{e}; every question scores zero", _zero(tests))
                except sandbox.ProtocolViolation as e:
                    return finish("error", f"{e} (did it call os._exit or crash?); every question "
                                  "scores zero", _zero(tests))
                if report.memory_error:
                    where = next((er["cell"] for er in report.errors if er["type"] == "MemoryError"), "?")
                    return finish("out-of-memory", f"code cell {where} ran out of memory (limit "
                                  f"{memory_mb} MB); every question scores zero", _zero(tests))
                questions, status, message = _run_tests(zygote, tests, ag, deadline,
                                                        question_timeout_s)
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
    """Derandomized hypothesis and seeded RNGs while the grader runs tests."""
    from hypothesis import settings

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


def _run_tests(zygote: sandbox.Zygote, tests: list[Any], ag: Autograder, deadline: float,
               question_timeout_s: float | None) -> tuple[dict[str, QuestionScore], str, str]:
    questions = _zero(tests)
    status, message = "graded", ""
    token = _MATERIAL.set(ag.files)
    try:
        for tf in tests:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                # Blowing the whole budget never keeps earlier credit.
                return _zero(tests), "timeout", (
                    "the time budget ran out before every question was graded; every question "
                    "scores zero")
            per_question = min(remaining, question_timeout_s or max(60.0, 2 * ag.time_budget_s))
            if zygote.dead:
                questions[tf.name].output = "not graded: the submission's process was lost"
                continue
            try:
                with zygote.session(per_question) as session, _deterministic(ag.seed):
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
                questions[tf.name] = QuestionScore(
                    tf.name, float(tf.score), float(tf.possible), tf.summary(),
                    hidden=not tf.all_public,
                )
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
@click.option("--timeout", "timeout_s", type=float, default=None,
              help="Seconds for the whole submission (default: 4x the assignment budget, >= 240).")
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

