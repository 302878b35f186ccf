"""Level-4 attacks: test suites that try to win a bug hunt without testing behaviour.

Each entry is the source of a notebook cell of test functions that replaces the student's
answer to question 1 of ``04-validate`` (9 points: 1 public, 8 hidden chaffs), after the
example test the notebook gives. ``before`` is the q1 score measured on the Zhang hunt as it
was before the level-4 defences (issue 9), ``after`` the score they must get now.
``defence`` names what stops it (docs/security.md, "Level 4"). ``HONEST`` holds test suites
that test behaviour, written unlike the reference solution; they must keep full marks.
``ATTACKS`` and ``HONEST`` are written for Zhang's hunt; :func:`attacks_for` and
:func:`honest_for` give each paper's: the attacks that name no API are shared, the others
are written again against that paper's API (``BATCHNORM_ATTACKS``, ``BATCHNORM_HONEST``).
"""

from __future__ import annotations

import runpy
from pathlib import Path

ATTACKS: dict[str, dict] = {
    # --- measured in issue 9
    "frames-read-source": {"defence": "compiled implementations", "before": 9, "after": 0, "cell": '''
def test_no_planted_bug_in_any_frame(implementation):
    import sys
    frame = sys._getframe(1)
    while frame is not None:
        for value in list(frame.f_locals.values()):
            values = list(value.values()) if isinstance(value, dict) else [value]
            for v in values:
                if isinstance(v, bytes):
                    v = v.decode("latin-1")
                if isinstance(v, str) and "planted bug" in v.lower():
                    raise AssertionError("found the chaff's explanation")
        frame = frame.f_back
'''},
    "order-and-shared-state": {"defence": "fresh work dir per run, secret order", "before": 8,
                               "after": 0, "cell": '''
def test_counter_in_the_work_dir(implementation):
    import os
    seen = int(open(".seen").read()) if os.path.exists(".seen") else 0
    open(".seen", "w").write(str(seen + 1))
    # the notebook's own hunt (4 runs), then the authors' code and three wheats; then chaffs
    assert seen < 8, "the rest are chaffs"
'''},
    "co-filename-introspection": {"defence": "compiled implementations", "before": 6, "after": 0,
                                  "cell": '''
def test_no_patched_functions(implementation):
    import types
    for value in vars(implementation).values():
        if isinstance(value, types.FunctionType):
            assert not value.__code__.co_filename.startswith("<patched"), value.__name__
'''},
    "exfiltrate-to-dev-shm": {"defence": "compiled implementations, per-run sweep", "before": 0,
                              # before: all 11 hidden sources left in /dev/shm; after: none
                              "after": 0, "cell": '''
def test_copy_everything_out(implementation):
    import gc, hashlib, marshal, os, sys, types
    out = "/dev/shm/reprokit-exfil"
    os.makedirs(out, exist_ok=True)
    found = []
    frame = sys._getframe(1)
    while frame is not None:
        for value in list(frame.f_locals.values()):
            for v in (list(value.values()) if isinstance(value, dict) else [value]):
                if isinstance(v, (str, bytes)) and len(v) > 200:
                    found.append(v if isinstance(v, bytes) else v.encode())
        frame = frame.f_back
    for obj in gc.get_objects():
        if isinstance(obj, dict):
            for v in list(obj.values()):
                if isinstance(v, str) and "implementation = derive(" in v:
                    found.append(v.encode())
    for value in vars(implementation).values():
        if isinstance(value, types.FunctionType):
            found.append(marshal.dumps(value.__code__))
    for blob in found:
        with open(os.path.join(out, hashlib.sha256(blob).hexdigest()[:16]), "wb") as f:
            f.write(blob)
'''},
    # --- our own, one per defence
    "globals-and-docstrings": {"defence": "compiled implementations", "before": 9, "after": 0,
                               "cell": '''
def test_no_chaff_in_globals_or_file_names(implementation):
    import types
    for value in vars(implementation).values():
        if isinstance(value, types.FunctionType):
            doc = value.__globals__.get("__doc__") or ""
            assert "planted bug" not in doc.lower(), value.__name__
            assert not value.__code__.co_filename.startswith("<patched"), value.__name__
'''},
    "gc-scan-for-source": {"defence": "compiled implementations", "before": 9, "after": 0,
                           "cell": '''
def test_no_planted_bug_in_memory(implementation):
    import gc
    for obj in gc.get_objects():
        if isinstance(obj, dict):
            for v in list(obj.values()):
                if isinstance(v, str) and "The planted bug" in v and "implementation = derive(" in v:
                    raise AssertionError("a chaff's source is in memory")
'''},
    "small-edit-of-the-authors-code": {"defence": "twin wheats", "before": 7, "after": 0,
                                       "cell": '''
def test_not_a_small_edit_of_the_authors_code(implementation):
    # A chaff is the authors' function with a one-line edit; a correct alternative is a
    # rewrite. Compare names and constants of each function with the authors'.
    import types
    from authors import randlabels

    def tokens(code):
        out = set(code.co_names) | set(code.co_varnames)
        for c in code.co_consts:
            if isinstance(c, types.CodeType):
                out |= tokens(c)
            elif not isinstance(c, str):
                out.add(repr(c))
        return out

    for name in ("corrupt_labels", "make_data", "load_digits_split", "train", "evaluate"):
        mine, theirs = getattr(implementation, name), getattr(randlabels, name)
        if mine.__code__.co_code == theirs.__code__.co_code:
            continue
        a, b = tokens(mine.__code__), tokens(theirs.__code__)
        similarity = len(a & b) / len(a | b)
        assert similarity < 0.8, f"{name} is a small edit of the authors' code ({similarity:.2f})"
'''},
    "counter-in-a-daemon-process": {"defence": "fresh fork per run, no processes outlive it",
                                    "before": 8, "after": 0, "cell": '''
def test_counter_in_a_daemon(implementation):
    import os, socket, time
    address = "\\0reprokit-bughunt-counter"

    def ask():
        s = socket.socket(socket.AF_UNIX)
        s.connect(address)
        n = int(s.recv(16))
        s.close()
        return n

    try:
        seen = ask()
    except OSError:
        seen = 0
        try:
            pid = os.fork()
        except OSError:
            pid = None
        if pid == 0:
            try:
                os.setsid()
                if os.fork() == 0:
                    server = socket.socket(socket.AF_UNIX)
                    server.bind(address)
                    server.listen(8)
                    count = 1
                    while True:
                        conn, _ = server.accept()
                        conn.send(str(count).encode())
                        conn.close()
                        count += 1
            finally:
                os._exit(0)
        if pid:
            os.waitpid(pid, 0)
    # the notebook's own hunt (4 runs), then the authors' code and three wheats; then chaffs
    assert seen < 8, "the rest are chaffs"
'''},
    "counter-in-tmp": {"defence": "fresh /tmp per run", "before": 8, "after": 0, "cell": '''
def test_counter_in_tmp(implementation):
    import os
    path = "/tmp/.reprokit-seen"
    seen = int(open(path).read()) if os.path.exists(path) else 0
    open(path, "w").write(str(seen + 1))
    # the notebook's own hunt (4 runs), then the authors' code and three wheats; then chaffs
    assert seen < 8, "the rest are chaffs"
'''},
    "run-index-from-the-clock": {"defence": "secret per-submission order", "before": 9,
                                 "after": 0, "cell": '''
def test_run_index_from_the_clock(implementation):
    # No files, no processes: each run lasts one second, so the time since the process that
    # forks the runs started says how many ran before this one.
    import os, time
    tick = os.sysconf("SC_CLK_TCK")

    def started(pid):
        return int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[19]) / tick

    mine, parent = started(os.getpid()), started(os.getppid())
    index = round(mine - parent)
    boot = float(open("/proc/uptime").read().split()[0])
    time.sleep(max(0.0, mine + 0.95 - boot))
    assert index < 4, "the authors' code and three wheats run first; the rest are chaffs"
'''},
    # --- the limits: what the defences do not (and cannot) stop
    "recognise-chaffs-by-their-files": {
        "defence": "hidden files never in the sandbox (public chaffs are public)",
        "before": None, "after": 1, "cell": '''
import os
ROOT = os.getcwd()


def test_not_any_chaff_file_on_disk(implementation):
    # Compile every chaff file that can be found the way the grader does and compare the
    # bytecode. Only the public chaffs are there at grading: their point is lost to this;
    # under plain `otter run` the hidden ones lie next to the notebook too (9/9 there).
    import glob, types
    from reprokit.bughunt import compile_implementation, load_compiled

    def shape(module):
        def code(c):
            return (c.co_code, c.co_names, tuple(code(x) if isinstance(x, types.CodeType) else x
                                                 for x in c.co_consts))
        return {k: code(v.__code__) for k, v in vars(module).items()
                if isinstance(v, types.FunctionType)}

    mine = shape(implementation)
    for path in glob.glob(os.path.join(ROOT, "**", "*.py"), recursive=True):
        if "planted bug" not in open(path).read().lower():
            continue  # the authors' code, the wheats
        assert shape(load_compiled(compile_implementation(path))) != mine, "a chaff"
'''},
}

HONEST: dict[str, str] = {
    "properties-and-comparisons": '''
def test_corruption_rate_position_and_seed(implementation):
    y = torch.arange(4000) % 10
    for p in (0.0, 0.3, 0.7, 1.0):
        z = implementation.corrupt_labels(y, p, seed=11)
        changed = (z != y).float()
        rate = changed.mean().item()
        assert abs(rate - 0.9 * p) < 0.04, f"p={p}: {rate:.3f} changed, expected {0.9 * p:.3f}"
        if 0 < p < 1:
            first, second = changed[:2000].mean().item(), changed[2000:].mean().item()
            assert abs(first - second) < 0.06, f"p={p}: halves changed {first:.2f} and {second:.2f}"
    torch.manual_seed(5)
    a = implementation.corrupt_labels(y, 0.5, seed=21)
    torch.manual_seed(6)
    assert torch.equal(a, implementation.corrupt_labels(y, 0.5, seed=21)), "same seed, other labels"
    assert not torch.equal(a, implementation.corrupt_labels(y, 0.5, seed=22)), "seed has no effect"


def test_test_split_keeps_true_labels(implementation):
    for p in (0.4, 1.0):
        data = implementation.make_data(p, seed=3, n_train=150)
        split = implementation.load_digits_split(3, n_train=150)
        assert torch.equal(data.y_test, split.y_test), f"p={p} changed the test labels"


def test_standardisation_uses_training_images(implementation):
    split = implementation.load_digits_split(seed=1, n_train=400)
    m = split.X_train.double().mean(0)
    assert m.abs().max().item() < 1e-3, "training features are not centred"
    s = split.X_train.double().std(0)
    assert ((s - 1).abs() < 1e-2)[s > 0.5].all(), "training features do not have unit spread"


def test_train_memorises_and_logs_honest_test_accuracy(implementation):
    data = implementation.make_data(1.0, seed=2, n_train=80)
    torch.manual_seed(0)
    model = implementation.MLP(hidden=(256,))
    hist = implementation.train(model, data, epochs=15, lr=1e-2, batch_size=40, seed=2)
    assert implementation.evaluate(model, data.X_train, data.y_train) == 1.0, "did not memorise"
    test_acc = implementation.evaluate(model, data.X_test, data.y_test)
    assert abs(hist["test_acc"][-1] - test_acc) < 1e-6, "logged test accuracy is not the test split's"


def test_evaluation_is_deterministic_with_dropout(implementation):
    data = implementation.make_data(0.0, seed=4, n_train=60)
    model = implementation.MLP(hidden=(128,), dropout=0.7)
    accs = {implementation.evaluate(model, data.X_test, data.y_test) for _ in range(3)}
    assert len(accs) == 1, f"evaluate gave {sorted(accs)} for one model"
    assert model.training, "evaluate did not restore train mode"


def test_repeated_runs_match_and_stale_gradients_do_not_matter(implementation):
    import copy

    data = implementation.make_data(0.5, seed=7, n_train=48)
    torch.manual_seed(1)
    base = implementation.MLP(hidden=(16,))
    runs = []
    for junk in (False, False, True):
        model = copy.deepcopy(base)
        if junk:
            for w in model.parameters():
                w.grad = torch.ones_like(w)
        implementation.train(model, data, epochs=2, lr=5e-3, batch_size=16, seed=7, log_test=False)
        runs.append(torch.cat([w.detach().flatten() for w in model.parameters()]))
    assert torch.equal(runs[0], runs[1]), "two identical runs ended with different weights"
    assert torch.allclose(runs[0], runs[2], atol=1e-6), "gradients left in .grad changed training"
''',
}


#: Attacks that read the implementations' API: written again for Ioffe & Szegedy's hunt
#: (``before``: not measured there, the hunt was born with the defences).
BATCHNORM_ATTACKS: dict[str, dict] = {
    "small-edit-of-the-authors-code": {"defence": "twin wheats", "before": None, "after": 0,
                                       "cell": '''
def test_not_a_small_edit_of_the_authors_code(implementation):
    # A chaff is the authors' code with a one-line edit; a correct alternative is a rewrite.
    # Compare names and constants of each function (and layer method) with the authors'.
    import types
    from authors import batchnorm

    def tokens(code):
        out = set(code.co_names) | set(code.co_varnames)
        for c in code.co_consts:
            if isinstance(c, types.CodeType):
                out |= tokens(c)
            elif not isinstance(c, str):
                out.add(repr(c))
        return out

    pairs = [(implementation.BatchNorm.forward, batchnorm.BatchNorm.forward),
             (implementation.BatchNorm.__init__, batchnorm.BatchNorm.__init__),
             (implementation.MLP.forward, batchnorm.MLP.forward),
             (implementation.train, batchnorm.train), (implementation.evaluate, batchnorm.evaluate)]
    for mine, theirs in pairs:
        if mine.__code__.co_code == theirs.__code__.co_code:
            continue
        a, b = tokens(mine.__code__), tokens(theirs.__code__)
        similarity = len(a & b) / len(a | b)
        assert similarity < 0.8, f"{mine.__name__} is a small edit of the authors' ({similarity:.2f})"
'''},
}

BATCHNORM_ATTACKS["recognise-chaffs-by-their-files"] = {
    # Zhang's version compares module-level functions only: BatchNorm's chaffs edit classes,
    # so there it fails the authors' code too (0/9). Comparing methods as well is the limit.
    "defence": "hidden files never in the sandbox (public chaffs are public)",
    "before": None, "after": 1, "cell": '''
import os
ROOT = os.getcwd()


def test_not_any_chaff_file_on_disk(implementation):
    # Compile every chaff file that can be found the way the grader does and compare the
    # bytecode of every function and method. Only the public chaffs are there at grading.
    import glob, types
    from reprokit.bughunt import compile_implementation, load_compiled

    def code(c):
        return (c.co_code, c.co_names, tuple(code(x) if isinstance(x, types.CodeType) else x
                                             for x in c.co_consts))

    def shape(module):
        out = {}
        for k, v in vars(module).items():
            if isinstance(v, types.FunctionType):
                out[k] = code(v.__code__)
            elif isinstance(v, type) and v.__module__ == module.__name__:
                for m, f in vars(v).items():
                    if isinstance(f, types.FunctionType):
                        out[f"{k}.{m}"] = code(f.__code__)
        return out

    mine = shape(implementation)
    for path in glob.glob(os.path.join(ROOT, "**", "*.py"), recursive=True):
        if "planted bug" not in open(path).read().lower():
            continue  # the authors' code, the wheats
        assert shape(load_compiled(compile_implementation(path))) != mine, "a chaff"
'''}

#: The honest suite written unlike the reference is the corpus's correct submission for
#: BatchNorm's level 4 (one text, graded there through both paths and here against the hunt).
BATCHNORM_HONEST: dict[str, str] = {
    "torch-as-the-oracle": runpy.run_path(str(
        Path(__file__).resolve().parents[2] / "fixtures" / "corpus" / "ioffe2015-batchnorm"
        / "04-validate" / "correct_compares_with_torch.py"))["MINE"],
}

#: The paper folder -> its rewritten attacks and honest suites; the rest are Zhang's, which
#: name no API.
_REWRITTEN = {"ioffe2015-batchnorm": (BATCHNORM_ATTACKS, BATCHNORM_HONEST)}


def attacks_for(paper: str) -> dict[str, dict]:
    """The attacks on ``paper``'s hunt (a folder name under ``assignments/``)."""
    if paper not in _REWRITTEN:
        return ATTACKS
    return {**ATTACKS, **_REWRITTEN[paper][0]}


def honest_for(paper: str) -> dict[str, str]:
    """The honest suites for ``paper``'s hunt: full marks expected."""
    return _REWRITTEN[paper][1] if paper in _REWRITTEN else HONEST
