"""llama-server killed mid-cell by the kernel's OOM killer (here: kill -9, which is what the OOM killer
sends): the cell is an error that says so with the peak memory seen, no server is left running, the cell
finished before is kept, the planner's memory evidence learns the peak (its pre-flight for that model, quant and
context needs at least that from then on) and the next `doit` measures the killed cell again."""

import re
import signal
import time

import pytest
from conftest import doit, executed_cells, llama_servers_under
from faultkit import CELL_B, in_second_cell, orphans_after, record, result_files, results, stop, two_cells

from llmspec.plan.planner import Plan
from llmspec.spec import load_spec

pytestmark = [pytest.mark.faults, pytest.mark.server]


def test_a_server_killed_mid_cell_is_an_error_naming_the_kill_and_its_peak_memory(tmp_path):
    root = two_cells(tmp_path)
    proc, log = in_second_cell(root)
    try:
        finished = result_files(root)
        (server,) = llama_servers_under(root)
        server.send_signal(signal.SIGKILL)
        assert proc.wait(300) != 0  # the run goes on to its end, and says a cell failed
    finally:
        stop(proc)
    orphans = orphans_after(root, 5.0)
    assert orphans == 0
    killed = results(root)["smol-b"]
    assert killed["status"] == "error"
    assert killed["reason"].startswith("the server was killed (out of memory?): SIGKILL, peak memory seen "), \
        killed["reason"]
    peak = float(re.search(r"peak memory seen ([\d.]+) GB", killed["reason"])[1])
    assert 0.05 < peak < 2  # SmolLM2 Q4_1 (98 MB of weights) at 1024 tokens of context
    learned = Plan(load_spec(root / "specs" / "t.toml")).evidence()
    assert learned.killed_at("smol-b", "Q4_1", 1024) == peak  # the context the spec gives the server
    assert learned.killed_at("smol-b", "Q4_1", 512) == 0.0 and learned.killed_at("smol-a", "Q4_1", 1024) == 0.0
    assert "Traceback" not in log.read_text()
    assert all(path.read_bytes() == body for path, body in finished.items())
    t0 = time.perf_counter()
    again = doit(root)
    recover_s = time.perf_counter() - t0
    assert executed_cells(again.stdout) == [CELL_B]
    assert results(root)["smol-b"]["status"] == "ok"
    record("llama-server killed (kill -9, as the OOM killer) mid-cell", 0, orphans, recover_s)
