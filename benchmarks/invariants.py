"""Wall time of each reprokit.invariants check at its defaults, on small MLP, conv and attention toys.

Run: ``python benchmarks/invariants.py [--repeats 5] [--skip-failing]``. Prints:

1. a table (median and slowest of the repeats, after one warm-up call each);
2. the one-off cost that torch charges the first time any optimiser is built in a
   process (it imports torch._dynamo), which reprokit's defaults no longer pay;
3. a failing hypothesis test under pytest, run two ways in fresh processes: as before
   issue 15 (hypothesis's explain phase on, reprokit's frames in the traceback:
   ``--fulltrace``) and with reprokit's defaults (explain off, ``__tracebackhide__``):
   seconds inside pytest, lines printed, and the line where the message starts.

Goals: every check 2 s or less on 2 cores, well under 1 s on a small model; a failing
test 5 s or less. The load average is printed: on a shared machine, read it first.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import nn
from torch.nn import functional as F

from reprokit import invariants as inv


class MLP(nn.Module):
    """Linear -> BatchNorm -> ReLU -> Dropout -> Linear, 4 -> 32 -> 3."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 32), nn.BatchNorm1d(32), nn.ReLU(),
                                 nn.Dropout(0.2), nn.Linear(32, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvNet(nn.Module):
    """Conv 1->8 (3x3) -> BatchNorm -> ReLU -> global average pool -> Linear, on 1x8x8 images."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.relu(self.bn(self.conv(x))).mean(dim=(2, 3)))


class CausalAttention(nn.Module):
    """One head of causal self-attention on (batch, T, 16), as in nanoGPT."""

    def __init__(self, d: int = 16) -> None:
        super().__init__()
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T, d = x.shape[-2:]
        q, k, v = self.qkv(x).split(d, dim=-1)
        att = (q @ k.transpose(-2, -1) / d**0.5).masked_fill(
            torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1), float("-inf"))
        return self.proj(att.softmax(-1) @ v)


def build(cls: Callable[[], nn.Module]) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return cls()


def cases() -> list[tuple[str, str, Callable[[], object]]]:
    """(check, toy, call) for every check at its defaults."""
    g = torch.Generator().manual_seed(0)
    x_mlp, y = torch.randn(8, 4, generator=g), torch.randint(0, 3, (8,), generator=g)
    x_img = torch.randn(8, 1, 8, 8, generator=g)
    mlp, conv, attn = build(MLP), build(ConvNet), build(CausalAttention)
    set_attn = build(lambda: nn.MultiheadAttention(16, 2, batch_first=True))

    def set_model(x: torch.Tensor) -> torch.Tensor:
        return set_attn(x, x, x, need_weights=False)[0]

    def step_for(model: nn.Module, x: torch.Tensor) -> Callable[[], float]:
        return inv.training_step(model, x, y, optimizer=torch.optim.Adam(model.parameters(), 0.05))

    def train3(model: nn.Module, x: torch.Tensor) -> None:
        step = inv.training_step(model, x, y)
        for _ in range(3):
            step()

    linear_bn = build(lambda: nn.Sequential(nn.Linear(4, 16, bias=False), nn.BatchNorm1d(16)))
    return [
        ("batch_independence", "MLP", lambda: inv.check_batch_independence(mlp)),
        ("batch_independence", "conv", lambda: inv.check_batch_independence(conv)),
        ("eval_deterministic", "MLP", lambda: inv.check_eval_deterministic(mlp)),
        ("eval_deterministic", "conv", lambda: inv.check_eval_deterministic(conv)),
        ("permutation_invariance", "attention + mean pool (set)",
         lambda: inv.check_permutation_invariance(lambda x: set_model(x).mean(1),
                                                  torch.randn(2, 8, 16, generator=g), dim=1)),
        ("parameter_scale_invariance", "conv, constant batch (eps re-run)",
         lambda: inv.check_parameter_scale_invariance(conv, torch.ones(8, 1, 8, 8),
                                                      params=["conv.weight"])),
        ("permutation_equivariance", "attention (set)",
         lambda: inv.check_permutation_equivariance(set_model, torch.randn(2, 8, 16, generator=g),
                                                    dim=1)),
        ("causal", "attention", lambda: inv.check_causal(attn)),
        ("normalised", "BatchNorm1d", lambda: inv.check_normalised(nn.BatchNorm1d(4))),
        ("normalised", "BatchNorm2d", lambda: inv.check_normalised(nn.BatchNorm2d(8))),
        ("scale_invariance", "BatchNorm1d", lambda: inv.check_scale_invariance(nn.BatchNorm1d(4).train())),
        ("parameter_scale_invariance", "Linear+BN",
         lambda: inv.check_parameter_scale_invariance(linear_bn)),
        ("parameter_scale_invariance", "conv", lambda: inv.check_parameter_scale_invariance(
            conv, params=["conv.weight"])),
        ("finite", "MLP", lambda: inv.check_finite(mlp)),
        ("probabilities", "MLP+softmax",
         lambda: inv.check_probabilities(lambda x: mlp.eval()(x).softmax(-1), x_mlp)),
        ("gradients", "MLP", lambda: inv.check_gradients(mlp)),
        ("gradients", "conv", lambda: inv.check_gradients(conv)),
        ("gradients", "attention", lambda: inv.check_gradients(attn)),
        ("state_dict_roundtrip", "MLP", lambda: inv.check_state_dict_roundtrip(mlp, MLP)),
        ("state_dict_roundtrip", "conv", lambda: inv.check_state_dict_roundtrip(conv, ConvNet)),
        ("deterministic", "MLP (3 SGD steps)",
         lambda: inv.check_deterministic(MLP, lambda m: train3(m, x_mlp), x_mlp)),
        ("deterministic", "conv (3 SGD steps)",
         lambda: inv.check_deterministic(ConvNet, lambda m: train3(m, x_img), x_img)),
        ("parameters_update", "MLP", lambda: inv.check_parameters_update(
            (m := build(MLP)), inv.training_step(m, x_mlp, y))),
        ("loss_decreases", "MLP (5 steps)", lambda: inv.check_loss_decreases(
            step_for(build(MLP), x_mlp))),
        ("can_overfit", "MLP (Adam, <=300 steps)", lambda: inv.check_can_overfit(
            step_for(build(lambda: nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 3))),
                     x_mlp))),
        ("can_overfit", "conv (Adam, <=300 steps)", lambda: inv.check_can_overfit(
            step_for(build(ConvNet), x_img), target_loss=0.1)),
    ]


def optimizer_import_cost() -> float:
    """Seconds a fresh process spends building its first optimiser (torch imports _dynamo)."""
    code = ("import time, torch; p = [torch.nn.Parameter(torch.zeros(1))]; "
            "t = time.perf_counter(); torch.optim.SGD(p, lr=0.1); print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


FAILING_TEST = textwrap.dedent("""
    import torch
    from hypothesis import given
    from torch import nn
    from reprokit.invariants import check_batch_independence
    from reprokit.strategies import float_tensors


    class TrainCentred(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            h = self.fc(x)
            return h - h.mean(0) if self.training else h


    @given(float_tensors(shape=(4, 4)))
    def test_train_centred(x):
        check_batch_independence(TrainCentred(), x)
""")

EXPLAIN_PROFILE = textwrap.dedent("""
    import os

    from hypothesis import Phase, settings
    from reprokit import invariants
    from reprokit.seeding import register_hypothesis_profiles

    register_hypothesis_profiles()
    settings.register_profile("explain-on", settings.get_profile("reprokit-dev"),
                              phases=list(Phase))
    if os.environ.get("SHOW_REPROKIT_FRAMES"):  # as before issue 15
        invariants.__tracebackhide__ = False
""")


def failing_test_costs() -> list[tuple[str, float, int, int]]:
    """(setting, seconds inside pytest, lines printed, line of the message) for FAILING_TEST.

    Each setting runs in a fresh folder, so none replays another's shrunk example from
    hypothesis's example database.
    """
    rows = []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(Path(__file__).resolve().parents[1] / "src"), os.environ.get("PYTHONPATH", "")]))
    for label, extra, show in (
        ("explain phase on, reprokit's frames shown (as before)",
         ["--hypothesis-profile=explain-on"], "1"),
        ("explain phase on, frames hidden", ["--hypothesis-profile=explain-on"], ""),
        ("reprokit defaults (explain off, frames hidden)", [], ""),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            Path(tmp, "test_failing.py").write_text(FAILING_TEST)
            Path(tmp, "conftest.py").write_text(EXPLAIN_PROFILE)
            out = subprocess.run(
                [sys.executable, "-m", "pytest", "test_failing.py", "-p", "no:cacheprovider",
                 "-W", "ignore::DeprecationWarning", *extra],
                cwd=tmp, env=dict(env, SHOW_REPROKIT_FRAMES=show), capture_output=True,
                text=True).stdout
        lines = out.splitlines()
        seconds = re.search(r"in ([0-9.]+)s", lines[-1] if lines else "")
        first = next((k + 1 for k, line in enumerate(lines) if "violated:" in line), -1)
        rows.append((label, float(seconds.group(1)) if seconds else float("nan"),
                     len(lines), first))
    return rows


def load() -> str:
    """The 1-minute load average and the core count, to read the timings against."""
    try:
        return f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"
    except OSError:
        return f"{os.cpu_count()} cores"


def main() -> None:
    """Time every case and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per check (default 5)")
    parser.add_argument("--skip-failing", action="store_true",
                        help="skip the failing-test comparison (two pytest subprocesses)")
    args = parser.parse_args()
    print(f"before: {load()}")
    table = Table(title=f"reprokit.invariants at defaults (torch {torch.__version__}, "
                        f"{torch.get_num_threads()} threads, median of {args.repeats})")
    for column in ("check", "toy model", "first call ms", "median ms", "max ms"):
        table.add_column(column, justify="left" if column in ("check", "toy model") else "right")
    torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)  # pay torch's one-off import here
    for name, toy, call in cases():
        t0 = time.perf_counter()
        call()
        first = time.perf_counter() - t0
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        table.add_row(name, toy, f"{first * 1e3:.1f}", f"{statistics.median(times) * 1e3:.1f}",
                      f"{max(times) * 1e3:.1f}")
    console = Console(width=110)
    console.print(table)
    console.print(f"one-off: the first optimiser built in a fresh process costs "
                  f"{optimizer_import_cost():.2f} s (torch imports torch._dynamo); not included above, "
                  "and not paid by reprokit's default training_step / check_deterministic")
    if not args.skip_failing:
        failing = Table(title="a failing hypothesis test (train-mode-only batch mixing) under pytest")
        for column in ("setting", "s inside pytest", "lines printed", "message at line"):
            failing.add_column(column, justify="left" if column == "setting" else "right")
        for label, seconds, lines, first in failing_test_costs():
            failing.add_row(label, f"{seconds:.2f}", str(lines), str(first))
        console.print(failing)
    console.print(f"after: {load()}")


if __name__ == "__main__":
    main()
