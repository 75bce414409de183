"""doit itself killed with kill -9 mid-stream (the OOM killer chose it, a terminal closed hard): its
llama-server dies with it, the finished cell is kept, and the next `doit` takes over the project's lock with
a line saying so and measures only the interrupted cell."""

import time

import pytest
from conftest import doit, executed_cells
from faultkit import CELL_B, in_second_cell, orphans_after, record, result_files, two_cells

pytestmark = [pytest.mark.faults, pytest.mark.server]


def test_kill_9_of_doit_leaves_no_server_and_the_next_run_takes_over_the_lock(tmp_path):
    root = two_cells(tmp_path)
    proc, _ = in_second_cell(root)
    finished = result_files(root)
    proc.kill()
    proc.wait(30)
    orphans = orphans_after(root, 5.0)  # PR_SET_PDEATHSIG: the kernel stops it with its parent
    assert orphans == 0
    assert result_files(root) == finished
    t0 = time.perf_counter()
    again = doit(root)
    recover_s = time.perf_counter() - t0
    (line,) = [x for x in again.stderr.splitlines() if "taking over" in x]
    assert line.startswith("llmspec: taking over this project from doit ") and f", pid {proc.pid}, started " in line
    assert executed_cells(again.stdout) == [CELL_B]
    lost = sum(1 for path, body in finished.items() if path.read_bytes() != body)
    record("kill -9 of doit mid-stream (a stale project lock)", lost, orphans, recover_s)
