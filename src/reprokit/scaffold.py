"""``reprokit new PAPER_DIR``: a new paper folder with one worked example per level.

The folder has the shape of every paper in ``assignments/`` (``paper.yaml``, ``authors/``,
``weights/``, ``wheats/``, ``chaffs/public`` and ``chaffs/hidden``, a README, six master
notebooks ``01-rerun`` .. ``06-mechanism``). Its worked example is a small "paper": a
one-hidden-layer MLP on scikit-learn's 8x8 digits, with two claims. Each master notebook
asks one graded question in the project's conventions (public and hidden tests, SOLUTION
markers, values read through :mod:`reprokit.plain`, shipped material through
:func:`reprokit.grading.material_module`, the helpers of :mod:`reprokit.questions`), and
level 6 adds a question graded by hand.

The folder builds behind the full gate as soon as it is made::

    reprokit new my-paper --title "My paper"
    reprokit build my-paper -o dist          # QA gate and mutation gate: green

The instructor then replaces the example, level by level (``docs/authoring.md``).

The templates are package data (``reprokit/templates/paper``). Text files get two
substitutions: ``{{PAPER_ID}}`` and ``{{PAPER_TITLE}}`` (``{{PAPER_TITLE_YAML}}`` in
``paper.yaml``: the title as a quoted YAML string). Nothing else is generated: what is
written is what a person would edit.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import click

__all__ = ["ScaffoldError", "new_paper", "new_command", "template_root"]

#: what a paper id may look like (as ``reprokit.claims`` checks it)
PAPER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
_TEXT = {".py", ".md", ".yaml", ".ipynb", ".json", ".txt"}
_SKIP = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache", ".hypothesis"}


class ScaffoldError(click.ClickException):
    """A paper folder that cannot be scaffolded; says why."""


def template_root() -> Path:
    """The worked-example paper shipped with reprokit (package data)."""
    root = Path(__file__).resolve().parent / "templates" / "paper"
    if not (root / "paper.yaml").is_file():
        raise ScaffoldError(f"the installed reprokit lacks its paper template ({root}); reinstall reprokit")
    return root


def _substitute(text: str, paper_id: str, title: str) -> str:
    return (text.replace("{{PAPER_TITLE_YAML}}", json.dumps(title))
                .replace("{{PAPER_ID}}", paper_id).replace("{{PAPER_TITLE}}", title))


def _write_notebook(source: Path, dest: Path, paper_id: str, title: str) -> None:
    nb = json.loads(source.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        cell["source"] = _substitute(text, paper_id, title)
    dest.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def new_paper(paper_dir: str | Path, *, title: str | None = None, paper_id: str | None = None) -> Path:
    """Write the worked-example paper into ``paper_dir`` (new, or an empty folder).

    ``paper_id`` defaults to the folder's name and must be letters, digits, ``-``, ``_``
    or ``.`` (it names the Otter assignments, ``<id>-01-rerun`` ...); ``title`` defaults to
    the id. Refuses a folder that exists and is not empty. Returns the folder.
    """
    paper_dir = Path(paper_dir)
    if paper_dir.exists() and not paper_dir.is_dir():
        raise ScaffoldError(f"{paper_dir} exists and is not a folder")
    if paper_dir.is_dir() and any(paper_dir.iterdir()):
        raise ScaffoldError(f"{paper_dir} is not empty: reprokit new writes only into a new or "
                            "empty folder, so it never overwrites a paper")
    paper_id = paper_id or paper_dir.resolve().name
    if not PAPER_ID.match(paper_id):
        raise ScaffoldError(f"paper id {paper_id!r}: use letters, digits, '-', '_' and '.' "
                            "(start with a letter or digit); pass --id")
    title = title or paper_id
    if "\n" in title:
        raise ScaffoldError("the title must be one line")
    root = template_root()
    files = sorted(p for p in root.rglob("*") if p.is_file() and not _SKIP & set(p.relative_to(root).parts)
                   and p.suffix != ".pyc")
    paper_dir.mkdir(parents=True, exist_ok=True)
    for source in files:
        dest = paper_dir / source.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.suffix == ".ipynb":
            _write_notebook(source, dest, paper_id, title)
        elif source.suffix in _TEXT:
            dest.write_text(_substitute(source.read_text(encoding="utf-8"), paper_id, title),
                            encoding="utf-8")
        else:
            shutil.copyfile(source, dest)
    return paper_dir


@click.command("new")
@click.argument("paper_dir", type=click.Path(path_type=Path))
@click.option("--title", default=None, help="The paper's title (default: the id).")
@click.option("--id", "paper_id", default=None,
              help="The paper's id, used in assignment names (default: the folder's name).")
def new_command(paper_dir: Path, title: str | None, paper_id: str | None) -> None:
    """Scaffold PAPER_DIR: a paper folder with one worked example per level, ready to build."""
    made = new_paper(paper_dir, title=title, paper_id=paper_id)
    n = sum(1 for p in made.rglob("*") if p.is_file())
    click.echo(f"wrote {n} files to {made}\n"
               f"next: reprokit build {made} -o dist   (then replace the example, level by level)")
