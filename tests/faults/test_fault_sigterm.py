"""SIGTERM to doit while a stream is open (a logout, `systemctl stop`, a CI job cancelled): the server is
stopped within 5 s, none is left running, the cell finished before is kept and the next `doit` measures
only the interrupted one."""

import signal
import time

import pytest
from conftest import doit, executed_cells
from faultkit import CELL_B, in_second_cell, orphans_after, record, result_files, stop, two_cells

pytestmark = [pytest.mark.faults, pytest.mark.server]


def test_sigterm_mid_stream_stops_the_server_within_5_s_and_the_next_run_does_only_the_rest(tmp_path):
    root = two_cells(tmp_path)
    proc, log = in_second_cell(root)
    try:
        finished = result_files(root)
        assert len(finished) == 1  # smol-a's
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        orphans = orphans_after(root, 5.0)
        stopped_s = time.perf_counter() - t0
        assert orphans == 0, f"llama-server still running {stopped_s:.1f} s after SIGTERM"
        assert proc.wait(30) != 0
    finally:
        stop(proc)
    assert "Traceback" not in log.read_text()
    assert result_files(root) == finished  # kept as it was, and nothing half done of smol-b
    t0 = time.perf_counter()
    again = doit(root)
    recover_s = time.perf_counter() - t0
    assert executed_cells(again.stdout) == [CELL_B]
    lost = sum(1 for path, body in finished.items() if not path.exists() or path.read_bytes() != body)
    record("SIGTERM to doit mid-stream", lost, orphans, recover_s)
