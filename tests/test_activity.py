"""Busy-machine detection against a real busy process, and the one-run-per-project lock."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import SMOL_MODEL, doit, doit_until_first_request, executed_cells, llama_servers_under

from llmspec.machine.activity import BackgroundWatch, summarize, wait_until_quiet

BUSY = [sys.executable, "-c", "while True: pass"]


@pytest.fixture
def busy():
    """One CPU-bound process that is nobody's measurement: a browser tab, a build, a neighbour."""
    proc = subprocess.Popen(BUSY, start_new_session=True)
    time.sleep(0.3)
    yield proc
    proc.kill()
    proc.wait()


def test_a_busy_process_is_measured_and_named(busy):
    with BackgroundWatch(lambda: {os.getpid()}, interval_s=0.5) as watch:
        time.sleep(2.0)
    found = watch.result
    assert found.mean_pct > 50  # a spinning loop holds most of a core, whatever else the machine does
    assert found.peak_pct >= found.mean_pct
    assert busy.pid in [p["pid"] for p in found.top]
    assert f"pid {busy.pid}" in found.busy_reason(25.0) and "the machine was busy" in found.busy_reason(25.0)


def test_the_measurements_own_processes_are_not_background(busy):
    """The llama-server under test is llmspec's child; here the busy loop stands in for it."""
    with BackgroundWatch(lambda: {os.getpid(), busy.pid}, interval_s=0.5) as watch:
        time.sleep(1.5)
    assert busy.pid not in [p["pid"] for p in watch.result.top]
    assert watch.result.mean_pct < 50


def test_waiting_for_quiet_gives_up_after_the_bound_and_says_what_it_waits_for(busy):
    said = []
    t0 = time.perf_counter()
    found = wait_until_quiet(lambda: {os.getpid()}, 25.0, 2.0, said.append, window_s=0.5)
    assert found.mean_pct > 25 and time.perf_counter() - t0 < 6
    assert said and said[0].startswith("  waiting for a quiet machine: other processes use")


def test_summary_weighs_windows_by_their_length_and_names_only_real_load():
    found = summarize([(1.0, 0.1, 0.0), (3.0, 2.7, 0.3)], {7: ("build", 2.0), 8: ("idle", 0.01)}, [3.0, 2.5], 0.0,
                      set())
    assert found.mean_pct == pytest.approx(70.0)  # 2.8 CPU seconds over 4 s
    assert found.peak_pct == pytest.approx(90.0)
    assert found.steal_pct == pytest.approx(7.5)
    assert [p["pid"] for p in found.top] == [7] and found.min_available_gb == 2.5


SPEC = """
[server]
ctx_size = 1024

[limits]
quiet_wait_s = 2

[profiles.interactive]
requests = 3
max_requests = 3  # the interval is not what this test is about: keep it short
max_tokens = 16
""" + SMOL_MODEL




@pytest.mark.server
def test_a_cell_measured_beside_a_busy_process_is_an_error_and_is_measured_again(project, busy):
    project(SPEC)
    root = project.root
    first = doit(root, check=False)
    (path,) = (root / "build" / "results").glob("*/*/*/*/interactive.json")
    result = json.loads(path.read_text())
    assert result["status"] == "error", result["reason"]
    assert f"pid {busy.pid}" in result["reason"] and "busy" in result["reason"]
    assert first.returncode != 0
    busy.kill()
    busy.wait()
    again = doit(root)
    assert executed_cells(again.stdout) == ["cell:t:SmolLM2-135M-Instruct@Q4_1:interactive"]
    result = json.loads(path.read_text())
    assert result["status"] == "ok", result["reason"]
    assert result["metrics"]["background_cpu_pct"] <= 25 and "background" in result


@pytest.mark.server
def test_a_second_run_on_the_project_says_who_holds_it_and_starts_nothing(project):
    project(SPEC.replace("max_tokens = 16", "max_tokens = 200"))
    root = project.root
    first, log = doit_until_first_request(root)
    try:
        second = doit(root, check=False)
        assert second.returncode == 2
        assert "Traceback" not in second.stderr
        line = second.stderr.strip().splitlines()[-1]
        assert line.startswith("llmspec: another run holds this project (doit") and f"pid {first.pid}" in line
        assert len(llama_servers_under(root)) == 1  # only the first run's
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(60)
    assert executed_cells(doit(root).stdout) == ["cell:t:SmolLM2-135M-Instruct@Q4_1:interactive"]  # lock released
