"""A student's ``nn.Module`` class, graded in the grader's process through plain data.

A level that asks for a layer (a BatchNorm, an attention head) wants it graded by
invariants and by agreement with a reference, which need a module: call it, train it,
differentiate it. But the grader never holds the student's objects: in reprokit's sandbox
a class arrives as an opaque reference, and only plain data (numbers, arrays, tensors)
crosses the wire. So the work is split in two:

* in the submission's process, :func:`serve_module` builds the student's class, loads a
  state into it, runs a few forward passes (and, when asked, one backward pass) and answers
  with plain data: outputs, gradients, the state after the calls. The notebook exposes it
  as a function of one argument::

      def run_layer(request):          # given code; the grader calls it
          return serve_module(BatchNorm, request)

* in the grader, :class:`RemoteModule` is an ordinary ``nn.Module`` whose parameters and
  buffers are the grader's own tensors; its forward and backward ask ``run_layer``. Every
  reprokit invariant, ``torch.autograd.gradcheck`` and a comparison with torch's own layer
  then run on it as on any module, and each call can be observed
  (:func:`reprokit.audit.observe_call`) so that a layer that hands the work to a library
  (``forbid=``) fails with a clear message.

The grader's copy holds the truth about the state: each request sends the current
parameters and buffers, builds a fresh instance, loads them, and the buffers the student's
forward changed (BatchNorm's running statistics) come back into the grader's buffers. A
layer must therefore keep its state in parameters and registered buffers, as PyTorch asks.
Values that come back pass through :mod:`reprokit.plain`, so a reply cannot carry an object
of the student's making.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from reprokit.plain import UntrustedValue, plain

__all__ = ["RemoteModule", "serve_module"]


# ----------------------------------------------------------------- the submission's side


def serve_module(cls: Any, request: dict) -> dict:
    """Build ``cls(*request["args"], **request["kwargs"])``, run ``request["steps"]``; plain data back.

    ``request`` keys: ``args``, ``kwargs`` (the constructor's), ``dtype`` (``"float32"`` or
    ``"float64"``: the module is converted with ``.to(dtype)``), ``state`` (``{name:
    tensor}`` loaded into the parameters and buffers of those names, or None for a fresh
    instance) and ``steps``, each ``{"x": tensor, "training": bool, "grad_output": tensor or
    None}``: ``module.train(training)``, ``y = module(x)`` and, with a ``grad_output``, the
    gradients of ``sum(grad_output * y)`` with respect to ``x`` and every parameter.

    Returns ``{"parameters": [names], "buffers": [names], "steps": [{"output", "grad_input",
    "grad_parameters"}], "state": {name: tensor}}`` (the state after the last step).
    """
    args = list(request.get("args") or [])
    kwargs = dict(request.get("kwargs") or {})
    dtype = {"float32": torch.float32, "float64": torch.float64}[request.get("dtype", "float32")]
    module = cls(*args, **kwargs)
    if not isinstance(module, nn.Module):
        raise TypeError(f"{getattr(cls, '__name__', cls)}(...) built a {type(module).__name__}, "
                        "not a torch.nn.Module")
    module.to(dtype)
    params = dict(module.named_parameters())
    buffers = dict(module.named_buffers())
    state = request.get("state") or {}
    with torch.no_grad():
        for name, value in state.items():
            target = params.get(name, buffers.get(name))
            if target is None:
                raise KeyError(f"the layer has no parameter or buffer called {name!r} (it has "
                               f"{sorted(params) + sorted(buffers)})")
            value = torch.as_tensor(value)
            if tuple(value.shape) != tuple(target.shape):
                raise ValueError(f"{name!r} has shape {tuple(target.shape)}, expected "
                                 f"{tuple(value.shape)}")
            target.copy_(value.to(target.dtype))
    steps = []
    for step in request.get("steps") or []:
        module.train(bool(step.get("training", True)))
        x = torch.as_tensor(step["x"]).to(dtype)
        grad_output = step.get("grad_output")
        if grad_output is None:
            with torch.no_grad():
                y = module(x)
        else:  # autograd on, even when asked from inside a backward pass (where it is off)
            x = x.detach().requires_grad_(True)
            with torch.enable_grad():
                y = module(x)
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"forward() returned a {type(y).__name__}, expected a tensor")
        answer: dict[str, Any] = {"output": y.detach().clone()}
        if grad_output is not None:
            wrt = [x, *params.values()]
            go = torch.as_tensor(grad_output).to(y.dtype)
            if y.requires_grad:
                with torch.enable_grad():
                    grads = torch.autograd.grad(y, wrt, grad_outputs=go, allow_unused=True)
            else:  # the output does not depend on anything differentiable
                grads = (None,) * len(wrt)
            grads = [torch.zeros_like(t) if g is None else g.detach().clone() for t, g in zip(wrt, grads, strict=True)]
            answer["grad_input"] = grads[0]
            answer["grad_parameters"] = dict(zip(params, grads[1:], strict=True))
        steps.append(answer)
    return {
        "parameters": list(params),
        "buffers": list(buffers),
        "steps": steps,
        "state": {k: v.detach().clone() for k, v in {**params, **buffers}.items()},
    }


# ---------------------------------------------------------------------- the grader's side


def _tensor(x: Any, what: str) -> torch.Tensor:
    v = plain(x, what)
    if type(v) is not np.ndarray:
        raise UntrustedValue(f"{what}: expected a tensor, got {type(v).__name__}")
    return torch.from_numpy(v)


class _RemoteForward(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, module: RemoteModule, x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        state = module._state()
        training = module.training
        reply = module._request(state, [{"x": x.detach(), "training": training}])
        out = module._output(reply, x)
        module._take_buffers(reply)
        ctx.module, ctx.state, ctx.training = module, state, training
        ctx.save_for_backward(x)
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> Any:
        (x,) = ctx.saved_tensors
        module: RemoteModule = ctx.module
        reply = module._request(ctx.state, [{"x": x.detach(), "training": ctx.training,
                                              "grad_output": grad_out.detach()}])
        step = reply["steps"][0]
        grad_x = _tensor(step.get("grad_input"), "the gradient with respect to the input")
        grads = step.get("grad_parameters") or {}
        out = [grad_x.to(x.dtype).reshape(x.shape)]
        for name, p in module._parameters_by_name():
            g = _tensor(grads.get(name), f"the gradient with respect to {name!r}")
            out.append(g.to(p.dtype).reshape(p.shape))
        return (None, *out)


class RemoteModule(nn.Module):
    """The grader's stand-in for a student's module class, run through ``call``.

    ``call(request) -> reply`` is the notebook's function around :func:`serve_module` (a
    proxy under reprokit's sandbox, the function itself under ``otter run``); ``args`` and
    ``kwargs`` go to the student's constructor. The module's parameters and buffers (same
    names, initial values from a fresh instance) live here; ``forward`` and its backward
    run the student's code. ``eps`` and ``momentum`` given as keyword arguments read and
    write those constructor arguments, so a check that sets ``module.eps`` (as
    :func:`reprokit.invariants.check_parameter_scale_invariance` does) builds the student's
    layer with the new value.

    ``forbid`` (optional) is ``{"calls": {file suffix: [names]}, "ops": [ATen name parts],
    "message": str}``: every request is then observed (:func:`reprokit.audit.observe_call`)
    and one that calls a forbidden function or operator raises ``AssertionError`` with
    ``message`` followed by what was seen. ``seen`` accumulates everything observed.
    """

    def __init__(self, call: Any, *args: Any, forbid: dict | None = None, **kwargs: Any) -> None:
        super().__init__()
        self._call = call
        self._args = list(args)
        self._kwargs = dict(kwargs)
        self._forbid = forbid
        self.seen: list[str] = []
        self._names: dict[str, str] = {}  # local attribute -> the student's name
        reply = self._request(None, [], dtype="float32")
        names = plain(reply.get("parameters"), "parameter names")
        buffer_names = plain(reply.get("buffers"), "buffer names")
        state = reply.get("state") or {}
        for name in names:
            value = _tensor(state.get(name), f"parameter {name!r}")
            self.register_parameter(self._local(name), nn.Parameter(value.clone()))
        for name in buffer_names:
            value = _tensor(state.get(name), f"buffer {name!r}")
            self.register_buffer(self._local(name), value.clone())

    # -- the constructor's arguments that checks change
    @property
    def eps(self) -> float:
        if "eps" not in self._kwargs:
            raise AttributeError("eps")
        return float(self._kwargs["eps"])

    @eps.setter
    def eps(self, value: float) -> None:
        self._kwargs["eps"] = float(value)

    @property
    def momentum(self) -> float:
        if "momentum" not in self._kwargs:
            raise AttributeError("momentum")
        return float(self._kwargs["momentum"])

    @momentum.setter
    def momentum(self, value: float) -> None:
        self._kwargs["momentum"] = float(value)

    # -- plumbing
    def _local(self, name: str) -> str:
        if type(name) is not str or not name:
            raise UntrustedValue(f"a parameter or buffer name must be text, got {name!r}")
        local = name.replace(".", "__")
        self._names[local] = name
        return local

    def _parameters_by_name(self) -> list[tuple[str, nn.Parameter]]:
        return [(self._names[k], p) for k, p in self._parameters.items() if p is not None]

    def _state(self) -> dict[str, torch.Tensor]:
        items = {**self._parameters, **self._buffers}
        return {self._names[k]: v.detach().clone() for k, v in items.items() if v is not None}

    def _dtype(self) -> str:
        for t in [*self._parameters.values(), *self._buffers.values()]:
            if t is not None and t.dtype == torch.float64:
                return "float64"
        return "float32"

    def _request(self, state: dict | None, steps: list[dict], dtype: str | None = None) -> dict:
        request = {"args": self._args, "kwargs": self._kwargs, "dtype": dtype or self._dtype(),
                   "state": state, "steps": steps}
        if self._forbid is None:
            reply = self._call(request)
        else:
            from reprokit.audit import observe_call

            spec = self._forbid
            seen = observe_call(self._call, (request,), watch_calls=spec.get("calls"),
                                watch_ops=spec.get("ops") or ())
            found = seen.reached
            for f in found:
                if f not in self.seen:
                    self.seen.append(f)
            if found:
                raise AssertionError(f"{spec.get('message', 'forbidden calls')}: {', '.join(found)}")
            reply = seen.value
        if type(reply) is not dict:
            raise UntrustedValue(f"the layer's runner answered a {type(reply).__name__}, not a dict")
        return reply

    def _output(self, reply: dict, x: torch.Tensor) -> torch.Tensor:
        steps = reply.get("steps")
        if type(steps) is not list or len(steps) != 1 or type(steps[0]) is not dict:
            raise UntrustedValue("the layer's runner did not answer the step it was asked")
        return _tensor(steps[0].get("output"), "the layer's output").to(x.dtype)

    def _take_buffers(self, reply: dict) -> None:
        state = reply.get("state") or {}
        with torch.no_grad():
            for local, buf in self._buffers.items():
                if buf is None:
                    continue
                name = self._names[local]
                value = _tensor(state.get(name), f"buffer {name!r}")
                if tuple(value.shape) != tuple(buf.shape):
                    raise UntrustedValue(f"buffer {name!r} came back with shape "
                                         f"{tuple(value.shape)}, expected {tuple(buf.shape)}")
                buf.copy_(value.to(buf.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        params = [p for _, p in self._parameters_by_name()]
        return _RemoteForward.apply(self, x, *params)

    def __deepcopy__(self, memo: dict) -> RemoteModule:
        """A copy with its own parameters and buffers that asks the same ``call``."""
        import copy

        new = object.__new__(type(self))
        memo[id(self)] = new
        for key, value in self.__dict__.items():
            if key == "_call":
                new.__dict__[key] = value
            else:
                new.__dict__[key] = copy.deepcopy(value, memo)
        return new

    def extra_repr(self) -> str:
        shown = [repr(a) for a in self._args] + [f"{k}={v!r}" for k, v in self._kwargs.items()]
        return ", ".join(shown)
