"""A student function's side effects, seen the same way in this process and in the sandbox;
multiple-choice answers read the same way at every level."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from zygotes import scratch_zygote

from reprokit.audit import observe_call
from reprokit.plain import UntrustedValue, as_choice, plain, short_repr

NOTEBOOK = '''
import random
import numpy as np
import torch

def clean(n):
    g = torch.Generator().manual_seed(n)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(n)
        torch.rand(3)
    return torch.randperm(n, generator=g)

def moves_torch(n):
    torch.manual_seed(n)
    return torch.randperm(n)

def moves_numpy(n):
    return float(np.random.rand())

def moves_random(n):
    return random.random()

def _helper(x):
    return x + 1

def calls_helper(n):
    return _helper(n)

def softmaxes(n):
    return torch.ones(n).softmax(0).sum().item() + torch.softmax(torch.ones(n), 0).sum().item()

class Net(torch.nn.Module):
    def forward(self, x):
        return x * 2

def feeds(n):
    net = Net()
    for batch in torch.arange(n, dtype=torch.float32).split(2):
        net(batch)
    with torch.no_grad():
        net.eval()(torch.zeros(1))
    return n

def opens_file(path):
    with open(path) as f:
        return f.read()

def torch_batch_norm(n):
    x = torch.arange(2.0 * n).reshape(n, 2).requires_grad_(True)
    torch.nn.BatchNorm1d(2)(x).pow(2).sum().backward()
    return float(x.grad.abs().sum())

def aten_batch_norm(n):
    x = torch.arange(2.0 * n).reshape(n, 2)
    return float(torch.ops.aten.native_batch_norm.default(x, None, None, None, None, True, 0.1,
                                                          1e-5)[0].sum())

def transposed_layer_norm(n):
    x = torch.arange(2.0 * n).reshape(n, 2)
    return float(torch.nn.functional.layer_norm(x.T, (n,)).sum())

def hand_batch_norm(n):
    x = torch.arange(2.0 * n).reshape(n, 2).requires_grad_(True)
    y = (x - x.mean(0)) / torch.sqrt(x.var(0, unbiased=False) + 1e-5)
    y.pow(2).sum().backward()
    return float(x.grad.abs().sum())
'''


def _namespace() -> dict:
    ns: dict = {}
    exec(compile(NOTEBOOK, "/work/notebook/student_cell.py", "exec"), ns)  # noqa: S102
    return ns


CASES = [
    ("clean", (5,), {}, ()),
    ("moves_torch", (5,), {}, ("torch",)),
    ("moves_numpy", (5,), {}, ("numpy",)),
    ("moves_random", (5,), {}, ("random",)),
]


@pytest.mark.parametrize(("name", "args", "kwargs", "changed"), CASES)
def test_observe_call_names_the_global_generators_a_function_moved(name, args, kwargs, changed):
    obs = observe_call(_namespace()[name], args, kwargs)
    assert obs.rng_changed == changed


def test_observe_call_records_watched_calls_however_the_function_was_reached():
    ns = _namespace()
    obs = observe_call(ns["calls_helper"], (1,), watch_calls={"student_cell.py": ["_helper"]})
    assert obs.value == 2 and obs.calls == ("student_cell.py:_helper",)
    assert observe_call(ns["clean"], (3,), watch_calls={"student_cell.py": ["_helper"]}).calls == ()


def test_observe_call_counts_builtin_calls_by_name():
    obs = observe_call(_namespace()["softmaxes"], (4,), watch_c_calls=["softmax", "randperm"])
    assert obs.c_calls == {"softmax": 2}


def test_observe_call_captures_the_arguments_of_every_call_of_a_watched_function():
    obs = observe_call(_namespace()["feeds"], (5,), capture_args={"student_cell.py": ["Net.forward"]})
    assert [c["args"]["x"].tolist() for c in obs.captured] == [[0, 1], [2, 3], [4], [0]]
    assert [(c["training"], c["grad"]) for c in obs.captured] == [(True, True)] * 3 + [(False, False)]


def test_observe_call_records_watched_files_opened(tmp_path: Path):
    data = tmp_path / "digits.csv"
    data.write_text("1,2\n")
    obs = observe_call(_namespace()["opens_file"], (str(data),), watch_opens=["digits.csv"])
    assert obs.opened == (str(data),)
    assert observe_call(_namespace()["opens_file"], (str(data),)).opened == ()


def test_observe_call_lets_the_students_exception_through_and_removes_its_observers():
    import sys

    def boom():
        raise ValueError("student bug")

    before = sys.getprofile()
    with pytest.raises(ValueError, match="student bug"):
        observe_call(boom, watch_calls={"x.py": ["*"]})
    assert sys.getprofile() is before


NORM_CASES = [
    ("torch_batch_norm", {"native_batch_norm": 1, "native_batch_norm_backward": 1}),
    ("aten_batch_norm", {"native_batch_norm": 1}),
    ("transposed_layer_norm", {"native_layer_norm": 1}),
    ("hand_batch_norm", {}),
]


@pytest.mark.parametrize(("name", "ops"), NORM_CASES)
def test_observe_call_sees_torchs_normalisation_however_it_is_reached(name, ops):
    from reprokit.audit import TORCH_NORM_OPS

    obs = observe_call(_namespace()[name], (4,), watch_ops=TORCH_NORM_OPS)
    assert obs.ops == ops
    assert observe_call(_namespace()[name], (4,)).ops == {}  # nothing watched, nothing counted


@pytest.fixture(scope="module")
def zygote():
    with scratch_zygote([NOTEBOOK]) as z:
        assert z.execute(60).errors == []
        yield z


@pytest.mark.parametrize(("name", "args", "kwargs", "changed"), CASES)
def test_observe_call_in_the_sandbox_sees_what_the_same_call_does_here(zygote, name, args,
                                                                       kwargs, changed):
    here = observe_call(_namespace()[name], args, kwargs, watch_c_calls=["randperm"])
    with zygote.session(30) as s:
        remote = s.lookup([name])[name]
        there = observe_call(remote, args, kwargs, watch_c_calls=["randperm"])
    assert there.rng_changed == here.rng_changed == changed
    assert there.c_calls == here.c_calls
    if name == "clean":
        assert plain(there.value).tolist() == plain(here.value).tolist()
    spec = {"capture_args": {"": ["Net.forward"]}}  # "": whatever file IPython names the cell
    with zygote.session(30) as s:
        remote = observe_call(s.lookup(["feeds"])["feeds"], (5,), **spec).captured
    local = observe_call(_namespace()["feeds"], (5,), **spec).captured
    assert [(c["args"]["x"].tolist(), c["training"], c["grad"]) for c in remote] == \
        [(c["args"]["x"].tolist(), c["training"], c["grad"]) for c in local]
    with zygote.session(30) as s:
        for norm, ops in NORM_CASES:
            assert observe_call(s.lookup([norm])[norm], (4,), watch_ops=["_norm"]).ops == ops
    # the grader's own generators were never touched by the remote call
    state = torch.get_rng_state()
    with zygote.session(30) as s:
        observe_call(s.lookup(["moves_torch"])["moves_torch"], (3,))
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("answer", ["b", "B", " b ", "(b)", "b)", "'b'", '"B"', "[b]", "b.",
                                    "Option B"])
def test_as_choice_reads_a_letter_whatever_its_case_blanks_quotes_or_brackets(answer):
    assert as_choice(answer, "q3_answer") == "b"


@pytest.mark.parametrize("answer", ["e", "bc", "", "the answer is b", 2, None, ["b"]])
def test_as_choice_refuses_anything_but_one_offered_letter_and_names_the_options(answer):
    with pytest.raises(UntrustedValue, match='"a", "b", "c" or "d"'):
        as_choice(answer, "q3_answer")


def test_a_placeholder_answer_is_named_as_such_not_as_a_python_type():
    with pytest.raises(UntrustedValue, match=r"is the answer still `\.\.\.`\?"):
        as_choice(..., "q3_answer")
    with pytest.raises(UntrustedValue, match=r"is the answer still `\.\.\.`\?") as info:
        plain(..., "results")
    assert "ellipsis" not in str(info.value)


def test_short_repr_keeps_the_closing_quote():
    text = short_repr("B" * 500, limit=20)
    assert text.startswith("'BBB") and "'" in text[1:] and text.endswith("...")
    assert short_repr("B") == "'B'"
    assert as_choice("B", "q") == "b"
    with pytest.raises(UntrustedValue) as info:
        as_choice("Bz", "q")
    assert str(info.value).endswith("got 'Bz'")


_WATCHED_SOURCE = '''
def normalise(x, eps=1e-5):
    """Long enough to be worth copying: a whole computation, not a one-liner."""
    if x.dim() != 2:
        raise ValueError("expected (batch, features), got " + str(tuple(x.shape)))
    m = x.shape[0]
    mu = x.sum(dim=0) / m
    var = ((x - mu) ** 2).sum(dim=0) / m
    x_hat = (x - mu) / torch.sqrt(var + eps)
    scale = torch.ones(x.shape[1])
    shift = torch.zeros(x.shape[1])
    out = scale * x_hat + shift
    out = out.reshape(m, -1).contiguous()
    if not torch.isfinite(out).all():
        raise FloatingPointError("normalisation gave a value that is not finite")
    return out
'''


def test_a_recompiled_copy_of_a_watched_function_is_recorded_as_a_call(tmp_path, monkeypatch):
    import inspect

    from reprokit.audit import observe_call

    pkg = tmp_path / "authorsx"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "layer.py").write_text("import torch\n" + _WATCHED_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    from authorsx import layer as authors_layer

    ns = {"torch": torch}
    exec(compile(inspect.getsource(authors_layer.normalise), "my_own.py", "exec"), ns)
    copied = ns["normalise"]
    x = torch.randn(6, 3)
    watch = {"authorsx/layer.py": ["normalise"]}
    seen = observe_call(copied, (x,), watch_calls=watch)
    assert seen.calls == ("authorsx/layer.py:normalise (a copy)",)
    # renaming every local does not hide it; an own implementation is not a copy
    renamed = _WATCHED_SOURCE.replace("x_hat", "z").replace("mu", "mean").replace("var", "v")
    exec(compile(renamed, "renamed.py", "exec"), ns)
    assert observe_call(ns["normalise"], (x,), watch_calls=watch).calls == (
        "authorsx/layer.py:normalise (a copy)",)

    def own(x):
        centred = x - x.mean(dim=0)
        return centred / torch.sqrt(centred.pow(2).mean(dim=0) + 1e-5)

    assert observe_call(own, (x,), watch_calls=watch).calls == ()


def test_a_thread_started_while_torch_ops_are_watched_is_recorded(tmp_path):
    import threading

    import torch.nn.functional as F

    from reprokit.audit import TORCH_NORM_OPS, UNWATCHED_THREAD, observe_call

    def in_a_thread(x):
        out = {}
        t = threading.Thread(target=lambda: out.update(y=F.batch_norm(
            x, None, None, training=True)))
        t.start()
        t.join()
        return out["y"]

    seen = observe_call(in_a_thread, (torch.randn(4, 3),), watch_ops=TORCH_NORM_OPS)
    assert not any("batch_norm" in op for op in seen.ops)  # the dispatch mode cannot see it ...
    assert seen.ops.get(UNWATCHED_THREAD) == 1  # ... so the thread itself is recorded
    assert f"torch's {UNWATCHED_THREAD}" in seen.reached
    plain = observe_call(lambda x: x * 2, (torch.randn(4, 3),), watch_ops=TORCH_NORM_OPS)
    assert plain.ops == {}
