"""Budgets count the CPU-seconds of a submission's own processes, so a grade does not depend
on how busy the machine is; graded torch code runs on a thread count that cannot
oversubscribe its cores, and that does not change the Zhang numbers."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch
from zygotes import scratch_zygote

from reprokit import cputime, sandbox

BURN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}:\n    pass\n"


@contextmanager
def burners(n: int) -> Iterator[None]:
    """``n`` processes that burn CPU beside the test, as on a busy machine."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True:\n    pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


@pytest.mark.parametrize("cgroup", [True, False], ids=["cgroup-or-proc", "proc"])
def test_meter_counts_a_process_trees_cpu_not_its_sleep(cgroup: bool, monkeypatch) -> None:
    if not cgroup:
        monkeypatch.setenv("REPROKIT_NO_CGROUP", "1")
    # a session leader that sleeps, and a child of it that burns 1.5 CPU-seconds
    code = ("import subprocess, sys, time\n"
            f"subprocess.run([sys.executable, '-c', {BURN.format(s=1.5)!r}])\n"
            "time.sleep(1.0)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    meter = cputime.CpuMeter(proc.pid)
    try:
        readings = []
        while proc.poll() is None:
            readings.append(meter.seconds())
            time.sleep(0.05)
        assert max(readings) >= 1.3, (meter.method, readings[-5:])
        assert max(readings) < 3.0, "sleeping was counted as CPU time"
        assert readings == sorted(readings), "the reading went backwards when a process ended"
    finally:
        proc.kill()
        proc.wait()
        meter.close()


zygote = scratch_zygote


def test_a_sleeping_notebook_is_stopped_by_the_wall_clock_net_and_told_so() -> None:
    with zygote(["import time\ntime.sleep(30)\n"]) as z:
        t0 = time.monotonic()
        with pytest.raises(sandbox.GradingTimeout) as e:
            z.execute(cpu_limit_s=20, wall_limit_s=2)
    assert time.monotonic() - t0 < 10
    assert "wall time" in str(e.value) and "waiting rather than computing" in str(e.value)


def test_a_busy_machine_does_not_time_out_a_notebook_within_its_cpu_budget() -> None:
    # 1.5 CPU-seconds against a budget of 3: with four burners on two cores this takes
    # several times longer in wall time, which a wall-clock budget of 3 s would fail
    with burners(4), zygote([BURN.format(s=1.5)]) as z:
        report = z.execute(cpu_limit_s=3)
    assert report.errors == []
    assert 1.3 <= report.cpu_s < 3.0
    assert report.duration_s >= report.cpu_s


def test_a_notebook_over_its_cpu_budget_is_stopped_with_the_limit_named() -> None:
    with zygote(["while True:\n    pass\n"]) as z, pytest.raises(sandbox.GradingTimeout) as e:
        z.execute(cpu_limit_s=2)
    assert "more than 2 CPU-seconds" in str(e.value)


def test_graded_torch_runs_on_the_graded_thread_count_whatever_the_notebook_sets() -> None:
    cells = ["import torch\ntorch.set_num_threads(8)\nthreads = torch.get_num_threads()\n"
             "def threads_now():\n    torch.set_num_threads(4)\n    return torch.get_num_threads()\n"]
    with zygote(cells) as z:
        z.execute(cpu_limit_s=30)
        with z.session(30) as s:
            values = s.lookup(["threads", "threads_now"])
            assert values["threads"] == sandbox.GRADED_THREADS
            assert values["threads_now"]() == sandbox.GRADED_THREADS


def test_cpu_limits_have_one_default_for_grade_and_regrade() -> None:
    from click.testing import CliRunner

    from reprokit.grading import TIMEOUT_HELP, grade_command, limits
    from reprokit.regrade import regrade_command

    assert limits(60) == (240.0, 120.0)
    assert limits(10) == (240.0, 60.0)
    runner = CliRunner()
    helps = [runner.invoke(cmd, ["--help"], terminal_width=400).output
             for cmd in (grade_command, regrade_command)]
    first_words = " ".join(TIMEOUT_HELP.split()[:6])
    assert all(first_words in " ".join(h.split()) for h in helps)


def _zhang_accuracies(threads: int) -> tuple[float, float, list[float]]:
    sys.path.insert(0, str(Path(__file__).parent))
    from test_zhang_authors import randlabels

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = randlabels.run_experiment(p=1.0, seed=0, n_train=300, epochs=4, hidden=(64, 64))
    finally:
        torch.set_num_threads(before)
    return out["train_acc"], out["test_acc"], out["history"]["loss"]


def test_zhang_numbers_are_bit_identical_on_one_and_two_threads() -> None:
    assert _zhang_accuracies(1) == _zhang_accuracies(2)
