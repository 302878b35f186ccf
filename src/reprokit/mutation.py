"""The mutation gate: does a *wrong* answer lose points?

The build's QA gate proves that the reference solution scores full marks and the blank
notebook about zero. This module proves the third thing: mutants of the reference answer
(one small change each, in the lines a student writes) score less than full marks when the
autograder grades them. A mutant that keeps full marks *survives*: the tests cannot tell that
wrong answer from the right one.

The map, in the order the build calls it:

* :func:`question_cells` reads a master notebook's ``# BEGIN SOLUTION`` cells and, inside
  them, the student's lines (those ending ``# SOLUTION`` or between ``# BEGIN SOLUTION`` /
  ``# END SOLUTION`` comments; a solution cell without markers is all the student's);
* :func:`mutants_of` applies every operator of :data:`OPERATORS` to one cell's code with
  :mod:`ast` (general ones after mutmut / cosmic-ray, ML ones after DeepCrime's taxonomy)
  and gives each :class:`Mutant` a stable id: the operator and a hash of the question and
  the diff, so ``paper.yaml`` can list an equivalent mutant by id;
* :func:`level_mutants` collects a level's mutants and samples at most ``max_per_question``
  per question, deterministically (round robin over operators, by id);
* :func:`grade_mutants` grades them with the grading engine (:mod:`reprokit.grading`'s
  autograder loading, sandbox and test runner, the very code students are graded with),
  in parallel worker processes. Each worker executes the notebook *up to* the first mutated
  cell once in a sandboxed zygote, then forks it per mutant (:meth:`reprokit.sandbox.Zygote.branch`)
  to execute only the mutated cell and the cells after it. The mutated question's tests run
  first; a mutant is *killed* as soon as any question scores less than full marks, or the
  notebook times out or crashes (a student would lose those points too);
* :func:`gate_level` is the build's hook: it returns a :class:`LevelMutationReport` whose
  ``problems`` fail the build for a question whose kill rate is below ``threshold``
  (``paper.yaml``, default 0.8) unless every survivor is listed as equivalent;
* :func:`candidate_chaffs` (level 4): the same operators on the authors' code give
  candidate chaffs; the reference student tests run against each through
  :func:`reprokit.bughunt.hunt`, and the ones they do not catch are reported.

``paper.yaml``::

    mutation:
      threshold: 0.8            # a question fails below this kill rate
      max_per_question: 8       # mutants graded per question (sampled deterministically)
      equivalent:               # survivors that cannot change behaviour
        - {level: "01", question: q1, mutant: constant-1a2b3c4d, reason: "..."}
"""

from __future__ import annotations

import ast
import contextlib
import copy
import difflib
import hashlib
import json
import os
import re
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_THRESHOLD = 0.8
DEFAULT_MAX_PER_QUESTION = 8
DEFAULT_MAX_CHAFF_CANDIDATES = 12
REPORT_NAME = "mutation-report.json"

# --------------------------------------------------------------------------- settings


class MutationConfigError(ValueError):
    """``paper.yaml``'s ``mutation`` section is malformed."""


#: kinds of ``mutation.equivalent`` entry: ``equivalent`` (the change cannot alter what
#: the notebook computes) and ``free-choice`` (it alters a value the question leaves to the
#: student, such as a seed or a setting within stated bounds: the mutant is a correct
#: answer, not a wrong one, and must keep full marks)
EQUIVALENT_KINDS = ("equivalent", "free-choice")


@dataclass
class Equivalent:
    """A surviving mutant the instructor has shown cannot change behaviour (``kind``
    ``equivalent``), or that changes only a value the question leaves to the student
    (``kind`` ``free-choice``: a correct answer written differently)."""

    level: str
    question: str
    mutant: str
    reason: str
    kind: str = "equivalent"

    def matches(self, level: str, question: str, mutant_id: str) -> bool:
        """Whether this entry names ``mutant_id`` of ``question`` at ``level`` (``01`` or ``01-rerun``)."""
        return (mutant_id == self.mutant and question == self.question
                and (level == self.level or level[:2] == self.level))


@dataclass
class MutationSettings:
    """The ``mutation`` section of ``paper.yaml``."""

    threshold: float = DEFAULT_THRESHOLD
    max_per_question: int = DEFAULT_MAX_PER_QUESTION
    max_chaff_candidates: int = DEFAULT_MAX_CHAFF_CANDIDATES
    equivalent: list[Equivalent] = field(default_factory=list)

    def equivalent_for(self, level: str, question: str, mutant_id: str) -> Equivalent | None:
        """The ``equivalent`` entry naming this mutant, if any."""
        return next((e for e in self.equivalent if e.matches(level, question, mutant_id)), None)


def read_settings(paper_dir: str | Path) -> MutationSettings:
    """``paper.yaml``'s ``mutation`` section (defaults when absent); raises
    :class:`MutationConfigError` naming the bad key."""
    import yaml

    path = Path(paper_dir) / "paper.yaml"
    data = yaml.safe_load(path.read_text()) if path.exists() else {}
    section = (data or {}).get("mutation") if isinstance(data, dict) else None
    if section is None:
        return MutationSettings()
    if not isinstance(section, dict):
        raise MutationConfigError(f"{path}: 'mutation' must be a mapping")
    known = {"threshold", "max_per_question", "max_chaff_candidates", "equivalent"}
    unknown = set(section) - known
    if unknown:
        raise MutationConfigError(f"{path}: mutation: unknown key(s) {sorted(unknown)}; "
                                  f"allowed: {sorted(known)}")
    s = MutationSettings()
    if "threshold" in section:
        t = section["threshold"]
        if isinstance(t, bool) or not isinstance(t, int | float) or not 0 <= t <= 1:
            raise MutationConfigError(f"{path}: mutation.threshold must be a number in [0, 1], got {t!r}")
        s.threshold = float(t)
    for key in ("max_per_question", "max_chaff_candidates"):
        if key in section:
            v = section[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise MutationConfigError(f"{path}: mutation.{key} must be a positive integer, got {v!r}")
            setattr(s, key, v)
    for i, entry in enumerate(section.get("equivalent") or []):
        where = f"{path}: mutation.equivalent[{i}]"
        if not isinstance(entry, dict):
            raise MutationConfigError(f"{where} must be a mapping")
        mutant = entry.get("mutant", entry.get("id"))
        missing = [k for k, v in (("level", entry.get("level")), ("question", entry.get("question")),
                                  ("mutant", mutant), ("reason", entry.get("reason"))) if not v]
        if missing:
            raise MutationConfigError(f"{where}: missing {', '.join(missing)} (an equivalent mutant "
                                      "needs level, question, mutant id and a reason)")
        kind = str(entry.get("kind", "equivalent"))
        if kind not in EQUIVALENT_KINDS:
            raise MutationConfigError(f"{where}: kind must be one of {list(EQUIVALENT_KINDS)}, "
                                      f"got {kind!r}")
        s.equivalent.append(Equivalent(str(entry["level"]), str(entry["question"]), str(mutant),
                                       str(entry["reason"]).strip(), kind))
    return s


# --------------------------------------------------------------------------- operators

#: operator name -> family; the order is the order they are tried and sampled
OPERATORS: dict[str, str] = {
    "constant": "general", "comparison": "general", "arithmetic": "general",
    "statement-deletion": "general", "off-by-one": "general", "argument-swap": "general",
    "dim": "ml", "train-eval-mode": "ml", "zero-grad-removed": "ml", "seed": "ml",
    "train-test-swap": "ml", "no-grad-in-training": "ml", "loss-reduction": "ml",
    "hyperparameter": "ml", "labels-shuffled": "ml",
}

_CMP_FLIP = {ast.Lt: ast.GtE, ast.GtE: ast.Lt, ast.Gt: ast.LtE, ast.LtE: ast.Gt, ast.Eq: ast.NotEq,
             ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is, ast.In: ast.NotIn,
             ast.NotIn: ast.In}
_ARITH_SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult,
               ast.FloorDiv: ast.Div, ast.Mod: ast.Mult, ast.Pow: ast.Mult}
_DIM_FUNCS = {"softmax", "log_softmax", "argmax", "argmin", "mean", "sum", "cat", "stack", "max",
              "min", "std", "var", "norm", "concatenate"}
_LOSS_FUNCS = {"cross_entropy", "nll_loss", "mse_loss", "l1_loss", "binary_cross_entropy",
               "binary_cross_entropy_with_logits", "smooth_l1_loss", "kl_div", "CrossEntropyLoss",
               "NLLLoss", "MSELoss", "L1Loss", "BCELoss", "BCEWithLogitsLoss"}
_SEED_FUNCS = {"manual_seed", "seed", "seed_everything", "set_seed", "default_rng", "RandomState"}
_HYPER = {"lr": ("* 10", lambda v: ast.BinOp(v, ast.Mult(), ast.Constant(10))),
          "learning_rate": ("* 10", lambda v: ast.BinOp(v, ast.Mult(), ast.Constant(10))),
          "batch_size": ("* 2", lambda v: ast.BinOp(v, ast.Mult(), ast.Constant(2))),
          "epochs": ("// 2", lambda v: ast.BinOp(v, ast.FloorDiv(), ast.Constant(2))),
          "n_epochs": ("// 2", lambda v: ast.BinOp(v, ast.FloorDiv(), ast.Constant(2))),
          "num_epochs": ("// 2", lambda v: ast.BinOp(v, ast.FloorDiv(), ast.Constant(2)))}
_LABEL = re.compile(r"^(y|labels?|targets?)(_\w+)?$")
_INPUT = re.compile(r"^([Xx]|inputs?|features?|images?)(_\w+)?$")
_SPLIT = re.compile(r"(?<![A-Za-z])(train|test)(?![A-Za-z])")
DELETE = object()  # a replacement meaning "remove this statement"


def _call_name(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def _root_name(node: ast.AST) -> str:
    while isinstance(node, ast.Subscript | ast.Call):
        node = node.value if isinstance(node, ast.Subscript) else node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def _is_docstring(stmt: ast.stmt) -> bool:
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
            and isinstance(stmt.value.value, str))


def _minus_one(node: ast.expr) -> ast.expr:
    return ast.BinOp(copy.deepcopy(node), ast.Sub(), ast.Constant(1))


def _plus_one(node: ast.expr) -> ast.expr:
    return ast.BinOp(copy.deepcopy(node), ast.Add(), ast.Constant(1))


Replacement = tuple[str, Any, str]  # (operator, new node / DELETE / ("move", k), description)


def _expr_mutations(node: ast.AST, parents: dict[ast.AST, ast.AST],
                    known: set[str] | None = None) -> Iterator[Replacement]:
    """Replacements for one expression node (the node is replaced by the new one). A name
    is only swapped for one in ``known`` (when given): ``X_test`` for an ``X_train`` that
    does not exist would only raise NameError, a kill that proves nothing."""
    parent = parents.get(node)
    if isinstance(node, ast.Constant) and not (isinstance(parent, ast.Expr)):
        v = node.value
        if isinstance(v, bool):
            yield "constant", ast.Constant(not v), f"{v} -> {not v}"
        elif isinstance(v, int):
            yield "constant", ast.Constant(v + 1), f"{v} -> {v + 1}"
        elif isinstance(v, float):
            new = v * 2 if v else 1.0
            yield "constant", ast.Constant(new), f"{v!r} -> {new!r}"
        elif isinstance(v, str) and not isinstance(parent, ast.JoinedStr | ast.Dict | ast.Subscript
                                                    | ast.Assert):
            # (a changed key only raises KeyError: a trivial kill; train-test-swap covers keys;
            # an assertion's message changes no score: an equivalent mutant by construction)
            new = v + "_mutant" if len(v) > 1 else chr(ord(v) + 1) if v else "x"
            yield "constant", ast.Constant(new), f"{v!r} -> {new!r}"
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _CMP_FLIP:
        new = copy.deepcopy(node)
        new.ops = [_CMP_FLIP[type(node.ops[0])]()]
        yield "comparison", new, "comparison flipped"
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITH_SWAP:
        new = copy.deepcopy(node)
        new.op = _ARITH_SWAP[type(node.op)]()
        yield "arithmetic", new, "arithmetic operator swapped"
    if isinstance(node, ast.Slice):
        if node.upper is not None:
            new = copy.deepcopy(node)
            new.upper = _plus_one(node.upper)
            yield "off-by-one", new, "slice end + 1"
        if node.lower is not None:
            new = copy.deepcopy(node)
            new.lower = _plus_one(node.lower)
            yield "off-by-one", new, "slice start + 1"
    if isinstance(node, ast.Call):
        yield from _call_mutations(node)
    if isinstance(node, ast.Attribute | ast.Name) and isinstance(node.ctx, ast.Load):
        name = node.attr if isinstance(node, ast.Attribute) else node.id
        if _SPLIT.search(name) and not (isinstance(parent, ast.Call) and parent.func is node):
            swapped = _SPLIT.sub(lambda m: "test" if m.group(1) == "train" else "train", name)
            if isinstance(node, ast.Name) and known is not None and swapped not in known:
                return
            new = copy.deepcopy(node)
            setattr(new, "attr" if isinstance(node, ast.Attribute) else "id", swapped)
            yield "train-test-swap", new, f"{name} -> {swapped}"
    if (isinstance(node, ast.Constant) and isinstance(node.value, str) and isinstance(parent, ast.Subscript)
            and _SPLIT.search(node.value)):
        swapped = _SPLIT.sub(lambda m: "test" if m.group(1) == "train" else "train", node.value)
        yield "train-test-swap", ast.Constant(swapped), f"[{node.value!r}] -> [{swapped!r}]"


def _call_mutations(call: ast.Call) -> Iterator[Replacement]:
    name = _call_name(call)
    # general: range off-by-one, argument swap
    if name == "range" and call.args:
        new = copy.deepcopy(call)
        i = 0 if len(call.args) == 1 else 1
        new.args[i] = _minus_one(call.args[i])
        yield "off-by-one", new, "range end - 1"
    if len(call.args) >= 2 and not any(isinstance(a, ast.Starred) for a in call.args):
        for i in range(len(call.args) - 1):
            a, b = ast.unparse(call.args[i]), ast.unparse(call.args[i + 1])
            if a != b:
                new = copy.deepcopy(call)
                new.args[i], new.args[i + 1] = new.args[i + 1], new.args[i]
                yield "argument-swap", new, f"arguments {i} and {i + 1} of {name}() swapped"
    # dim in softmax/argmax/mean/sum/cat ...
    if name in _DIM_FUNCS:
        for k, kw in enumerate(call.keywords):
            if kw.arg in ("dim", "axis") and isinstance(kw.value, ast.Constant | ast.UnaryOp):
                old = ast.unparse(kw.value)
                new_dim = "1" if old == "0" else "0"
                new = copy.deepcopy(call)
                new.keywords[k].value = ast.Constant(int(new_dim))
                yield "dim", new, f"{name}({kw.arg}={old}) -> {kw.arg}={new_dim}"
    # eval()/train() removed or swapped
    if name in ("eval", "train") and isinstance(call.func, ast.Attribute) and not call.args:
        other = "train" if name == "eval" else "eval"
        new = copy.deepcopy(call)
        new.func.attr = other
        yield "train-eval-mode", new, f".{name}() -> .{other}()"
        yield "train-eval-mode", copy.deepcopy(call.func.value), f".{name}() removed"
    # seeded generator made unseeded: torch.Generator().manual_seed(s) -> torch.Generator()
    if name == "manual_seed" and isinstance(call.func, ast.Attribute) and isinstance(call.func.value, ast.Call):
        yield "seed", copy.deepcopy(call.func.value), "generator left unseeded (seed call removed)"
    # a private generator replaced by the global RNG
    for k, kw in enumerate(call.keywords):
        if kw.arg == "generator":
            new = copy.deepcopy(call)
            del new.keywords[k]
            yield "seed", new, f"{name}() draws from the global RNG instead of its generator"
    # loss reduction
    if name in _LOSS_FUNCS:
        current = next((kw for kw in call.keywords if kw.arg == "reduction"), None)
        value = current.value.value if current is not None and isinstance(current.value, ast.Constant) else "mean"
        to = "sum" if value != "sum" else "mean"
        new = copy.deepcopy(call)
        new.keywords = [kw for kw in new.keywords if kw.arg != "reduction"]
        new.keywords.append(ast.keyword("reduction", ast.Constant(to)))
        yield "loss-reduction", new, f"{name}(reduction={value!r}) -> {to!r}"
    # hyperparameters passed as keywords
    for k, kw in enumerate(call.keywords):
        if kw.arg in _HYPER:
            how, fn = _HYPER[kw.arg]
            new = copy.deepcopy(call)
            new.keywords[k].value = fn(copy.deepcopy(kw.value))
            yield "hyperparameter", new, f"{kw.arg} {how}"
    # labels shuffled against their inputs
    args = list(call.args) + [kw.value for kw in call.keywords]
    names = {n.id if isinstance(n, ast.Name) else n.attr for a in args for n in ast.walk(a)
             if isinstance(n, ast.Name | ast.Attribute)}
    if any(_INPUT.match(n) for n in names):
        for i, a in enumerate(call.args):
            if _LABEL.match(_root_name(a)):
                new = copy.deepcopy(call)
                shuffled = ast.parse(f"({ast.unparse(a)})[__import__('numpy').random.default_rng(0)"
                                     f".permutation(len({ast.unparse(a)}))]", mode="eval").body
                new.args[i] = shuffled
                yield "labels-shuffled", new, f"{ast.unparse(a)} shuffled against the inputs"
                break


def _is_seed_stmt(stmt: ast.stmt) -> bool:
    return (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)
            and _call_name(stmt.value) in _SEED_FUNCS)


def _has_backward(stmts: list[ast.stmt]) -> bool:
    return any(isinstance(n, ast.Call) and _call_name(n) == "backward"
               for s in stmts for n in ast.walk(s))


def _stmt_mutations(stmt: ast.stmt, body: list[ast.stmt], index: int) -> Iterator[Replacement]:
    """Replacements for one statement inside ``body`` (its list in the parent)."""
    if _is_docstring(stmt) or isinstance(stmt, ast.Import | ast.ImportFrom | ast.FunctionDef
                                         | ast.ClassDef | ast.AsyncFunctionDef | ast.Global
                                         | ast.Nonlocal | ast.Pass):
        return
    call = stmt.value if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) else None
    if call is not None and _call_name(call) == "zero_grad":
        yield "zero-grad-removed", DELETE, "zero_grad() removed"
    elif _is_seed_stmt(stmt):
        yield "seed", DELETE, f"{_call_name(call)}() removed"
        if index + 1 < len(body):
            yield "seed", ("move", index + 1), f"{_call_name(call)}() moved after the next statement"
    elif isinstance(stmt, ast.Assign | ast.AugAssign | ast.AnnAssign | ast.Expr | ast.Return
                    | ast.Delete | ast.Assert | ast.Raise):
        yield "statement-deletion", DELETE, "statement deleted"
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
        target = stmt.targets[0].id
        if target in _HYPER and not isinstance(stmt.value, ast.Dict):
            how, fn = _HYPER[target]
            new = copy.deepcopy(stmt)
            new.value = fn(copy.deepcopy(stmt.value))
            yield "hyperparameter", new, f"{target} {how}"
        # hyperparameters in a settings dict: {"lr": 2e-3, ...}
        if isinstance(stmt.value, ast.Dict):
            for k, key in enumerate(stmt.value.keys):
                if isinstance(key, ast.Constant) and key.value in _HYPER:
                    how, fn = _HYPER[key.value]
                    new = copy.deepcopy(stmt)
                    new.value.values[k] = fn(copy.deepcopy(stmt.value.values[k]))
                    yield "hyperparameter", new, f"{key.value} {how}"
    # a training step run without gradients
    if (isinstance(stmt, ast.Assign | ast.Expr) and _has_backward(body) and not _has_backward([stmt])
            and any(isinstance(n, ast.Call) for n in ast.walk(stmt))):
        names = {t.id for t in getattr(stmt, "targets", []) if isinstance(t, ast.Name)}
        if names and any(isinstance(n, ast.Call) and _call_name(n) == "backward"
                         and _root_name(n.func.value) in names for s in body for n in ast.walk(s)
                         if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)):
            wrapped = ast.parse("with __import__('torch').no_grad():\n    pass").body[0]
            wrapped.body = [copy.deepcopy(stmt)]
            yield "no-grad-in-training", wrapped, "training step wrapped in torch.no_grad()"


@dataclass
class Mutant:
    """One change to one question's solution code."""

    id: str
    level: str
    question: str
    operator: str
    family: str
    cell: int  # index among the graded code cells of the solution notebook
    line: int  # line in that cell (1-based, of the unparsed code)
    description: str
    diff: str
    source: str  # the whole mutated cell

    def to_json(self) -> dict:
        """The mutant as JSON-ready data (without the whole cell)."""
        d = asdict(self)
        d.pop("source")
        return d


def _student_lines(source: str) -> tuple[str, set[int] | None]:
    """The cell's code with in-cell markers blanked, and the student's line numbers
    (None: the whole cell is the student's)."""
    lines, student, inside, marked = source.splitlines(), set(), False, False
    out = []
    for n, line in enumerate(lines, 1):
        if re.match(r"\s*#\s*BEGIN\s+SOLUTION", line, re.IGNORECASE):
            inside, marked = True, True
            out.append("")
            continue
        if re.match(r"\s*#\s*END\s+SOLUTION", line, re.IGNORECASE):
            inside = False
            out.append("")
            continue
        if line.rstrip().endswith("# SEED"):
            out.append("")
            continue
        if re.search(r"#\s*SOLUTION\s*$", line):
            marked = True
            student.add(n)
        elif inside:
            student.add(n)
        out.append(line)
    return "\n".join(out), (student if marked else None)


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _within(node: ast.AST, student: set[int] | None) -> bool:
    if student is None:
        return True
    start, end = getattr(node, "lineno", None), getattr(node, "end_lineno", None)
    if start is None:
        return False
    return all(n in student for n in range(start, (end or start) + 1))


def _apply(tree: ast.Module, index: int, replacement: Any) -> ast.Module:
    """A copy of ``tree`` with its ``index``-th node (ast.walk order) replaced."""
    new = copy.deepcopy(tree)
    target = list(ast.walk(new))[index]
    parent = _parents(new)[target]
    for name, value in ast.iter_fields(parent):
        if isinstance(value, list) and any(v is target for v in value):
            i = next(k for k, v in enumerate(value) if v is target)
            if replacement is DELETE:
                del value[i]
                if not value and name in ("body", "orelse", "finalbody", "handlers"):
                    value.append(ast.Pass())
            elif isinstance(replacement, tuple) and replacement[0] == "move":
                stmt = value.pop(i)
                value.insert(replacement[1], stmt)
            else:
                value[i] = replacement
            break
        if value is target:
            setattr(parent, name, replacement)
            break
    return ast.fix_missing_locations(new)


def _diff(before: str, after: str) -> str:
    lines = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=1)
    return "\n".join(line for line in lines if not line.startswith(("---", "+++")))


def mutant_id(operator: str, question: str, diff: str) -> str:
    """``operator-<8 hex>``: a hash of the question and the changed lines, stable while the
    changed line's text stays the same (line numbers do not enter it)."""
    core = "\n".join(line.strip() for line in diff.splitlines() if line[:1] in "+-")
    digest = hashlib.sha1((question + "\0" + core).encode()).hexdigest()[:8]
    return f"{operator}-{digest}"


def defined_names(sources: list[str]) -> set[str]:
    """Every name the code binds or reads (assignments, parameters, defs, imports) and the
    builtins: what a swapped name may become without being a mere NameError."""
    import builtins

    names = set(dir(builtins))
    for src in sources:
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        for n in ast.walk(tree):
            if isinstance(n, ast.Name):
                names.add(n.id)
            elif isinstance(n, ast.arg):
                names.add(n.arg)
            elif isinstance(n, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef):
                names.add(n.name)
            elif isinstance(n, ast.alias):
                names.add((n.asname or n.name).split(".")[0])
    return names


def mutants_of(source: str, *, level: str = "", question: str = "", cell: int = 0,
               student: set[int] | None = None, known: set[str] | None = None) -> list[Mutant]:
    """Every single-change mutant of ``source`` (one cell's code) touching only ``student``
    lines (all lines when None). Code that does not parse (IPython magics) has none."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    original = ast.unparse(tree)
    parents = _parents(tree)
    nodes = list(ast.walk(tree))
    seen: dict[str, int] = {}
    sources: set[str] = set()
    out: list[Mutant] = []

    def add(index: int, op: str, replacement: Any, description: str) -> None:
        try:
            mutated = ast.unparse(_apply(tree, index, replacement))
            compile(mutated, "<mutant>", "exec")
        except (SyntaxError, ValueError, TypeError, AttributeError, RecursionError):
            return
        if mutated == original or mutated in sources:
            return  # (the same change reached by two operators counts once, under the first)
        sources.add(mutated)
        diff = _diff(original, mutated)
        mid = mutant_id(op, question, diff)
        seen[mid] = seen.get(mid, 0) + 1
        if seen[mid] > 1:
            mid = f"{mid}-{seen[mid]}"
        line = next((int(m.group(1)) for m in re.finditer(r"^@@ -(\d+)", diff, re.M)), 1)
        out.append(Mutant(mid, level, question, op, OPERATORS[op], cell, line, description, diff, mutated))

    for index, node in enumerate(nodes):
        if not _within(node, student):
            continue
        if isinstance(node, ast.stmt):
            parent = parents.get(node)
            for _field, value in ast.iter_fields(parent) if parent is not None else ():
                if isinstance(value, list) and any(v is node for v in value):
                    body_index = next(k for k, v in enumerate(value) if v is node)
                    for op, rep, desc in _stmt_mutations(node, value, body_index):
                        add(index, op, rep, desc)
                    break
        elif isinstance(node, ast.expr):
            for op, rep, desc in _expr_mutations(node, parents, known):
                add(index, op, rep, desc)
    return out


# --------------------------------------------------------------------------- a level's mutants


@dataclass
class SolutionCell:
    """One ``# BEGIN SOLUTION`` code cell of a master, located in the built solution notebook."""

    question: str
    master_cell: int
    graded_index: int | None
    code: str
    student: set[int] | None


def question_cells(master_path: str | Path, solution_nb: str | Path) -> list[SolutionCell]:
    """Each solution code cell of each auto-graded question of a master, with the index of the
    same cell among the graded code cells of the built solution notebook."""
    import nbformat

    from reprokit.build import _is_block, _is_ignored, _normalise
    from reprokit.grading import read_cells

    nb = nbformat.read(master_path, as_version=4)
    graded, _ = read_cells(Path(solution_nb))
    normalised = [_normalise(c) for c in graded]
    out, question, in_solution, manual = [], None, False, False
    for i, cell in enumerate(nb.cells):
        if _is_ignored(cell):
            continue
        if _is_block(cell, "question"):
            import yaml

            meta = yaml.safe_load(cell.source) or {}
            question, manual = str(meta.get("name")), bool(meta.get("manual"))
        elif _is_block(cell, "question", begin=False):
            question = None
        elif _is_block(cell, "solution"):
            in_solution = True
        elif _is_block(cell, "solution", begin=False):
            in_solution = False
        elif cell.cell_type == "code" and in_solution and question and not manual:
            code, student = _student_lines(cell.source)
            want = _normalise(cell.source)
            idx = next((k for k, n in enumerate(normalised) if n == want), None)
            out.append(SolutionCell(question, i, idx, code, student))
    return out


def _sample(mutants: list[Mutant], cap: int) -> list[Mutant]:
    """At most ``cap`` mutants: round robin over operators, each operator's by id (stable)."""
    if len(mutants) <= cap:
        return mutants
    by_op: dict[str, list[Mutant]] = {}
    for m in sorted(mutants, key=lambda m: hashlib.sha1(m.id.encode()).hexdigest()):
        by_op.setdefault(m.operator, []).append(m)
    order = [op for op in OPERATORS if op in by_op]
    picked: list[Mutant] = []
    while len(picked) < cap:
        for op in order:
            if by_op[op] and len(picked) < cap:
                picked.append(by_op[op].pop(0))
    return sorted(picked, key=lambda m: (m.cell, m.line, m.id))


def level_mutants(master_path: str | Path, solution_nb: str | Path, level: str,
                  max_per_question: int | None = DEFAULT_MAX_PER_QUESTION
                  ) -> tuple[dict[str, list[Mutant]], dict[str, int]]:
    """The mutants to grade per question (sampled) and how many each question had in all."""
    from reprokit.grading import read_cells

    per_question: dict[str, list[Mutant]] = {}
    known = defined_names(read_cells(Path(solution_nb))[0])
    for sc in question_cells(master_path, solution_nb):
        if sc.graded_index is None:
            continue
        ms = mutants_of(sc.code, level=level, question=sc.question, cell=sc.graded_index, known=known,
                        student=sc.student)
        per_question.setdefault(sc.question, []).extend(ms)
    totals = {q: len(ms) for q, ms in per_question.items()}
    if max_per_question:
        per_question = {q: _sample(ms, max_per_question) for q, ms in per_question.items()}
    return per_question, totals


# --------------------------------------------------------------------------- grading


@dataclass
class MutantResult:
    """How the autograder scored one mutant."""

    mutant: Mutant
    status: str  # killed | survived | equivalent | error
    killed_by: list[str] = field(default_factory=list)  # questions (or "timeout", "crash")
    passed: list[str] = field(default_factory=list)  # tests a survivor passed
    seconds: float = 0.0
    detail: str = ""
    reason: str = ""  # for an equivalent mutant: paper.yaml's reason
    kind: str = ""  # for an equivalent mutant: "equivalent" or "free-choice" (paper.yaml)
    cpu_s: float = 0.0  # CPU-seconds of the mutant's processes and its tests

    def to_json(self) -> dict:
        """JSON-ready data."""
        return {**self.mutant.to_json(), "status": self.status, "killed_by": self.killed_by,
                "passed": self.passed, "seconds": round(self.seconds, 2),
                "cpu_s": round(self.cpu_s, 2), "detail": self.detail,
                **({"reason": self.reason} if self.reason else {}),
                **({"kind": self.kind} if self.kind else {})}


def _worker_init() -> None:  # pragma: no cover - runs in pool workers
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    # The tests' trusted side runs here (a level-2 test re-runs the authors' training). Two
    # workers share two cores: more than one intra-op thread each only oversubscribes them,
    # and on a busy machine OpenMP threads spinning for a descheduled peer made one authors'
    # run take minutes instead of about 1.5 CPU-seconds. The submission's side is clamped to
    # one thread by the sandbox already (GRADED_THREADS).
    torch.set_num_threads(1)
    from reprokit.grading import warm_up

    warm_up()


def _grade_group(task: dict) -> list[dict]:
    """Worker: execute the prefix once, then one branch per mutant; see :func:`grade_mutants`."""
    from reprokit import grading, sandbox

    sandbox.template()
    out: list[dict] = []
    base = Path(tempfile.mkdtemp(prefix="reprokit-mutation-"))
    os.chmod(base, 0o711)
    try:
        private = base / "private"
        private.mkdir(mode=0o700)
        ag = grading.load_autograder(task["autograder"], private)
        tests = grading._load_tests(ag)
        cells, notebook = grading.read_cells(Path(task["solution"]))
        k = task["cell"]
        prefix = cells[:k]
        timeout = float(task["timeout_s"])
        qtimeout = float(task["question_timeout_s"])
        with sandbox.sandbox_uid() as uid:
            work = grading._prepare_workdir(base, notebook, ag, uid)
            zygote: sandbox.Zygote | None = None
            try:
                for m in task["mutants"]:
                    t0 = time.monotonic()
                    prefix_cpu = 0.0
                    if zygote is None or zygote.dead:
                        if zygote is not None:
                            zygote.close()
                        zygote = sandbox.Zygote(work, prefix, uid=uid, seed=ag.seed,
                                                limits=sandbox.Limits(memory_mb=task["memory_mb"]))
                        report = zygote.execute(timeout)
                        prefix_cpu = zygote.cpu_seconds()
                        if report.errors or report.memory_error:
                            raise RuntimeError(f"the reference raised before cell {k}: {report.errors[:1]}")
                    suffix = [m["source"] if m["source"] is not None else cells[k]] + cells[k + 1:]
                    out.append(_grade_branch(zygote, suffix, tests, ag, m, timeout, qtimeout, k))
                    out[-1]["seconds"] = time.monotonic() - t0
                    out[-1]["prefix_cpu_s"] = prefix_cpu
            finally:
                if zygote is not None:
                    zygote.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return out


def _grade_branch(zygote: Any, suffix: list[str], tests: list[Any], ag: Any, m: dict,
                  timeout: float, qtimeout: float, offset: int) -> dict:
    result: dict[str, Any] = {"id": m["id"], "killed_by": [], "passed": [], "scores": {}}
    grader_cpu = time.process_time()
    with zygote.branch(suffix) as branch:
        try:
            _branch_outcome(branch, result, tests, ag, m, timeout, qtimeout, offset)
        finally:  # the mutant's own processes and the grader's side of its tests
            result["cpu_s"] = branch.cpu_seconds() + time.process_time() - grader_cpu
    return result


def _branch_outcome(branch: Any, result: dict, tests: list[Any], ag: Any, m: dict,
                    timeout: float, qtimeout: float, offset: int) -> None:
    """Execute a branch's cells and run the tests (the mutated question's first) into ``result``."""
    from reprokit import grading, sandbox

    try:
        report = branch.execute(timeout)
    except sandbox.GradingTimeout:
        result["killed_by"] = ["timeout"]
        return
    except sandbox.ProtocolViolation as e:
        result["killed_by"] = ["crash"]
        result["detail"] = str(e)
        return
    if report.memory_error:
        result["killed_by"] = ["out-of-memory"]
        return
    if report.errors:
        first = report.errors[0]
        result["detail"] = (f"code cell {offset + first['cell']} raised {first['type']}: "
                            f"{first['message'][:200]}")
    ordered = sorted(tests, key=lambda tf: tf.name != m["question"])
    from reprokit.cputime import WALL_FACTOR

    total_cpu = timeout + qtimeout * len(tests)  # CPU-seconds of the branch, tests included
    wall_deadline = time.monotonic() + WALL_FACTOR * total_cpu
    for tf in ordered:
        scores, _, _ = grading._run_tests(branch, [tf], ag, total_cpu, qtimeout, wall_deadline)
        q = scores[tf.name]
        result["scores"][tf.name] = [q.score, q.possible]
        if q.score < q.possible - 1e-9:
            result["killed_by"].append(tf.name)
            result["output"] = q.output[-1500:]
            if not m.get("all_tests"):
                break
        else:
            result["passed"] += [_test_name(tc.test_case) for tc in tf.test_case_results
                                 if tc.passed]


def _test_name(test_case: Any) -> str:
    """The test function's name (Otter names a case ``q1 - 2``)."""
    fn = getattr(getattr(test_case, "body", None), "test_func", None)
    return getattr(fn, "__name__", None) or str(getattr(test_case, "name", "?"))


_POOL: Any = None
_POOL_WORKERS = 0


def _pool(workers: int) -> Any:
    """A process pool kept across levels (each worker pays the warm-up once)."""
    global _POOL, _POOL_WORKERS
    if _POOL is None or _POOL_WORKERS != workers:
        import atexit
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        shutdown_pool()
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["reprokit.grading", "reprokit.mutation", "otter.test_files"])
        _POOL = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init)
        _POOL_WORKERS = workers
        atexit.register(shutdown_pool)
    return _POOL


def _noop(seconds: float) -> int:  # pragma: no cover - runs in pool workers
    time.sleep(seconds)
    return os.getpid()


def warm_pool(workers: int = 2) -> float:
    """Start the mutation workers now (imports, sandbox template); returns the seconds taken."""
    t0 = time.monotonic()
    pool = _pool(workers)
    for fut in [pool.submit(_noop, 0.5) for _ in range(workers)]:
        fut.result()
    return time.monotonic() - t0


def shutdown_pool() -> None:
    """Stop the mutation workers (the build calls it when done)."""
    global _POOL
    if _POOL is not None:
        _POOL.shutdown(wait=True, cancel_futures=True)
        _POOL = None


def grade_mutants(solution_nb: str | Path, autograder: str | Path, mutants: list[Mutant], *,
                  workers: int = 2, timeout_s: float = 120.0, question_timeout_s: float = 120.0,
                  memory_mb: int = 4096, control: bool = True) -> tuple[list[dict], dict | None]:
    """Grade ``mutants`` of ``solution_nb`` with ``autograder``; returns raw results (one per
    mutant, in order) and the control run (the unmutated notebook through the same path,
    which must score full marks: if it does not, the mutation machinery is at fault).

    Mutants are grouped by the graded cell they change; each group is split into at most
    ``workers`` chunks; a chunk executes the notebook up to that cell once, then each mutant
    in a fork of that state.
    """
    by_cell: dict[int, list[Mutant]] = {}
    for m in mutants:
        by_cell.setdefault(m.cell, []).append(m)
    tasks = []
    first = True
    for cell in sorted(by_cell):
        group = by_cell[cell]
        n = max(1, min(workers, len(group) // 2 or 1))
        for c in range(n):
            chunk = [{"id": m.id, "question": m.question, "source": m.source} for m in group[c::n]]
            if control and first:
                chunk.insert(0, {"id": "__control__", "question": "", "source": None, "all_tests": True})
                first = False
            tasks.append({"solution": str(solution_nb), "autograder": str(autograder), "cell": cell,
                          "mutants": chunk, "timeout_s": timeout_s,
                          "question_timeout_s": question_timeout_s, "memory_mb": memory_mb})
    results: dict[str, dict] = {}

    def failed(task: dict, e: BaseException) -> None:  # ours, never the tests': loud
        for m in task["mutants"]:
            results[m["id"]] = {"id": m["id"], "error": f"{type(e).__name__}: {e}"[:500],
                                "killed_by": [], "passed": []}

    if workers <= 1:
        for t in tasks:
            try:
                for r in _grade_group(t):
                    results[r["id"]] = r
            except Exception as e:  # noqa: BLE001 - reported as the gate's own failure
                failed(t, e)
    else:
        pool = _pool(workers)
        ordered = sorted(tasks, key=lambda t: t["cell"])
        for t, fut in [(t, pool.submit(_grade_group, t)) for t in ordered]:
            try:
                for r in fut.result():
                    results[r["id"]] = r
            except Exception as e:  # noqa: BLE001 - a broken worker: reported, pool restarted
                failed(t, e)
                shutdown_pool()
                pool = _pool(workers)
    return [results[m.id] for m in mutants], results.get("__control__")


# --------------------------------------------------------------------------- the gate


@dataclass
class QuestionMutationReport:
    """One question's mutants and verdict."""

    question: str
    generated: int
    results: list[MutantResult]
    threshold: float

    @property
    def graded(self) -> int:
        return len(self.results)

    @property
    def killed(self) -> int:
        return sum(r.status == "killed" for r in self.results)

    @property
    def survivors(self) -> list[MutantResult]:
        return [r for r in self.results if r.status == "survived"]

    @property
    def equivalent(self) -> list[MutantResult]:
        return [r for r in self.results if r.status == "equivalent"]

    @property
    def kill_rate(self) -> float:
        """Killed over graded, equivalent (and ungradable) mutants left out (1.0 with none)."""
        n = sum(r.status in ("killed", "survived") for r in self.results)
        return self.killed / n if n else 1.0

    @property
    def ok(self) -> bool:
        """Passes when the kill rate reaches the threshold or every survivor is equivalent."""
        return self.kill_rate >= self.threshold - 1e-9 or not self.survivors

    def to_json(self) -> dict:
        """JSON-ready data."""
        return {"question": self.question, "generated": self.generated, "graded": self.graded,
                "killed": self.killed, "equivalent": len(self.equivalent),
                "kill_rate": round(self.kill_rate, 4), "threshold": self.threshold, "ok": self.ok,
                "mutants": [r.to_json() for r in self.results]}


@dataclass
class LevelMutationReport:
    """A level's mutation verdict (the build adds its ``problems`` to the QA report)."""

    level: str
    questions: list[QuestionMutationReport] = field(default_factory=list)
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    skipped: str = ""
    chaff_candidates: list[dict] = field(default_factory=list)
    cpu_s: float = 0.0  # CPU-seconds of every mutant, prefix and control (load-independent)

    @property
    def graded(self) -> int:
        return sum(q.graded for q in self.questions)

    @property
    def killed(self) -> int:
        return sum(q.killed for q in self.questions)

    @property
    def kill_rate(self) -> float:
        n = sum(r.status in ("killed", "survived") for q in self.questions for r in q.results)
        return self.killed / n if n else 1.0

    def summary(self) -> str:
        """``killed/graded (rate)`` for the build's table."""
        if self.skipped:
            return "skipped"
        return f"{self.killed}/{self.graded - sum(len(q.equivalent) for q in self.questions)} " \
               f"({self.kill_rate:.0%})"

    def to_json(self) -> dict:
        """JSON-ready data."""
        return {"level": self.level, "seconds": round(self.seconds, 2),
                "cpu_s": round(self.cpu_s, 2), "skipped": self.skipped,
                "graded": self.graded, "killed": self.killed, "kill_rate": round(self.kill_rate, 4),
                "problems": self.problems, "questions": [q.to_json() for q in self.questions],
                "chaff_candidates": self.chaff_candidates}

    def lines(self, survivors_only: bool = False) -> list[str]:
        """Readable lines: per question the kill rate, then each survivor as a diff."""
        out = []
        for q in self.questions:
            mark = "ok" if q.ok else "FAIL"
            if not survivors_only:
                    out.append(f"{self.level} {q.question}: killed {q.killed}/"
                           f"{q.graded - len(q.equivalent)} ({q.kill_rate:.0%}, threshold "
                           f"{q.threshold:.0%}; {q.generated} generated, {len(q.equivalent)} "
                           f"equivalent) {mark}")
            for r in q.survivors:
                out.append(f"{self.level} {q.question} survivor {r.mutant.id} "
                           f"({r.mutant.description}); passed: "
                           f"{', '.join(r.passed) or 'no test'}")
                out += ["    " + line for line in r.mutant.diff.splitlines()]
        for c in self.chaff_candidates:
            if not c.get("caught_by"):
                out.append(f"{self.level} candidate chaff {c['id']} in {c['file']} ({c['description']}) "
                           "is not caught by the reference tests")
                out += ["    " + line for line in str(c.get("diff", "")).splitlines()]
        return out


def mutation_table(reports: list[LevelMutationReport]) -> Any:
    """A rich table: level, question, mutants generated / graded, killed, equivalent, kill
    rate, threshold, verdict, and the survivors' ids."""
    from rich.table import Table

    table = Table(title="mutation gate: mutants of the reference must lose points",
                  caption="generated: all single-change mutants; graded: the sample; rate: killed / "
                          "(graded - equivalent)")
    for col in ("level", "question", "generated", "graded", "killed", "equivalent", "rate",
                "verdict", "survivors"):
        table.add_column(col, justify="left" if col in ("level", "question", "verdict",
                                                        "survivors") else "right")
    for r in reports:
        if r.skipped or not r.questions:
            table.add_row(r.level, "-", "-", "-", "-", "-", "-", f"skipped: {r.skipped}", "")
        for q in r.questions:
            verdict = "[green]ok[/green]" if q.ok else "[red]FAIL[/red]"
            free = sum(e.kind == "free-choice" for e in q.equivalent)
            table.add_row(r.level, q.question, str(q.generated), str(q.graded), str(q.killed),
                          f"{len(q.equivalent)}" + (f" ({free} free)" if free else ""),
                          f"{q.kill_rate:.0%}", verdict,
                          ", ".join(s.mutant.id for s in q.survivors))
        n = sum(1 for c in r.chaff_candidates if not c.get("caught_by"))
        if r.chaff_candidates:
            table.add_row(r.level, "chaffs", str(len(r.chaff_candidates)), "", "", "", "",
                          f"{n} candidate(s) not caught", "")
    return table


def chaff_table(reports: list[LevelMutationReport]) -> Any:
    """A rich table of the level-4 candidate chaffs (mutants of the authors' code): id, file,
    the change, and the reference tests that catch it (none: a candidate to promote, or a
    change that does not alter behaviour). ``None`` when no level has candidates."""
    from rich.table import Table

    rows = [(r.level, c) for r in reports for c in r.chaff_candidates]
    if not rows:
        return None
    table = Table(title="level 4: mutants of the authors' code as candidate chaffs",
                  caption="caught by: the reference solution's tests that fail on the candidate; "
                          "an uncaught one is a bug the hidden chaffs may lack (docs/mutation.md)")
    for col in ("level", "candidate", "file", "change", "caught by"):
        table.add_column(col)
    for level, c in rows:
        caught = c.get("caught_by") or []
        table.add_row(level, c["id"], c["file"], c["description"],
                      ", ".join(caught) if caught else "[yellow]not caught[/yellow]")
    return table


def gate_level(master_path: str | Path, solution_nb: str | Path, autograder: str | Path,
               level: str, settings: MutationSettings, *, reference_time_s: float = 10.0,
               workers: int | None = None, on_mutant: Callable[[int, int], None] | None = None
               ) -> LevelMutationReport:
    """Mutate a level's reference answers, grade each mutant, and judge each question."""
    t0 = time.monotonic()
    report = LevelMutationReport(level)
    per_question, totals = level_mutants(master_path, solution_nb, level, settings.max_per_question)
    mutants = [m for ms in per_question.values() for m in ms]
    if not mutants:
        report.skipped = "no auto-graded solution code to mutate"
        return report
    workers = workers or min(2, os.cpu_count() or 1)
    timeout = max(60.0, 4 * reference_time_s)  # CPU-seconds per mutant, as the engine counts
    raw, control = grade_mutants(solution_nb, autograder, mutants, workers=workers, timeout_s=timeout,
                                 question_timeout_s=timeout)
    report.cpu_s = sum(r.get("cpu_s", 0.0) + r.get("prefix_cpu_s", 0.0)
                       for r in raw + ([control] if control else []))
    errors = [r for r in raw if r.get("error")]
    if errors:
        report.problems.append(f"{level}: mutation gate: {len(errors)} mutant(s) could not be graded "
                               f"(the gate's failure, not the tests'): {errors[0]['error']}")
    if control is not None and (control.get("killed_by") or control.get("detail")
                                or control.get("error")):
        report.problems.append(
            f"{level}: mutation gate: the unmutated reference lost points when re-executed from "
            f"a fork ({', '.join(control.get('killed_by') or [])} {control.get('detail', '')} "
            f"{control.get('error', '')}".strip()
            + "); the mutation machinery is at fault, not the tests")
    for q, ms in per_question.items():
        results = []
        for m in ms:
            r = raw[mutants.index(m)]
            status = "error" if r.get("error") else "killed" if r.get("killed_by") else "survived"
            eq = settings.equivalent_for(level, q, m.id) if status == "survived" else None
            results.append(MutantResult(m, "equivalent" if eq else status, r.get("killed_by", []),
                                        r.get("passed", []), r.get("seconds", 0.0),
                                        r.get("detail", ""), eq.reason if eq else "",
                                        eq.kind if eq else "", r.get("cpu_s", 0.0)))
        qr = QuestionMutationReport(q, totals[q], results, settings.threshold)
        report.questions.append(qr)
        if not qr.ok:
            s = qr.survivors[0]
            report.problems.append(
                f"{level}, question {q}: mutation kill rate {qr.kill_rate:.0%} is below "
                f"{settings.threshold:.0%}: {len(qr.survivors)} wrong answer(s) keep full marks, e.g. "
                f"{s.mutant.id} ({s.mutant.description}):\n{s.mutant.diff}\n  add a test that fails on it, "
                "or list it under mutation.equivalent in paper.yaml with a reason")
    report.seconds = round(time.monotonic() - t0, 2)
    return report


def gate_build(build: Any, paper_dir: str | Path, qa_report: Any,
               settings: MutationSettings | None = None) -> LevelMutationReport:
    """The build's hook for one level (a :class:`reprokit.build.LevelBuild`): the gate, the
    level-4 chaff candidates, and ``<level>/mutation-report.json`` beside the zip. Skipped
    (with a reason) when the reference does not score full marks: there is nothing to compare."""
    paper_dir = Path(paper_dir)
    settings = settings or read_settings(paper_dir)
    if qa_report.possible <= 0 or qa_report.reference_score < qa_report.possible - 1e-9:
        report = LevelMutationReport(build.level, skipped="the reference does not score full marks")
    else:
        report = gate_level(build.master.path, build.solution, build.zipfile, build.level, settings,
                            reference_time_s=getattr(qa_report, "reference_cpu_s", 0.0)
                            or qa_report.reference_time_s)
        hunts = any(str(f).startswith("chaffs") for f in build.master.hidden_files)
        if hunts and (paper_dir / "authors").is_dir():
            t0 = time.monotonic()
            try:
                report.chaff_candidates = candidate_chaffs(paper_dir, build.student.parent,
                                                           build.solution,
                                                           cap=settings.max_chaff_candidates)
            except (RuntimeError, OSError, ValueError) as e:
                report.problems.append(f"{build.level}: level-4 chaff candidates: {e}")
            report.seconds = round(report.seconds + time.monotonic() - t0, 2)
    write_report(Path(build.zipfile).parent, [report])
    return report


def write_report(out_dir: str | Path, reports: list[LevelMutationReport]) -> Path:
    """``mutation-report.json`` beside the levels' folders (their zips)."""
    path = Path(out_dir) / REPORT_NAME
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"levels": [r.to_json() for r in reports]}, indent=2) + "\n")
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------- level 4: chaffs


def authors_mutants(paper_dir: str | Path, cap: int = DEFAULT_MAX_CHAFF_CANDIDATES) -> list[tuple[Path, Mutant]]:
    """Single-change mutants of every module under ``authors/`` (sampled to ``cap``).

    ``__init__.py`` is left out: it only re-exports the modules (``from . import x``), and a
    mutant of it is no implementation a test could receive (its relative imports do not
    load on their own)."""
    out = []
    for path in sorted((Path(paper_dir) / "authors").glob("*.py")):
        if path.name == "__init__.py":
            continue
        for m in mutants_of(path.read_text(), level="authors", question=path.stem):
            out.append((path, m))
    picked = {m.id for m in _sample([m for _, m in out], cap)}
    return [(p, m) for p, m in out if m.id in picked]


def candidate_chaffs(paper_dir: str | Path, student_dir: str | Path, solution_nb: str | Path, *,
                     cap: int = DEFAULT_MAX_CHAFF_CANDIDATES, timeout_s: float = 600.0) -> list[dict]:
    """Level 4: mutants of the authors' code as candidate chaffs, each run against the
    reference solution's ``test_*`` functions with :func:`reprokit.bughunt.hunt`.

    The reference notebook runs (trusted: it is the instructor's) in a child process in a
    copy of ``student_dir``; each candidate is the mutated module's whole source, written as
    a chaff file that the tests import as ``implementation``. Returns one dict per candidate:
    ``id``, ``file``, ``description``, ``diff``, ``caught_by`` (test names; empty: not caught).
    """
    import subprocess
    import sys

    candidates = authors_mutants(paper_dir, cap)
    if not candidates:
        return []
    with tempfile.TemporaryDirectory(prefix="reprokit-chaffs-") as tmp:
        work = Path(tmp) / "work"
        shutil.copytree(student_dir, work)
        (work / "candidates").mkdir()
        index = []
        for path, m in candidates:
            src = work / "candidates" / f"{m.id}.py"
            src.write_text(m.source)
            index.append({"id": m.id, "file": f"authors/{path.name}", "description": m.description,
                          "diff": m.diff, "path": str(src)})
        (work / "candidates.json").write_text(json.dumps(index))
        shutil.copy(solution_nb, work / "reference.ipynb")
        proc = subprocess.run([sys.executable, "-m", "reprokit.mutation", "hunt", str(work)],
                              cwd=work, capture_output=True, text=True, timeout=timeout_s)
        out_file = work / "hunt.json"
        if proc.returncode != 0 or not out_file.exists():
            raise RuntimeError(f"the level-4 chaff hunt failed: {proc.stderr[-1500:]}")
        caught = json.loads(out_file.read_text())
    return [{k: v for k, v in c.items() if k != "path"} | {"caught_by": caught.get(c["id"], [])}
            for c in index]


def _hunt_main(work: Path) -> None:  # pragma: no cover - runs in a child process
    """Execute the reference notebook, collect its ``test_*`` functions, hunt the candidates.

    A candidate module replaces the authors' module it mutates for the whole run (the tests
    receive it as ``implementation``), exactly as a chaff file would.
    """
    import sys

    import nbformat

    from reprokit.bughunt import hunt

    os.chdir(work)
    sys.path.insert(0, str(work))
    nb = nbformat.read(work / "reference.ipynb", as_version=4)
    ns: dict[str, Any] = {"__name__": "__main__"}
    with contextlib.redirect_stdout(open(os.devnull, "w")):  # noqa: SIM115
        import matplotlib

        matplotlib.use("Agg")
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            try:
                exec(compile(cell.source, "<reference>", "exec"), ns)  # noqa: S102 - trusted
            except Exception:  # noqa: BLE001 - a display cell may fail outside Jupyter
                continue
    tests = {n: f for n, f in ns.items() if n.startswith("test_") and callable(f)}
    index = json.loads((work / "candidates.json").read_text())
    caught: dict[str, list[str]] = {}
    for c in index:
        rep = hunt(tests, wheats=[], chaffs=[Path(c["path"])], timeout_s=60.0, reveal=True)
        caught[c["id"]] = rep.chaffs[0].failing() if rep.chaffs else []
    (work / "hunt.json").write_text(json.dumps(caught))


if __name__ == "__main__":  # pragma: no cover
    import sys

    if len(sys.argv) == 3 and sys.argv[1] == "hunt":
        _hunt_main(Path(sys.argv[2]))
