"""The machine turns busy in the middle of a cell (a backup starts, a browser tab spins): the cell stops
measuring once the load has lasted `limits.quiet_wait_s`, instead of measuring to its end figures that are
no longer this model's, and is an error naming the process; the next run measures it again."""

import json
import subprocess
import sys
import time

import pytest
from conftest import doit, executed_cells
from faultkit import CELL_B, in_second_cell, orphans_after, record, stop, two_cells

pytestmark = [pytest.mark.faults, pytest.mark.server]

QUIET_WAIT_S = 3


def test_a_machine_that_turns_busy_mid_cell_stops_the_cell_within_quiet_wait_s(tmp_path):
    # 3 answers of up to 400 tokens: on a quiet machine about 10 s, on a busy one far longer.
    root = two_cells(tmp_path, tokens=400, quiet=QUIET_WAIT_S)
    proc, log = in_second_cell(root)
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    t0 = time.perf_counter()
    try:
        while "smol-b@Q4_1:interactive: ERROR" not in log.read_text() and proc.poll() is None:
            time.sleep(0.05)
        stopped_s = time.perf_counter() - t0
        proc.wait(120)
    finally:
        busy.kill()
        busy.wait()
        stop(proc)
    (path,) = (root / "build" / "results").glob("*/t/smol-b/Q4_1/interactive.json")
    result = json.loads(path.read_text())
    assert result["status"] == "error"
    assert result["reason"].startswith("the machine turned busy mid-cell and stayed busy for "), result["reason"]
    assert f"(limits.quiet_wait_s = {QUIET_WAIT_S})" in result["reason"] and f"pid {busy.pid}" in result["reason"]
    # Stopped once the load had lasted quiet_wait_s (sampled once a second, so up to a second or two more),
    # not at the cell's end: generous bounds, as the machine may be shared.
    assert stopped_s < QUIET_WAIT_S + 10, f"stopped {stopped_s:.1f} s after the load began"
    orphans = orphans_after(root, 5.0)
    assert orphans == 0
    t1 = time.perf_counter()
    again = doit(root)
    recover_s = time.perf_counter() - t1
    assert executed_cells(again.stdout) == [CELL_B]
    assert json.loads(path.read_text())["status"] == "ok"
    record("the machine turns busy mid-cell", 0, orphans, recover_s)
