"""The system clock steps during a cell (NTP correcting a drifted clock). Simulated per process tree, since
stepping this machine's clock would step every other program's too: doit runs with tests/faults/clockstep.c
preloaded (built here with the C compiler `make` needs anyway), whose wall clock jumps by the seconds written to
a file while the monotonic clock runs on, exactly what a step does. The wall clock jumps a day ahead during the
first cell and to an hour behind during the second. Every duration llmspec reports comes from a monotonic clock:
no negative or absurd figure in the results or in the live progress file, and both cells are ok."""

import json
import shutil
import subprocess
import time

import pytest
from conftest import executed_cells
from faultkit import CELL_A, CELL_B, orphans_after, record, results, start_doit, stop, two_cells, wait_for

pytestmark = [pytest.mark.faults, pytest.mark.server]

HERE = __import__("pathlib").Path(__file__).parent


@pytest.fixture
def clockstep(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the clock-step library (make setup needs one too)")
    lib = tmp_path / "clockstep.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(lib), str(HERE / "clockstep.c"), "-ldl"], check=True)
    return lib


def durations(found: dict, where: str = "") -> list[tuple[str, float]]:
    """Every number under a key that names a time in seconds or ms (`ttft_s`, `prompt_ms`; not a rate such as
    `tokens_per_s`), anywhere in a result."""
    out = []
    items = found.items() if isinstance(found, dict) else enumerate(found) if isinstance(found, list) else []
    for key, value in items:
        name = f"{where}.{key}"
        if isinstance(value, (dict, list)):
            out += durations(value, name)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and str(key).endswith(("_s", "_ms")) \
                and "_per_" not in str(key):
            out.append((name, value / 1000 if str(key).endswith("_ms") else value))
    return out


def test_a_clock_step_mid_cell_leaves_no_negative_or_absurd_duration(tmp_path, clockstep):
    root = two_cells(tmp_path / "p", tokens=64)
    step = root / "clock-step"
    step.write_text("0")
    t0 = time.perf_counter()
    proc, log = start_doit(root, env={"LD_PRELOAD": str(clockstep), "CLOCKSTEP_FILE": str(step)})
    try:
        wait_for(proc, log, "smol-a@Q4_1 interactive: request 1/")
        step.write_text("86400")  # a day ahead
        wait_for(proc, log, "smol-b@Q4_1 interactive: request 1/")
        step.write_text("-3600")  # then back, to an hour behind
        assert proc.wait(600) == 0, log.read_text()
    finally:
        stop(proc)
    took_s = time.perf_counter() - t0
    out = log.read_text()
    assert "Traceback" not in out and executed_cells(out) == [CELL_A, CELL_B]
    progress = json.loads((root / "build" / "run" / "progress.json").read_text())
    assert abs(progress["updated"] - (time.time() - 3600)) < 120  # the run's wall clock really stepped
    found = results(root)
    assert {name: r["status"] for name, r in found.items()} == {"smol-a": "ok", "smol-b": "ok"}
    figures = [(f"{name}{where}", v) for name, r in found.items() for where, v in durations(r)]
    assert len(figures) > 20 and any(where.endswith(".duration_s") for where, _ in figures)
    assert [(where, v) for where, v in figures if not 0 <= v <= took_s] == []  # none negative, none beyond the run
    points = progress["current"]["requests"] + progress["current"]["vitals"]  # the dashboard's chart of smol-b
    assert points and [p["t"] for p in points if not 0 <= p["t"] <= took_s] == []
    orphans = orphans_after(root, 5.0)
    assert orphans == 0
    record("the system clock steps during a cell (a day ahead, then an hour back; simulated per process by an "
           "LD_PRELOAD clock)", 0, orphans, 0.0)
