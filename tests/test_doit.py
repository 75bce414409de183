"""`doit` end to end on the real server: cells measured once, reruns incremental, reports rebuilt.

One module-scoped project is measured once and then edited step by step, the way a user works.
"""

import json
import shutil
from pathlib import Path

import pytest
from conftest import REPO, SMOL_MODEL, doit, doit_until_first_request, executed_cells, llama_servers_under

pytestmark = pytest.mark.server

SPEC = """
[server]
ctx_size = 1024

[profiles.interactive]
requests = 3
max_tokens = 32

[thresholds.interactive]
min_tokens_per_s = 2.0
""" + SMOL_MODEL


@pytest.fixture(scope="module")
def measured(tmp_path_factory, llama_server):
    root = tmp_path_factory.mktemp("proj")
    (root / "specs").mkdir()
    (root / "prompts").symlink_to(REPO / "prompts")
    (root / "specs" / "t.toml").write_text(SPEC)
    write_bandwidth(root)
    first = doit(root)
    return root, first


def write_bandwidth(root: Path, gbps: float = 25.0) -> None:
    """This host's bandwidth figure as `doit` caches it (measuring it takes seconds; the figure is
    this machine's order of magnitude), so the runner predicts each cell's speed before measuring."""
    from llmspec.machine import bandwidth
    from llmspec.machine.host import host_id

    path = bandwidth.path(root / "build" / "results", host_id())
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"copy_gbps": gbps, "median_gbps": gbps, "runs_gbps": [gbps], "threads": 2,
                                "block_mb": 128.0, "copied_mb": 256.0, "method": bandwidth.METHOD,
                                "measured_at": "2026-12-01T00:00:00+00:00", "version": bandwidth.VERSION}))


def results(root: Path) -> dict[str, Path]:
    return {str(p.relative_to(root / "build" / "results")).split("/", 1)[1]: p
            for p in (root / "build" / "results").glob("*/*/*/*/*.json")}


def test_first_run_measures_the_cell_and_reports(measured):
    root, first = measured
    assert executed_cells(first.stdout) == ["cell:t:SmolLM2-135M-Instruct@Q4_1:interactive"]
    (path,) = results(root).values()
    result = json.loads(path.read_text())
    assert result["status"] == "ok", result["reason"]
    m = result["metrics"]
    assert m["ttft_s"] > 0 and m["tokens_per_s"] > 0 and m["peak_rss_gb"] > 0.05
    # both clocks are recorded and compared; how closely they agree is benchmarks/fidelity.py's figure
    assert m["server_tokens_per_s"] > 0 and m["clock_disagreement_pct"] >= 0
    n = m["requests"]  # at least `requests`, then more until the median is known to 5 % (at most 12)
    assert 3 <= n <= 12 and len(result["samples"]) == n
    assert all(s["timings"]["cache_n"] == 0 for s in result["samples"])
    interval = result["intervals"]["tokens_per_s"]
    assert interval["n"] == n and interval["low"] <= m["tokens_per_s"] <= interval["high"]
    assert m["precision_pct"] <= 5 or n == 12  # it stops at the target, or says it did not reach it
    assert (m["precision_pct"] <= 5) != any("short of the ±5% target" in f for f in result["flags"])
    assert 0 <= m["background_cpu_pct"] <= 25 and isinstance(result["background"]["top"], list)
    assert result["model_file"]["metadata"]["architecture"] == "llama"
    # the speed predicted before measuring, stored beside the measured one (uncalibrated: no earlier results)
    assert m["predicted_tokens_per_s"] == pytest.approx(25e9 * 0.65 / result["model_file"]["size"], rel=1e-5)
    assert "predicted_prompt_tokens_per_s" not in m  # no measured prompt speed to calibrate it with
    assert str(root) not in path.read_text()  # no absolute paths of this machine in committed results
    assert (root / "build" / "reports" / "t" / "results.csv").exists()
    assert "SmolLM2-135M-Instruct" in first.stdout and "Report:" in first.stdout
    assert not llama_servers_under(root)


def test_second_run_measures_nothing_even_without_doit_db(measured):
    root, _ = measured
    before = {k: p.stat().st_mtime_ns for k, p in results(root).items()}
    assert executed_cells(doit(root).stdout) == []
    for db in root.glob(".doit.db*"):
        db.unlink()
    assert executed_cells(doit(root).stdout) == []
    assert {k: p.stat().st_mtime_ns for k, p in results(root).items()} == before


def test_threshold_change_rerates_without_measuring(measured):
    root, _ = measured
    spec = root / "specs" / "t.toml"
    spec.write_text(SPEC.replace("min_tokens_per_s = 2.0", "min_tokens_per_s = 100000.0"))
    out = doit(root)
    assert executed_cells(out.stdout) == []
    assert "Failed" in (root / "build" / "reports" / "t" / "results.csv").read_text()
    spec.write_text(SPEC)


def test_added_quant_runs_only_the_new_cells(measured):
    root, _ = measured
    before = {k: p.stat().st_mtime_ns for k, p in results(root).items()}
    spec = root / "specs" / "t.toml"
    spec.write_text(SPEC.replace('quants = ["Q4_1"]', 'quants = ["Q4_1", "Q8_0"]') + 'derive = { Q8_0 = "Q4_1" }\n')
    out = doit(root)
    assert executed_cells(out.stdout) == ["cell:t:SmolLM2-135M-Instruct@Q8_0:interactive"]
    after = results(root)
    assert {k: after[k].stat().st_mtime_ns for k in before} == before
    new = json.loads(after[next(k for k in after if "Q8_0" in k)].read_text())
    assert new["status"] == "ok" and new["model_file"]["metadata"]["file_type"] == "Q8_0"
    assert not llama_servers_under(root)


def test_doit_model_fetches_and_derives_ahead_without_measuring(measured):
    root, _ = measured
    derived = next((root / "build" / "models").rglob("*.Q8_0.gguf"))
    derived.unlink()
    out = doit(root, "model")  # check=True: a failing action would raise here
    assert derived.is_file() and derived.stat().st_size > 50_000_000
    assert executed_cells(out.stdout) == []


def test_changed_profile_setting_is_explained_by_doit_info(measured):
    root, _ = measured
    spec = root / "specs" / "t.toml"
    spec.write_text(spec.read_text().replace("max_tokens = 32", "max_tokens = 40"))
    info = doit(root, "info", "cell:t:SmolLM2-135M-Instruct@Q4_1:interactive", check=False)
    assert "profile settings changed (max_tokens: 32 -> 40)" in info.stdout
    spec.write_text(spec.read_text().replace("max_tokens = 40", "max_tokens = 32"))


def test_one_cell_by_name_and_a_misspelt_name(measured):
    """Cell tasks are created only when doit runs them; a name that is no cell still gets one clear line."""
    root, _ = measured
    one = doit(root, "cell:t:SmolLM2-135M-Instruct@Q4_1:interactive")
    assert "-- cell:t:SmolLM2-135M-Instruct@Q4_1:interactive" in one.stdout  # known and up to date
    typo = doit(root, "cell:t:SmolLM2-135M-Instruct@Q4_2:interactive", check=False)
    assert typo.returncode == 2 and "Traceback" not in typo.stderr
    assert typo.stderr.strip().splitlines()[-1] == ("llmspec: there is no task cell:t:SmolLM2-135M-Instruct@Q4_2:"
                                                    "interactive (`doit list --all` lists every cell task)")


def test_report_alone_measures_nothing(measured):
    root, _ = measured
    shutil.rmtree(root / "build" / "reports")
    out = doit(root, "report")
    assert executed_cells(out.stdout) == []
    written = {p.name for p in (root / "build" / "reports" / "t").iterdir() if not p.name.startswith(".")}
    assert written == {"report.html", "results.csv", "results.xlsx", "results.json"}
    assert (root / "build" / "reports" / "index.html").is_file()
    assert "RECOMMENDED CONFIGURATIONS" in out.stdout


def test_bad_spec_is_one_line_and_exit_2(tmp_path):
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "bad.toml").write_text(SPEC.replace("ctx_size = 1024", "ctx_size = 1024\nthread = 2"))
    proc = doit(tmp_path, "list", check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith("llmspec: specs/bad.toml: server.thread: unknown key (allowed here: engine, binary,")


@pytest.fixture
def fresh_project(tmp_path):
    (tmp_path / "specs").mkdir()
    (tmp_path / "prompts").symlink_to(REPO / "prompts")
    (tmp_path / "specs" / "t.toml").write_text(SPEC.replace("max_tokens = 32", "max_tokens = 200"))
    return tmp_path


def test_kill_9_of_the_run_takes_the_server_down_too(fresh_project):
    import time

    root = fresh_project
    proc, _ = doit_until_first_request(root)
    assert llama_servers_under(root)
    proc.kill()
    proc.wait(10)
    deadline = time.time() + 30
    while llama_servers_under(root) and time.time() < deadline:
        time.sleep(0.1)
    assert not llama_servers_under(root)
    assert not list((root / "build" / "results").glob("*/*/*/*/*.json"))
