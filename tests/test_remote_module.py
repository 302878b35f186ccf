"""A student's module class, graded through plain data: the grader's RemoteModule behaves like
the class itself (outputs, running statistics, gradients), here and through the sandbox, and
its observation names a layer that hands the work to torch."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from zygotes import scratch_zygote

from reprokit import invariants
from reprokit.audit import TORCH_NORM_OPS
from reprokit.remote_module import RemoteModule, serve_module

NOTEBOOK = '''
import torch
from torch import nn
from reprokit.remote_module import serve_module

class HandNorm(nn.Module):
    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x):
        if self.training:
            mean, var = x.mean(0), x.var(0, unbiased=False)
            with torch.no_grad():
                n = x.shape[0]
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(var * n / (n - 1), self.momentum)
        else:
            mean, var = self.running_mean, self.running_var
        return self.weight * (x - mean) / torch.sqrt(var + self.eps) + self.bias

class TorchNorm(nn.BatchNorm1d):
    pass

def run_hand(request):
    return serve_module(HandNorm, request)

def run_torch(request):
    return serve_module(TorchNorm, request)
'''

FORBID = {"ops": TORCH_NORM_OPS, "message": "the layer calls torch's batch norm"}


def _namespace() -> dict:
    ns: dict = {}
    exec(compile(NOTEBOOK, "/work/notebook/student_cell.py", "exec"), ns)  # noqa: S102
    return ns


def _agrees_with_torch(layer: nn.Module) -> None:
    """Three training steps and one eval step: outputs, running statistics and gradients."""
    ref = nn.BatchNorm1d(3, momentum=0.3)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in (layer, ref):
            m.weight.copy_(torch.tensor([1.5, -0.5, 2.0]))
            m.bias.copy_(torch.tensor([0.1, 0.2, -0.3]))
    for _ in range(3):
        x = torch.randn(5, 3, generator=g) * 4 + 1
        torch.testing.assert_close(layer(x), ref(x))
        torch.testing.assert_close(layer.running_var, ref.running_var)
        torch.testing.assert_close(layer.running_mean, ref.running_mean)
    x = torch.randn(6, 3, generator=g, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    w = torch.randn(6, 3, generator=g)
    (layer(x) * w).sum().backward()
    (ref(x_ref) * w).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(layer.weight.grad, ref.weight.grad)
    torch.testing.assert_close(layer.bias.grad, ref.bias.grad)
    layer.eval()
    ref.eval()
    torch.testing.assert_close(layer(x.detach()), ref(x.detach()))


def test_a_remote_module_behaves_like_the_class_it_runs():
    layer = RemoteModule(_namespace()["run_hand"], 3, momentum=0.3, forbid=FORBID)
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    assert [n for n, _ in layer.named_buffers()] == ["running_mean", "running_var"]
    _agrees_with_torch(layer)
    assert layer.seen == []


def test_reprokit_invariants_run_on_a_remote_module():
    run = _namespace()["run_hand"]
    g = torch.Generator().manual_seed(1)
    invariants.check_normalised(RemoteModule(run, 4), torch.randn(16, 4, generator=g) * 3 + 2)
    net = nn.Sequential(nn.Linear(5, 4, bias=False), RemoteModule(run, 4, eps=1e-5))
    invariants.check_parameter_scale_invariance(net, torch.randn(8, 5, generator=g),
                                                params=["0.weight"])
    layer64 = RemoteModule(run, 4).double()
    invariants.check_gradients(lambda x: layer64(x), torch.randn(6, 4, generator=g, dtype=torch.float64))
    with pytest.raises(invariants.InvariantError, match="batch independence"):
        invariants.check_batch_independence(RemoteModule(run, 4), torch.randn(6, 4, generator=g),
                                            train_mode=True)
    invariants.check_batch_independence(RemoteModule(run, 4), torch.randn(6, 4, generator=g),
                                        train_mode=False)


def test_a_layer_that_runs_torchs_batch_norm_is_named():
    layer = RemoteModule(_namespace()["run_torch"], 3, forbid=FORBID)
    with pytest.raises(AssertionError, match="calls torch's batch norm: torch's native_batch_norm"):
        layer(torch.randn(4, 3))
    assert layer.seen == ["torch's native_batch_norm"]


def test_serve_module_refuses_a_state_the_layer_cannot_hold():
    with pytest.raises(KeyError, match="gamma"):
        serve_module(_namespace()["HandNorm"], {"args": [2], "state": {"gamma": torch.ones(2)}})


@pytest.fixture(scope="module")
def zygote():
    with scratch_zygote([NOTEBOOK]) as z:
        assert z.execute(60).errors == []
        yield z


def test_through_the_sandbox_the_grader_sees_the_same_layer(zygote):
    with zygote.session(60) as s:
        names = s.lookup(["run_hand", "run_torch", "HandNorm"])
        assert repr(names["HandNorm"]).startswith("<")  # a class never crosses the wire
        _agrees_with_torch(RemoteModule(names["run_hand"], 3, momentum=0.3, forbid=FORBID))
        layer = RemoteModule(names["run_torch"], 3, forbid=FORBID)
        with pytest.raises(AssertionError, match="native_batch_norm"):
            layer(torch.randn(4, 3))


def test_a_zero_dimensional_tensor_keeps_its_shape_on_the_wire():
    from reprokit import wire

    for value in (torch.tensor(3), torch.zeros(2, 0), torch.ones(1)):
        assert wire.decode(wire.encode(value)).shape == value.shape
