"""``reprokit build``: Otter Assign per level, a Gradescope-ready zip, and the QA gate.

For each master notebook ``NN-<level>.ipynb`` of a paper folder, :func:`build`

1. checks the master (config YAML, every question has tests) and names the cell of any
   problem, before Otter sees it;
2. runs Otter Assign through its Python API with its own solution run disabled, after
   taking ``files`` / ``autograder_files`` out of the config (Otter 7 copies a nested
   folder such as ``chaffs/hidden`` under its last name only, so reprokit copies the
   material itself, keeping relative paths);
3. writes ``dist/<paper>/<level>/student/`` (notebook, public tests, public files),
   ``dist/<paper>/<level>/solutions/<level>.ipynb`` and
   ``dist/<paper>/<level>/<level>-autograder.zip``: Otter's tests and config, the material
   under ``files/``, a ``reprokit.json`` manifest, a reprokit wheel (built from the checkout,
   or from the installed package's own files), and the Gradescope environment
   (``setup.sh``, ``run_autograder``, per-Python locks) shipped with reprokit as package data
   (``reprokit/templates/autograder``). Entries are sorted and
   stamped 1980-01-01, so rebuilding unchanged sources gives the same bytes;
4. runs the QA gate with :func:`reprokit.grading.grade` on the built zip: the reference
   solution scores 100 % within the time budget (in CPU-seconds), the blank student notebook scores 10 %
   or less, and no hidden test text and no hidden material (chaffs, wheats) appears
   anywhere under ``student/``.

A malformed master stops the build with a :class:`BuildError` naming the notebook, the
cell index (0-based, as Jupyter's ``nbformat`` counts) and the question. QA failures do
not stop the other levels: they are collected in :class:`BuildResult` and the command
exits non-zero after printing the QA table.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from reprokit import cputime

LEVEL_NUMBERS = ("01", "02", "03", "04", "05", "06")
BLANK_MAX_FRACTION = 0.10
DEFAULT_TIME_BUDGET_S = 60.0
MAX_ZIP_BYTES = 20 * 1024 * 1024
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
#: Otter files that reprokit's environment replaces
OTTER_REPLACED = {"setup.sh", "environment.yml", "run_autograder", "run_otter.py", "requirements.txt",
                  "requirements.r"}
TEMPLATES = ("setup.sh", "run_autograder", "requirements.in", "locks/py3.10.txt", "locks/py3.11.txt",
             "locks/py3.12.txt")
_SKIP_PARTS = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".hypothesis"}
_MIN_NEEDLE = 25  # shortest line (stripped) the leak scan looks for


class BuildError(click.ClickException):
    """A master notebook or paper folder that cannot be built; says where and why."""

    def __init__(self, notebook: str | Path, cause: str, *, cell: int | None = None,
                 question: str | None = None, hint: str = "") -> None:
        self.notebook, self.cell, self.question, self.cause = str(notebook), cell, question, cause
        where = [Path(notebook).name]
        if cell is not None:
            where.append(f"cell {cell}")
        if question is not None:
            where.append(f"question {question!r}")
        message = f"{', '.join(where)}: {cause}"
        if hint:
            message += f"\n  try: {hint}"
        super().__init__(message)


# --------------------------------------------------------------------------- masters


@dataclass
class Question:
    """One ``# BEGIN QUESTION`` block of a master notebook."""

    name: str
    cell: int
    manual: bool = False
    tests: int = 0
    hidden_tests: list[str] = field(default_factory=list)  # source of each hidden test cell
    public_tests: list[str] = field(default_factory=list)


@dataclass
class Master:
    """What reprokit needs to know about one master notebook."""

    path: Path
    level: str
    config: dict
    config_cell: int | None
    questions: list[Question]
    #: (master cell index, question name or None) of each code cell a student notebook keeps
    code_cells: list[tuple[int, str | None, str]]

    @property
    def public_files(self) -> list[str]:
        return [str(f) for f in self.config.get("files") or []]

    @property
    def hidden_files(self) -> list[str]:
        return [str(f) for f in self.config.get("autograder_files") or []]

    @property
    def seed(self) -> int | None:
        seed = (self.config.get("generate") or {}).get("seed")
        return seed if isinstance(seed, int) else None


def _first_line(source: str) -> str:
    return source.lstrip("\n").split("\n", 1)[0]


def _is_block(cell: Any, kind: str, begin: bool = True) -> bool:
    if cell.get("cell_type") != "raw":
        return False
    word = "begin" if begin else "end"
    return bool(re.match(rf"#\s+{word}\s+{kind}\s*", _first_line(cell.source), flags=re.IGNORECASE))


def _is_config(cell: Any) -> bool:
    return cell.get("cell_type") == "raw" and bool(
        re.match(r"#\s+assignment\s+config\s*", _first_line(cell.source), flags=re.IGNORECASE))


def _is_ignored(cell: Any) -> bool:
    return bool(re.match(r"(##\s*ignore\s*##\s*|#\s*ignore\s*)", _first_line(cell.source),
                         flags=re.IGNORECASE))


def _yaml(source: str, notebook: Path, cell: int, question: str | None, what: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(source)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).split("\n")[0]
        raise BuildError(notebook, f"the {what} is not valid YAML{at}: {problem}", cell=cell,
                         question=question,
                         hint="check the indentation and that every 'key: value' has a space "
                              "after the colon") from None


_TEST_CONFIG = re.compile(r'^\s*"""\s*#\s*BEGIN TEST CONFIG\s*\n(.*?)"""\s*#\s*END TEST CONFIG',
                          re.DOTALL | re.IGNORECASE)


def read_master(path: str | Path) -> Master:
    """Parse and check one master notebook; raises :class:`BuildError` naming the cell."""
    import nbformat

    path = Path(path)
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as e:  # noqa: BLE001 - nbformat raises several kinds
        raise BuildError(path, f"not a readable notebook: {str(e)[:300]}",
                         hint="open it in Jupyter and save it again") from None
    config: dict | None = None
    config_cell = None
    questions: list[Question] = []
    code_cells: list[tuple[int, str | None, str]] = []
    question: Question | None = None
    in_tests = False
    for i, cell in enumerate(nb.cells):
        if _is_ignored(cell):
            continue
        qname = question.name if question else None
        if _is_config(cell):
            parsed = _yaml(cell.source, path, i, None, "assignment config")
            if parsed is not None and not isinstance(parsed, dict):
                raise BuildError(path, f"the assignment config is a {type(parsed).__name__}, expected "
                                 "'key: value' lines", cell=i)
            config, config_cell = dict(parsed or {}), i
        elif _is_block(cell, "question"):
            parsed = _yaml(cell.source, path, i, None, "question config")
            if not isinstance(parsed, dict) or not parsed.get("name"):
                raise BuildError(path, "the question config has no 'name'", cell=i,
                                 hint="start the cell with '# BEGIN QUESTION' then 'name: q1'")
            question = Question(str(parsed["name"]), i, manual=bool(parsed.get("manual")))
            questions.append(question)
        elif _is_block(cell, "question", begin=False):
            if question is not None and not question.manual and question.tests == 0:
                raise BuildError(path, "the question has no tests", cell=question.cell,
                                 question=question.name,
                                 hint="add a '# BEGIN TESTS' ... '# END TESTS' block with at least "
                                      "one public test (students' otter check needs one)")
            question = None
        elif _is_block(cell, "tests"):
            in_tests = True
        elif _is_block(cell, "tests", begin=False):
            in_tests = False
        elif cell.get("cell_type") == "code" and in_tests:
            hidden = False
            m = _TEST_CONFIG.match(cell.source)
            if m:
                test_config = _yaml(m.group(1), path, i, qname, "test config")
                hidden = isinstance(test_config, dict) and bool(test_config.get("hidden"))
            if question is not None:
                question.tests += 1
                (question.hidden_tests if hidden else question.public_tests).append(cell.source)
        elif cell.get("cell_type") == "code":
            code_cells.append((i, qname, cell.source))
    if question is not None:
        raise BuildError(path, "the question is never closed", cell=question.cell,
                         question=question.name, hint="add a raw cell '# END QUESTION'")
    if config is None:
        raise BuildError(path, "no '# ASSIGNMENT CONFIG' raw cell",
                         hint="add a raw cell starting '# ASSIGNMENT CONFIG' (see docs/architecture.md)")
    for key in ("files", "autograder_files"):
        value = config.get(key)
        if value is not None and not isinstance(value, list):
            raise BuildError(path, f"'{key}' must be a list of paths, got {value!r}", cell=config_cell)
        for rel in value or []:
            target = (path.parent / str(rel)).resolve()
            if not target.exists() or path.parent.resolve() not in target.parents:
                raise BuildError(path, f"'{key}' lists {rel!r}, which is not a file or folder inside "
                                 f"{path.parent}", cell=config_cell)
    return Master(path, path.stem, config, config_cell, questions, code_cells)


def find_masters(paper_dir: str | Path, levels: Iterable[str] | None = None) -> list[Path]:
    """The master notebooks of a paper folder, one per level, in order.

    ``levels`` picks some (``"01"`` or ``"01-rerun"``); without it every level 01..06 must
    exist (extra numbered levels are built too) and a missing one raises :class:`BuildError`.
    """
    paper_dir = Path(paper_dir)
    if not paper_dir.is_dir():
        raise BuildError(paper_dir, "no such paper folder", hint="reprokit build assignments/<paper>")
    by_number: dict[str, list[Path]] = {}
    for nb in sorted(paper_dir.glob("[0-9][0-9]-*.ipynb")):
        by_number.setdefault(nb.name[:2], []).append(nb)
    for number, nbs in by_number.items():
        if len(nbs) > 1:
            raise BuildError(paper_dir, f"level {number} has {len(nbs)} masters: "
                             f"{', '.join(n.name for n in nbs)}; keep one")
    if levels:
        picked = []
        for want in levels:
            number = want[:2]
            if number not in by_number or (len(want) > 2 and by_number[number][0].stem != want):
                raise BuildError(paper_dir, f"no master notebook for level {want!r} "
                                 f"(found: {', '.join(sorted(n[0].name for n in by_number.values())) or 'none'})")
            picked.append(by_number[number][0])
        return picked
    missing = [n for n in LEVEL_NUMBERS if n not in by_number]
    if missing:
        raise BuildError(paper_dir, f"level(s) {', '.join(missing)} missing: expected a master "
                         f"notebook named {missing[0]}-<level>.ipynb",
                         hint="write the missing masters, or build some levels with --level "
                              + " --level ".join(sorted(by_number)))
    return [by_number[n][0] for n in sorted(by_number)]  # 01..06 and any extra levels


def read_paper_settings(paper_dir: Path) -> dict:
    """``paper`` id and ``time_budget_s`` from ``paper.yaml`` (defaults when absent)."""
    import yaml

    settings = {"paper": paper_dir.resolve().name, "time_budget_s": DEFAULT_TIME_BUDGET_S}
    path = paper_dir / "paper.yaml"
    if not path.exists():
        return settings
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise BuildError(path, f"not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise BuildError(path, "expected a mapping at the top level")
    budget = data.get("time_budget_s")
    if budget is not None:
        if isinstance(budget, bool) or not isinstance(budget, int | float) or budget <= 0:
            raise BuildError(path, f"time_budget_s must be a positive number of seconds, got {budget!r}")
        settings["time_budget_s"] = float(budget)
    paper = data.get("paper")
    if isinstance(paper, dict) and paper.get("id"):
        settings["paper"] = str(paper["id"])
    return settings


# --------------------------------------------------------------------------- wheel and zip


def repository_root() -> Path | None:
    """The source checkout reprokit runs from (holding ``pyproject.toml``), if any."""
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "pyproject.toml").exists() and (parent / "src" / "reprokit").is_dir():
            return parent
    return None


def build_wheel(into: Path, source: Path | None = None) -> Path:
    """The reprokit wheel to ship, written into ``into``: ``pip wheel --no-deps`` of the
    checkout reprokit runs from, or (installed from a wheel, no checkout) a wheel of the
    installed package's own files, so an installed kit builds courses too."""
    source = source or repository_root()
    if source is None:
        return wheel_from_installed(into)
    into.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "SOURCE_DATE_EPOCH": "315532800"}  # reproducible wheel timestamps
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "-q", "-w", str(into), str(source)], capture_output=True, text=True, env=env)
    wheels = sorted(into.glob("reprokit-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise BuildError("reprokit", f"pip wheel failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}",
                         hint="python -m pip wheel --no-deps --no-build-isolation . (in the checkout)")
    return wheels[-1]


_WHEEL_FILE = "Wheel-Version: 1.0\nGenerator: reprokit.build\nRoot-Is-Purelib: true\nTag: py3-none-any\n"


def wheel_from_installed(into: Path) -> Path:
    """A ``py3-none-any`` wheel of the installed reprokit: the package's files as installed
    (no ``__pycache__``), its ``METADATA`` and entry points, a fresh ``RECORD``. Byte-for-byte
    reproducible (fixed timestamps, sorted entries)."""
    import base64
    import hashlib
    from importlib.metadata import PackageNotFoundError, distribution

    package = Path(__file__).resolve().parent
    try:
        dist = distribution("reprokit")
        metadata = dist.read_text("METADATA") or dist.read_text("PKG-INFO")  # wheel or egg-info
    except PackageNotFoundError:
        metadata = None
    if not metadata:
        raise BuildError("reprokit", "reprokit runs neither from a source checkout nor from an "
                         "installed distribution, so there is no wheel to ship",
                         hint="pip install reprokit, or pass --wheel path/to/reprokit-*.whl")
    version = dist.version
    info = f"reprokit-{version}.dist-info"
    entries = {f"reprokit/{p.relative_to(package).as_posix()}": p.read_bytes()
               for p in _walk(package)}
    entries[f"{info}/METADATA"] = metadata.encode()
    entries[f"{info}/WHEEL"] = _WHEEL_FILE.encode()
    for name in ("entry_points.txt", "top_level.txt"):
        text = dist.read_text(name)
        if text:
            entries[f"{info}/{name}"] = text.encode()

    def digest(data: bytes) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    record = "".join(f"{name},sha256={digest(data)},{len(data)}\n" for name, data in sorted(entries.items()))
    entries[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    into.mkdir(parents=True, exist_ok=True)
    path = into / f"reprokit-{version}-py3-none-any.whl"
    write_zip(path, entries)
    return path


def template_dir() -> Path:
    """The Gradescope templates (``setup.sh``, ``run_autograder``, ``locks/``): package data."""
    path = Path(__file__).resolve().parent / "templates" / "autograder"
    missing = [name for name in TEMPLATES if not (path / name).is_file()]
    if missing:
        raise BuildError("reprokit", f"the installed reprokit lacks its Gradescope templates "
                         f"({', '.join(missing)} under {path})",
                         hint="reinstall reprokit; from a checkout: pip install -e .")
    return path


def _walk(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and not _SKIP_PARTS & set(p.parts)
                  and p.suffix != ".pyc")


def write_zip(path: Path, entries: dict[str, bytes]) -> int:
    """Write ``entries`` sorted, with fixed timestamps and modes; returns the size in bytes."""
    tmp = path.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            executable = name in ("setup.sh", "run_autograder")
            info.external_attr = ((0o100755 if executable else 0o100644) & 0xFFFF) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, entries[name])
    os.replace(tmp, path)
    return path.stat().st_size


def _reprokit_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("reprokit")
    except PackageNotFoundError:  # pragma: no cover
        return "0+unknown"


# --------------------------------------------------------------------------- one level


@dataclass
class LevelBuild:
    """The files one level's build produced."""

    level: str
    master: Master
    student: Path
    solution: Path
    zipfile: Path
    zip_bytes: int
    manifest: dict


def _run_otter_assign(master: Master, staging: Path) -> Path:
    """Otter Assign on a copy of ``master`` without ``files``; returns Otter's output folder."""
    import nbformat
    from otter.assign import main as assign_main

    paper = staging / "paper"
    paper.mkdir()
    for entry in master.path.parent.iterdir():
        if entry.suffix != ".ipynb":
            (paper / entry.name).symlink_to(entry.resolve())
    nb = nbformat.read(master.path, as_version=4)
    if master.config_cell is not None:
        config = {k: v for k, v in master.config.items() if k not in ("files", "autograder_files")}
        import yaml

        nb.cells[master.config_cell].source = "# ASSIGNMENT CONFIG\n" + yaml.safe_dump(
            config, sort_keys=False)
    copy = paper / master.path.name
    nbformat.write(nb, copy)
    out = staging / "out"
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            assign_main(str(copy), str(out), no_run_tests=True, no_pdfs=True)
    except Exception as e:  # noqa: BLE001 - Otter raises many kinds; say which cell if it does
        raise BuildError(master.path, f"otter assign failed: {type(e).__name__}: {e}"
                         + (f"\n{log.getvalue()[-1500:]}" if log.getvalue().strip() else "")) from None
    return out


def assemble_level(master: Master, out_dir: Path, wheel: Path, settings: dict) -> LevelBuild:
    """Run Otter Assign for one master and write ``student/``, ``solutions/`` and the zip."""
    level = master.level
    level_dir = out_dir / level
    if level_dir.exists():
        shutil.rmtree(level_dir)
    level_dir.mkdir(parents=True)
    paper_dir = master.path.parent
    with tempfile.TemporaryDirectory(prefix="reprokit-build-") as tmp:
        otter_out = _run_otter_assign(master, Path(tmp))
        student = level_dir / "student"
        shutil.copytree(otter_out / "student", student)
        for rel in master.public_files:
            for src in _walk(paper_dir / rel):
                dest = student / src.relative_to(paper_dir)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest)
        solutions = level_dir / "solutions"
        solutions.mkdir()
        shutil.copy2(otter_out / "autograder" / f"{level}.ipynb", solutions / f"{level}.ipynb")
        zips = sorted((otter_out / "autograder").glob("*-autograder_*.zip"))
        if not zips:
            raise BuildError(master.path, "otter assign wrote no autograder zip")
        entries: dict[str, bytes] = {}
        with zipfile.ZipFile(zips[-1]) as zf:
            for name in zf.namelist():
                if name.endswith("/") or name.startswith("files/"):
                    continue
                if name == "requirements.txt":
                    extra = zf.read(name)
                    if extra.strip():
                        entries["requirements-assignment.txt"] = extra
                if name in OTTER_REPLACED:
                    continue
                entries[name] = zf.read(name)
    for rel in master.public_files + master.hidden_files:
        for src in _walk(paper_dir / rel):
            entries["files/" + src.relative_to(paper_dir).as_posix()] = src.read_bytes()
    templates = template_dir()
    for name in TEMPLATES:
        entries[name] = (templates / name).read_bytes()
    entries[wheel.name] = wheel.read_bytes()
    manifest = {
        "paper": settings["paper"], "level": level, "notebook": f"{level}.ipynb",
        "assignment_name": str(master.config["name"]) if master.config.get("name") else None,
        "public_files": master.public_files, "hidden_files": master.hidden_files,
        "time_budget_s": settings["time_budget_s"], "seed": master.seed,
        "reprokit_version": _reprokit_version(),
    }
    entries["reprokit.json"] = (json.dumps(manifest, indent=2) + "\n").encode()
    zip_path = level_dir / f"{level}-autograder.zip"
    size = write_zip(zip_path, entries)
    return LevelBuild(level, master, student / f"{level}.ipynb", solutions / f"{level}.ipynb",
                      zip_path, size, manifest)


# --------------------------------------------------------------------------- QA gate


@dataclass
class LevelReport:
    """The QA gate's verdict on one level."""

    level: str
    questions: int
    reference_score: float = 0.0
    possible: float = 0.0
    blank_score: float = 0.0
    reference_time_s: float = 0.0  # wall-clock seconds, for information
    reference_cpu_s: float = 0.0  # CPU-seconds of the reference's processes: what the budget counts
    time_budget_s: float = DEFAULT_TIME_BUDGET_S
    zip_bytes: int = 0
    problems: list[str] = field(default_factory=list)
    qa: bool = True
    mutation: Any = None  # a reprokit.mutation.LevelMutationReport when the mutation gate ran

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def verdict(self) -> str:
        if self.problems:
            return "FAIL"
        return "ok" if self.qa else "built (no QA)"


def _notebook_text(path: Path) -> str:
    """Every cell source and text output of a notebook, or the file's text."""
    raw = path.read_bytes().decode("utf-8", errors="replace")
    if path.suffix != ".ipynb":
        return raw
    try:
        nb = json.loads(raw)
    except ValueError:
        return raw
    parts = []
    for cell in nb.get("cells", []):
        src = cell.get("source", "")
        parts.append(src if isinstance(src, str) else "".join(src))
        for out in cell.get("outputs", []) or []:
            text = out.get("text") or (out.get("data") or {}).get("text/plain") or ""
            parts.append(text if isinstance(text, str) else "".join(text))
    return raw + "\n" + "\n".join(parts)


def _distinctive_lines(text: str, public: set[str]) -> list[str]:
    lines = []
    for line in text.splitlines():
        s = line.strip()
        if len(s) < _MIN_NEEDLE or s in public or s.startswith(("import ", "from ", "#", "@")):
            continue
        lines.append(s)
    return lines


def _hidden_tests(zip_path: Path, master: Master) -> tuple[list[tuple[str, list[str]]], set[str]]:
    """Each hidden test (Otter's and the master's form) as (name, distinctive lines), and the
    lines of public tests (public anyway)."""
    hidden_src, public_src = [], []
    for q in master.questions:
        hidden_src += q.hidden_tests
        public_src += q.public_tests
    with zipfile.ZipFile(zip_path) as zf:
        for name in zf.namelist():
            if not (name.startswith("tests/") and name.endswith(".py")):
                continue
            source = zf.read(name).decode("utf-8", errors="replace")
            try:
                tree = ast.parse(source)
            except SyntaxError:
                continue
            for node in tree.body:
                if not isinstance(node, ast.FunctionDef):
                    continue
                text = ast.get_source_segment(source, node) or ""
                hidden = any(isinstance(d, ast.Call) and any(
                    k.arg == "hidden" and isinstance(k.value, ast.Constant) and k.value.value
                    for k in d.keywords) for d in node.decorator_list)
                (hidden_src if hidden else public_src).append(text)
    public = {line.strip() for src in public_src for line in src.splitlines()}
    tests = []
    for src in hidden_src:
        m = re.search(r"def\s+(\w+)\s*\(", src)
        tests.append((m.group(1) if m else "?", _distinctive_lines(_TEST_CONFIG.sub("", src), public)))
    return tests, public


def _docstring_line(source: str) -> str:
    with contextlib.suppress(SyntaxError, ValueError):
        doc = ast.get_docstring(ast.parse(source))
        if doc:
            return doc.strip().splitlines()[0].strip()
    return ""


def _found(lines: list[str], text: str, at_least: int) -> list[str]:
    hits = [line for line in dict.fromkeys(lines) if line in text]
    return hits if lines and len(hits) >= min(at_least, len(set(lines))) else []


def scan_for_leaks(build: LevelBuild, paper_dir: Path) -> list[str]:
    """Problems where hidden tests or hidden material show anywhere under ``student/``.

    A hidden test leaks when its function name (``def test_x(``) or two of its distinctive
    lines (25+ characters, not imports, not in a public test) appear in one student file.
    A hidden file (wheat, chaff, data) leaks when it is copied there, when its whole text,
    its docstring's first line, or three of its distinctive lines (not in any public file:
    wheats and chaffs share the authors' lines) appear in one student file.
    """
    student_dir = build.student.parent
    texts = {f.relative_to(student_dir).as_posix(): _notebook_text(f) for f in _walk(student_dir)}
    problems = []
    hidden_tests, public = _hidden_tests(build.zipfile, build.master)
    for rel in build.master.public_files:  # the public material as shipped
        for src in _walk(student_dir / rel):
            public |= {line.strip() for line in src.read_text(errors="replace").splitlines()}
    for test_name, lines in hidden_tests:
        for name, text in texts.items():
            hits = ([f"def {test_name}("] if f"def {test_name}(" in text else []) or _found(lines, text, 2)
            if hits:
                problems.append(f"hidden test {test_name} shows in student/{name}: {_clip(hits[0])!r}")
    for rel in build.master.hidden_files:
        for src in _walk(paper_dir / rel):
            relpath = src.relative_to(paper_dir).as_posix()
            if relpath in texts:
                problems.append(f"hidden file {relpath} was copied to student/{relpath}")
                continue
            content = src.read_text(errors="replace")
            whole = content.strip()
            doc = _docstring_line(content)
            lines = _distinctive_lines(content, public)
            for name, text in texts.items():
                hits = ([whole] if len(whole) >= _MIN_NEEDLE and whole in text else []) or (
                    [doc] if len(doc) >= _MIN_NEEDLE and doc not in public and doc in text else []
                ) or _found(lines, text, 3)
                if hits:
                    problems.append(f"hidden material {relpath} leaks into student/{name}: "
                                    f"{_clip(hits[0])!r}")
    return problems


def _clip(text: str, width: int = 80) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


_CELL_ERROR = re.compile(r"code cell (\d+) (\w+): (.*)", re.DOTALL)


def _normalise(source: str) -> str:
    lines = [re.sub(r"\s*#\s*SOLUTION\s*$", "", line) for line in source.splitlines()
             if not re.match(r"\s*#\s*(BEGIN|END)\s+SOLUTION", line, re.IGNORECASE)
             and not line.rstrip().endswith("# SEED")]
    return "\n".join(line.rstrip() for line in lines).strip()


def locate_code_cell(master: Master, notebook: Path, index: int) -> tuple[int | None, str | None, str]:
    """Map the ``index``-th graded code cell of a built notebook to the master's cell and question."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    graded = [c for c in nb.cells if c.cell_type == "code"
              and "otter_ignore" not in c.metadata.get("tags", [])
              and not c.metadata.get("otter", {}).get("ignore")]
    if index >= len(graded):
        return None, None, ""
    wanted = _normalise(graded[index].source)
    for cell, question, source in master.code_cells:
        if _normalise(source) == wanted:
            return cell, question, source
    return None, None, graded[index].source


def qa_level(build: LevelBuild, paper_dir: Path) -> LevelReport:
    """Grade the reference and the blank notebook on the built zip; scan for leaks."""
    from reprokit.grading import grade

    budget = float(build.manifest["time_budget_s"])
    report = LevelReport(build.level, len(build.master.questions), time_budget_s=budget,
                         zip_bytes=build.zip_bytes)
    level = build.level
    ref = grade(build.solution, build.zipfile)
    report.reference_score, report.possible = ref.score, ref.possible
    report.reference_time_s, report.reference_cpu_s = ref.duration_s, ref.cpu_s
    m = _CELL_ERROR.search(ref.message or "")
    if m:
        cell, question, _ = locate_code_cell(build.master, build.solution, int(m.group(1)))
        raise BuildError(build.master.path, f"the reference solution raises {m.group(2)}: "
                         f"{m.group(3).strip()[:300]}", cell=cell, question=question,
                         hint="run the master notebook top to bottom in Jupyter and fix that cell")
    if ref.status != "graded":
        report.problems.append(f"{level}: the reference solution was not graded ({ref.status}): "
                               f"{ref.message}" + cputime.busy_note(ref.cpu_s, ref.duration_s))
    for q in ref.questions.values():
        if q.score < q.possible - 1e-9:
            first = (q.output or "").strip().splitlines()
            why = " | ".join(first[:3])[:400] if first else "no output"
            report.problems.append(f"{level}, question {q.name}: the reference solution scores "
                                   f"{q.score:g}/{q.possible:g} (expected full marks): {why}")
    if ref.possible <= 0:
        report.problems.append(f"{level}: the autograder has no points to earn")
    if ref.status == "graded" and ref.cpu_s > budget:
        report.problems.append(f"{level}: the reference used {ref.cpu_s:.1f} CPU-seconds "
                               f"({ref.duration_s:.1f} s wall), over the time budget of {budget:g} "
                               "CPU-seconds (paper.yaml time_budget_s)"
                               + cputime.busy_note(ref.cpu_s, ref.duration_s))

    blank = grade(build.student, build.zipfile)
    report.blank_score = blank.score
    if ref.possible > 0 and blank.score > BLANK_MAX_FRACTION * ref.possible + 1e-9:
        earners = ", ".join(f"{q.name} ({q.score:g}/{q.possible:g})"
                            for q in blank.questions.values() if q.score > 0)
        report.problems.append(f"{level}: the blank student notebook scores {blank.score:g}/"
                               f"{ref.possible:g} (> {BLANK_MAX_FRACTION:.0%}); points from {earners}: "
                               "make those tests fail on '...'")
    report.problems += [f"{level}: {p}" for p in scan_for_leaks(build, paper_dir)]
    if build.zip_bytes > MAX_ZIP_BYTES:
        report.problems.append(f"{level}: the autograder zip is {build.zip_bytes / 1e6:.1f} MB, over "
                               f"{MAX_ZIP_BYTES / 2**20:.0f} MB: ship smaller weights or data")
    return report


# --------------------------------------------------------------------------- build


@dataclass
class BuildResult:
    """Everything one ``reprokit build`` produced and found."""

    paper: str
    out_dir: Path
    levels: list[LevelBuild]
    reports: list[LevelReport]
    duration_s: float

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.reports)

    @property
    def problems(self) -> list[str]:
        return [p for r in self.reports for p in r.problems]


def build(
    paper_dir: str | Path,
    out: str | Path = "dist",
    *,
    levels: Iterable[str] | None = None,
    qa: bool = True,
    mutation: bool = True,
    wheel: str | Path | None = None,
    solutions_dir: str | Path | None = None,
    on_step: Callable[[str, str], None] | None = None,
) -> BuildResult:
    """Build every level of ``paper_dir`` into ``out/<paper>/<level>/`` and run the QA gate.

    Raises :class:`BuildError` for a malformed paper or master (naming notebook, cell and
    question); QA failures are returned in :attr:`BuildResult.problems`. ``on_step(level,
    step)`` is called as work advances (the CLI drives its progress bar with it).
    """
    t0 = time.monotonic()
    paper_dir = Path(paper_dir)
    step = on_step or (lambda level, what: None)
    masters = [read_master(p) for p in find_masters(paper_dir, list(levels) if levels else None)]
    settings = read_paper_settings(paper_dir)
    for master in masters:
        generate = master.config.get("generate") or {}
        if isinstance(generate, dict) and (generate.get("pdf") or generate.get("token")):
            step(master.level, "warning: reprokit's autograder does not generate PDFs")
    out_dir = Path(out) / paper_dir.resolve().name
    out_dir.mkdir(parents=True, exist_ok=True)
    builds, reports = [], []
    with tempfile.TemporaryDirectory(prefix="reprokit-wheel-") as tmp:
        step("", "building the reprokit wheel")
        wheel_path = Path(wheel) if wheel else build_wheel(Path(tmp))
        if qa:
            step("", "starting the grading engine")
            from reprokit.grading import warm_up

            warm_up()  # the first level's reference time is its own
        for master in masters:
            step(master.level, "otter assign")
            lb = assemble_level(master, out_dir, wheel_path, settings)
            builds.append(lb)
            if solutions_dir is not None:
                dest = Path(solutions_dir)
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copy2(lb.solution, dest / lb.solution.name)
            if qa:
                step(master.level, "QA: grading reference and blank")
                reports.append(qa_level(lb, paper_dir))
                if mutation:  # mutants of the reference must lose points (reprokit.mutation)
                    from reprokit.mutation import gate_build

                    step(master.level, "QA: grading mutants of the reference")
                    reports[-1].mutation = gate_build(lb, paper_dir, reports[-1])
                    reports[-1].problems += reports[-1].mutation.problems
            else:
                reports.append(LevelReport(lb.level, len(master.questions), zip_bytes=lb.zip_bytes,
                                           time_budget_s=settings["time_budget_s"], qa=False))
            step(master.level, "done")
    return BuildResult(settings["paper"], out_dir, builds, reports, round(time.monotonic() - t0, 2))


def qa_table(result: BuildResult) -> Any:
    """A rich table: level, questions, reference score, blank score, time, zip size, verdict."""
    from rich.table import Table

    table = Table(title=f"reprokit build {result.paper}: QA ({result.duration_s:.1f} s)",
                  caption="qs: questions; reference/blank: score of the reference solution and of "
                          "the blank notebook; cpu: the reference's CPU-seconds / budget; wall: its wall time")
    for col in ("level", "qs", "reference", "blank", "cpu", "wall", "zip", "verdict"):
        table.add_column(col, justify="left" if col in ("level", "verdict") else "right",
                         no_wrap=True)
    for r in result.reports:
        style = "red" if not r.ok else ("green" if r.qa else "yellow")
        if r.qa:
            ref = f"{r.reference_score:g}/{r.possible:g}"
            blank = f"{r.blank_score:g}/{r.possible:g}"
            secs = f"{r.reference_cpu_s:.1f}/{r.time_budget_s:g} s"
            wall = f"{r.reference_time_s:.1f} s"
        else:
            ref = blank = secs = wall = "-"
        table.add_row(r.level, str(r.questions), ref, blank, secs, wall, f"{r.zip_bytes / 1024:.0f} KiB",
                      f"[{style}]{r.verdict}[/{style}]")
    return table


@click.command("build")
@click.argument("paper_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("dist"),
              show_default=True, help="Output folder; each level goes to OUT/<paper>/<level>/.")
@click.option("--level", "levels", multiple=True,
              help="Build only this level (01 or 01-rerun); repeatable. Default: all of 01..06.")
@click.option("--no-qa", is_flag=True, help="Skip the QA gate (grading reference and blank notebooks).")
@click.option("--wheel", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Ship this reprokit wheel instead of building one from the checkout.")
@click.option("--no-mutation", "--skip-mutation", "no_mutation", is_flag=True,
              help="Skip the mutation gate (grading mutants of the reference; see docs/mutation.md).")
@click.option("--solutions-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Also copy each level's reference solution notebook here.")
def build_command(paper_dir: Path, out: Path, levels: tuple[str, ...], no_qa: bool,
                  wheel: Path | None, solutions_dir: Path | None, no_mutation: bool = False) -> None:
    """Build student notebooks and Gradescope autograder zips for PAPER_DIR, then QA them."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    try:
        n = len(find_masters(paper_dir, list(levels) or None))
    except BuildError as e:
        raise click.ClickException(e.message) from None
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("reprokit build", total=n)

        def on_step(level: str, what: str) -> None:
            if what.startswith("warning"):
                progress.console.print(f"[yellow]{level}: {what}[/yellow]")
            elif what == "done":
                progress.advance(task)
            progress.update(task, description=f"{level or 'reprokit'}: {what}")

        result = build(paper_dir, out, levels=list(levels) or None, qa=not no_qa, wheel=wheel,
                       mutation=not no_mutation,
                       solutions_dir=solutions_dir, on_step=on_step)
    out_console = Console()
    out_console.print(qa_table(result))
    gated = [r.mutation for r in result.reports if r.mutation is not None]
    if gated:  # the mutation gate: kill rate per question, then each survivor as a diff
        from reprokit.mutation import chaff_table, mutation_table

        out_console.print(mutation_table(gated))
        chaffs = chaff_table(gated)
        if chaffs is not None:
            out_console.print(chaffs)
        for line in (line for m in gated for line in m.lines(survivors_only=True)):
            out_console.print(line, soft_wrap=True, markup=False, highlight=False)
    for lb in result.levels:
        out_console.print(f"{lb.zipfile}  {lb.zip_bytes / 1024:.0f} KiB", soft_wrap=True)
    if not result.ok:
        for problem in result.problems:
            console.print(f"[red]QA failed[/red] {problem}")
        raise click.exceptions.Exit(1)
