"""Busy-machine detection against a real busy process (the `busy` fixture, tests/conftest.py).

What a busy machine does to a cell (an error, measured again) is tests/test_runner.py; the one-run-per-project
lock is tests/test_lock.py.
"""

import os
import time

import psutil
import pytest

from llmspec.machine.activity import BackgroundWatch, summarize, wait_until_quiet


def test_a_busy_process_is_measured_and_named(busy):
    with BackgroundWatch(lambda: {os.getpid()}, interval_s=0.5) as watch:
        time.sleep(1.0)
    found = watch.result
    assert found.mean_pct > 50  # a spinning loop holds most of a core, whatever else the machine does
    assert found.peak_pct >= found.mean_pct
    assert busy.pid in [p["pid"] for p in found.top]
    assert f"pid {busy.pid}" in found.busy_reason(25.0) and "the machine was busy" in found.busy_reason(25.0)


def test_the_measurements_own_processes_are_not_background(busy):
    """The llama-server under test is llmspec's child; here the busy loop stands in for it. Two watches over
    the same time, one of them told the loop is the measurement's own: only that one leaves the loop's CPU out.
    Whatever else the machine does shows in both, so this holds on a busy machine too."""
    spinner = psutil.Process(busy.pid)
    before = sum(spinner.cpu_times()[:2])
    with BackgroundWatch(lambda: {os.getpid()}, interval_s=0.5) as theirs, \
            BackgroundWatch(lambda: {os.getpid(), busy.pid}, interval_s=0.5) as ours:
        time.sleep(1.5)
    loop_pct = (sum(spinner.cpu_times()[:2]) - before) / ours.result.seconds * 100  # the loop's share of a core
    assert loop_pct > 0
    assert busy.pid not in [p["pid"] for p in ours.result.top]
    assert theirs.result.mean_pct - ours.result.mean_pct > loop_pct / 2  # the loop is taken out, not a quiet figure


def test_waiting_for_quiet_gives_up_after_the_bound_and_says_what_it_waits_for(busy):
    said = []
    t0 = time.perf_counter()
    found = wait_until_quiet(lambda: {os.getpid()}, 25.0, 1.0, said.append, window_s=0.5)
    assert found.mean_pct > 25 and time.perf_counter() - t0 < 6
    assert said and said[0].startswith("  waiting for a quiet machine: other processes used")


def test_summary_weighs_windows_by_their_length_and_names_only_real_load():
    found = summarize([(1.0, 0.1, 0.0), (3.0, 2.7, 0.3)], {7: ("build", 2.0), 8: ("idle", 0.01)}, [3.0, 2.5], 0.0,
                      set())
    assert found.mean_pct == pytest.approx(70.0)  # 2.8 CPU seconds over 4 s
    assert found.peak_pct == pytest.approx(90.0)
    assert found.steal_pct == pytest.approx(7.5)
    assert [p["pid"] for p in found.top] == [7] and found.min_available_gb == 2.5


def test_the_reason_says_the_hypervisors_share_apart_and_blames_no_process_for_it():
    """Steal is CPU time the host gave other virtual machines: it disturbs the figures like a neighbour,
    but no process here caused it, so the reason must not send the user looking for one."""
    stolen = summarize([(2.0, 0.8, 0.6)], {}, [3.0], 0.0, set())
    reason = stolen.busy_reason(25.0)
    assert "other processes used 40% of a core, 30% of it taken by the hypervisor" in reason
    assert "no single process stands out: short-lived processes or the kernel" in reason
    assert "hypervisor" not in summarize([(2.0, 0.8, 0.0)], {}, [3.0], 0.0, set()).busy_reason(25.0)
