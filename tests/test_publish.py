"""`llmspec publish` and `llmspec pull` against a real local fake of the hub's HTTP API (tests/fakehub.py).

huggingface_hub's real client code (list_repo_tree, create_repo, create_commit, hf_hub_download)
runs over real sockets; nothing in llmspec is patched. The results are the repo's fixture results
(real measurements of the demo), copied under this machine's host id as `doit` would write them,
one of them given what a real machine leaves in a file: paths, the hostname, other processes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SMOL_MODEL
from fakehub import FakeHub
from huggingface_hub import constants

from llmspec.cli import main
from llmspec.machine.host import host_id
from llmspec.publish import anonymous_id

FIXTURES = REPO / "tests" / "fixtures" / "results" / "amd-epyc-2c-24g-ef098a"
DATASET = "datasets/me/bench"
TARGET = "hf://datasets/me/bench"
TOKEN = "hf_test_token"
SECRET_PATH = "/home/alice-private/models/SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(autouse=True)
def isolated_hf_home(tmp_path, monkeypatch):
    """Keep huggingface_hub away from ~/.cache and any real token (see tests/test_hub.py)."""
    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    for name, value in {"HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"), "HF_TOKEN_PATH": str(home / "token"),
                        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"), "HF_HUB_DISABLE_TELEMETRY": True}.items():
        monkeypatch.setattr(constants, name, value)


def make_project(root: Path) -> Path:
    """A project with spec demo and this host's demo results (one of them carrying private details)."""
    (root / "specs").mkdir(parents=True)
    (root / "prompts").symlink_to(REPO / "prompts")
    (root / "specs" / "demo.toml").write_text(SMOL_MODEL.replace('["Q4_1"]', '["Q4_1", "Q8_0"]')
                                              .replace('files = { Q4_1', 'derive = { Q8_0 = "Q4_1" }\nfiles = { Q4_1'))
    mine = root / "build" / "results" / host_id()
    shutil.copytree(FIXTURES / "demo", mine / "demo")
    (mine / "bandwidth.json").write_text(json.dumps({"copy_gbps": 26.5, "version": 1, "threads": 2}))
    path = mine / "demo" / "SmolLM2-135M-Instruct" / "Q4_1" / "interactive.json"
    data = json.loads(path.read_text())
    data["background"] = {"seconds": 14.7, "top": [{"name": "secret-backup-tool", "pid": 4242, "cpu_pct": 31.0}]}
    data["flags"].append("busy: secret-backup-tool pid 4242 used 31 % of a core")
    data["server"]["args"] += ["--model", SECRET_PATH, "--alias", socket.gethostname()]
    data["host"]["id"] = data["fingerprint_inputs"]["host"] = host_id()
    data["samples"][0]["expected"] = {"pattern": r"^\s*YES\.?\s*$"}  # backslashes, and no path
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return root


def llmspec(root: Path, monkeypatch, *args: str) -> int:
    monkeypatch.chdir(root)
    return main(list(args))


def sent(hub: FakeHub) -> bytes:
    return b"".join(hub.bodies) + b"".join(c for (r, _), f in hub.files.items() if r == DATASET for c in [f.data])


def test_dry_run_lists_the_files_and_the_anonymised_card_and_sends_nothing(tmp_path, monkeypatch, capsys):
    root = make_project(tmp_path / "a")
    with FakeHub({}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        assert llmspec(root, monkeypatch, "publish", "demo", "--to", TARGET, "--dry-run") == 0
    out = capsys.readouterr().out
    anon = anonymous_id(host_id(), {"cpu": "AMD EPYC", "cores_logical": 2, "ram_gb": 24, "arch": "x86_64"})
    assert "Would publish 5 of 5 file(s)" in out and f"as host {anon}" in out
    for name in ("demo/SmolLM2-135M-Instruct/Q4_1/interactive.json", "demo/SmolLM2-135M-Instruct/Q8_0/interactive.json",
                 "host.json", "bandwidth.json"):
        assert "new" in out and f"{anon}/{name}" in out
    assert '"cpu": "AMD EPYC"' in out and '"cores_logical": 2' in out  # the host card
    assert host_id() not in out and "alice-private" not in out
    assert all(method == "GET" for method, _ in hub.requests) and not hub.commits


def test_publish_sends_one_commit_and_a_second_only_what_changed(tmp_path, monkeypatch, capsys):
    root = make_project(tmp_path / "a")
    with FakeHub({}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        assert llmspec(root, monkeypatch, "publish", "demo", "--to", TARGET) == 0
        first = capsys.readouterr().out
        assert len(hub.commits) == 1 and len(hub.commits[0]["files"]) == 5, hub.commits
        assert all(a == f"Bearer {TOKEN}" for a, (m, _) in zip(hub.auth, hub.requests) if m == "POST")
        assert llmspec(root, monkeypatch, "publish", "demo", "--to", TARGET) == 0
        assert "Nothing to publish" in capsys.readouterr().out and len(hub.commits) == 1
        changed = root / "build" / "results" / host_id() / "demo/SmolLM2-135M-Instruct/Q8_0/interactive.json"
        data = json.loads(changed.read_text())
        data["metrics"]["tokens_per_s"] = 99.5
        changed.write_text(json.dumps(data))
        assert llmspec(root, monkeypatch, "publish", "demo", "--to", TARGET) == 0
        second = capsys.readouterr().out
    assert [list(c["files"]) for c in hub.commits[1:]] == [[next(p for p in hub.commits[0]["files"]
                                                             if p.endswith("Q8_0/interactive.json"))]]
    first_bytes = sum(len(b) for b in hub.commits[0]["files"].values())
    second_bytes = sum(len(b) for b in hub.commits[1]["files"].values())
    assert f"Published 5 file(s), {first_bytes} bytes" in first
    assert f"Published 1 file(s), {second_bytes} bytes" in second and "4 unchanged file(s) not sent" in second
    print(f"bytes sent: first publish {first_bytes}, second publish {second_bytes}")


def test_nothing_sent_names_this_machine(tmp_path, monkeypatch):
    root = make_project(tmp_path / "a")
    with FakeHub({}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        assert llmspec(root, monkeypatch, "publish", "demo", "--to", TARGET) == 0
    everything = sent(hub).decode()
    for private in (host_id(), "alice-private", "/home/", str(tmp_path), "secret-backup-tool", "4242"):
        assert private not in everything, private
    files = b"".join(hub.commits[0]["files"].values()).decode()
    assert not re.search(rf"(?<![\w.-]){re.escape(socket.gethostname())}(?![\w-])", files)
    published = next(b for p, b in hub.commits[0]["files"].items() if p.endswith("Q4_1/interactive.json"))
    data = json.loads(published)
    assert data["background"] == {"seconds": 14.7, "top": [{"cpu_pct": 31.0}]}  # shares stay, names go
    assert "…/SmolLM2-135M-Instruct.Q4_1.gguf" in data["server"]["args"]
    local = root / "build" / "results" / host_id() / "demo/SmolLM2-135M-Instruct/Q4_1/interactive.json"
    assert data["samples"] == json.loads(local.read_text())["samples"]  # the measurements travel as measured
    assert data["metrics"] == json.loads((FIXTURES / "demo/SmolLM2-135M-Instruct/Q4_1/interactive.json")
                                         .read_text())["metrics"]


def test_no_token_says_how_to_log_in_and_sends_nothing(tmp_path, monkeypatch, capsys):
    root = make_project(tmp_path / "a")
    with FakeHub({}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        assert llmspec(root, monkeypatch, "publish", "demo", "--to", TARGET) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "huggingface-cli login" in err and "HF_TOKEN" in err
    assert not hub.commits and all(m == "GET" for m, _ in hub.requests)


def test_a_failed_commit_leaves_the_dataset_as_it_was_and_says_what_to_do(tmp_path, monkeypatch, capsys):
    root = make_project(tmp_path / "a")
    with FakeHub({}, repos=(DATASET,), fail_commits=1) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        assert llmspec(root, monkeypatch, "publish", "demo", "--to", TARGET) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert "HTTP 500" in err and "nothing was committed" in err and "run the same command again" in err
        assert not hub.commits and not [k for k in hub.files if k[0] == DATASET]
        assert llmspec(root, monkeypatch, "publish", "demo", "--to", TARGET) == 0  # the retry sends it all
        assert len(hub.commits) == 1 and len(hub.commits[0]["files"]) == 5


def test_a_bad_address_is_one_line(tmp_path, monkeypatch, capsys):
    root = make_project(tmp_path / "a")
    assert llmspec(root, monkeypatch, "publish", "demo", "--to", "hf://models/me/x", "--dry-run") == 2
    assert "give a dataset as hf://datasets/ORG/NAME" in capsys.readouterr().err


def closed_port() -> str:
    """An endpoint nothing listens on: a port bound, then let go."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize("command", [("publish", "demo", "--to", TARGET, "--dry-run"),
                                     ("publish", "demo", "--to", TARGET), ("pull", TARGET)])
def test_an_unreachable_hub_is_asked_once_and_said_in_one_line(tmp_path, command):
    """Offline, huggingface_hub would retry 5 times (about 23 s of warnings); llmspec asks once."""
    root = make_project(tmp_path / "a")
    env = {**os.environ, "HF_ENDPOINT": closed_port(), "HF_HOME": str(tmp_path / "hf_home"), "HF_TOKEN": TOKEN}
    proc = subprocess.run([sys.executable, "-m", "llmspec.cli", *command], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120)
    said = proc.stdout + proc.stderr
    assert "Traceback" not in said and "Retry" not in said and said.count("Connection refused") == 1, said
    assert f"cannot reach the hub at {env['HF_ENDPOINT']}" in said
    if "--dry-run" in command:  # goes on: lists every file as new
        assert proc.returncode == 0 and "every file counted as new" in said and "Host card" in said
    else:  # stops, in one line, with what to do
        assert proc.returncode == 2 and proc.stdout == "" and proc.stderr.count("\n") == 1
        assert f"nothing was {'sent' if command[0] == 'publish' else 'pulled'}" in said
        assert "run the same command again" in said


# --- pull ---------------------------------------------------------------------------------------

def published_hub(tmp_path, monkeypatch, *flags: str) -> tuple[FakeHub, Path]:
    root = make_project(tmp_path / "a")
    hub = FakeHub({}).__enter__()
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert llmspec(root, monkeypatch, "publish", "demo", "--to", TARGET, *flags) == 0
    return hub, root


def test_pull_round_trips_the_published_bytes_read_only(tmp_path, monkeypatch, capsys):
    hub, _ = published_hub(tmp_path, monkeypatch)
    other = tmp_path / "b"
    (other / "specs").mkdir(parents=True)
    monkeypatch.delenv("HF_TOKEN")  # reading a dataset needs no write token
    try:
        assert llmspec(other, monkeypatch, "pull", TARGET, "--spec", "demo") == 0
        out = capsys.readouterr().out
        committed = hub.commits[0]["files"]
        for path, data in committed.items():
            local = other / "build" / "results" / path
            assert local.read_bytes() == data, path
            assert not local.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
        host = next(iter(committed)).split("/")[0]
        assert json.loads((other / "build" / "results" / host / ".pulled.json").read_text())["source"] == TARGET
        assert "Pulled 5 file(s)" in out and "pull hf://datasets/me/bench" in out  # the progress line
        assert not (other / "build" / "results" / ".pull-staging").exists()
        gets = len(hub.requests)
        assert llmspec(other, monkeypatch, "pull", TARGET) == 0  # resumable: nothing again
        assert "Pulled 0 file(s), 0 bytes, of 1 host(s)" in capsys.readouterr().out
        assert not [p for m, p in hub.requests[gets:] if "/resolve/" in p]
    finally:
        hub.__exit__(None, None, None)


def test_loadtest_outputs_travel_anonymised_and_come_back_as_loadtest_files(tmp_path, monkeypatch, capsys):
    """`llmspec loadtest` files in the project's results/ go along with a publish, scrubbed like results
    (endpoint host, hostname, paths), and a pull places them where `llmspec compare` reads them."""
    root = make_project(tmp_path / "a")
    doc = json.loads((REPO / "tests" / "fixtures" / "loadtest" / "after.json").read_text())
    doc["meta"]["server"] = "http://gpu-rack-07.corp.example:8080"
    doc["results"][0]["error"] = f"connection reset by {socket.gethostname()} reading {SECRET_PATH}"
    (root / "results").mkdir()
    (root / "results" / "run1.json").write_text(json.dumps(doc, indent=2) + "\n")
    (root / "results" / "notes.json").write_text('{"not": "a loadtest"}')  # other JSON there stays home
    with FakeHub({}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        assert llmspec(root, monkeypatch, "publish", "demo", "--to", TARGET) == 0
        committed = hub.commits[0]["files"]
        path = next(p for p in committed if p.endswith("/loadtest/run1.json"))
        assert len(committed) == 6 and not any("notes" in p for p in committed)
        text = committed[path].decode()
        for private in ("gpu-rack-07", "corp.example", "alice-private", "/home/", host_id()):
            assert private not in text, private
        assert not re.search(rf"(?<![\w.-]){re.escape(socket.gethostname())}(?![\w-])", text)
        published = json.loads(text)
        assert published["meta"]["server"] == "http://endpoint"
        assert published["results"][1:] == doc["results"][1:] and published["aggregate"] == doc["aggregate"]
        other = tmp_path / "b"
        (other / "specs").mkdir(parents=True)
        assert llmspec(other, monkeypatch, "pull", TARGET) == 0
        pulled = other / "build" / "results" / path
        assert pulled.read_bytes() == committed[path]  # byte for byte
        assert not pulled.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
        assert llmspec(other, monkeypatch, "compare", str(pulled), str(root / "results" / "run1.json"),
                       "--output", str(tmp_path / "c.html")) == 0
        assert "4 users" in capsys.readouterr().out
        gets = len(hub.requests)
        assert llmspec(other, monkeypatch, "pull", TARGET, "--spec", "demo") == 0  # a spec's pull: results only
        assert not [p for m, p in hub.requests[gets:] if "/resolve/" in p]


def test_compare_reads_a_dataset_directly_into_a_cache_not_into_build_results(tmp_path, monkeypatch, capsys):
    hub, root = published_hub(tmp_path, monkeypatch)
    changed = root / "build" / "results" / host_id() / "demo/SmolLM2-135M-Instruct/Q8_0/interactive.json"
    data = json.loads(changed.read_text())
    data["metrics"]["tokens_per_s"] *= 0.5
    changed.write_text(json.dumps(data))
    capsys.readouterr()
    try:
        assert llmspec(root, monkeypatch, "compare", TARGET, "build/results", "--spec", "demo") == 0
        first = capsys.readouterr()
        assert llmspec(root, monkeypatch, "compare", TARGET, "build/results", "--spec", "demo") == 0
        second = capsys.readouterr()
    finally:
        hub.__exit__(None, None, None)
    print(first.err + first.out)
    cache = root / "build" / "cache" / "datasets" / "me" / "bench"
    published = hub.commits[0]["files"]
    for path, body in published.items():  # the pull's code: byte for byte, read-only
        assert (cache / path).read_bytes() == body
        assert not (cache / path).stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert sorted(p.name for p in (root / "build" / "results").iterdir()) == [host_id()]  # nothing pulled there
    assert f"{TARGET}: 1 host(s), 5 file(s) fetched" in first.err and "0 file(s) fetched" in second.err
    assert f"A: {TARGET}  (dataset on the hub, read into" in first.out
    row = next(line for line in first.out.splitlines() if "Q8_0 interactive" in line)
    assert "tokens_per_s" in row and "(-50.0%)" in row and "host" in row
    assert first.out == second.out


def test_pull_never_clobbers_this_machines_own_results(tmp_path, monkeypatch, capsys):
    hub, root = published_hub(tmp_path, monkeypatch, "--keep-hostname")
    mine = root / "build" / "results" / host_id()
    before = {p: p.read_bytes() for p in mine.rglob("*.json")}
    try:
        assert llmspec(root, monkeypatch, "pull", TARGET) == 1
    finally:
        hub.__exit__(None, None, None)
    err = capsys.readouterr().err
    assert f"host {host_id()} not pulled" in err and "this machine's own results" in err and err.count("\n") == 1
    assert {p: p.read_bytes() for p in mine.rglob("*.json")} == before
    assert not (mine / ".pulled.json").exists()


def test_pulled_results_are_not_the_planners_cells(tmp_path, monkeypatch, capsys):
    hub, root = published_hub(tmp_path, monkeypatch)
    other = tmp_path / "b"
    shutil.copytree(root / "specs", other / "specs")
    (other / "prompts").symlink_to(REPO / "prompts")
    try:
        assert llmspec(other, monkeypatch, "pull", TARGET) == 0
    finally:
        hub.__exit__(None, None, None)
    plan = subprocess.run([sys.executable, "-m", "llmspec.cli", "plan", "specs/demo.toml"], cwd=other,
                          capture_output=True, text=True, timeout=300)
    assert plan.returncode == 0, plan.stderr
    assert "0 up to date" in plan.stdout, plan.stdout
    assert not (other / "build" / "results" / host_id()).exists()


def test_pull_refuses_a_newer_format_and_places_nothing(tmp_path, monkeypatch, capsys):
    data = json.loads((FIXTURES / "demo/SmolLM2-135M-Instruct/Q4_1/interactive.json").read_text())
    newer = json.dumps({**data, "schema_version": 99}).encode()
    with FakeHub({(DATASET, "some-host-1c-1g-abc123/demo/m/Q4_1/interactive.json"): newer}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        (tmp_path / "b").mkdir()
        assert llmspec(tmp_path / "b", monkeypatch, "pull", TARGET) == 2
    err = capsys.readouterr().err
    assert "schema_version 99 is newer than this llmspec reads" in err and "upgrade llmspec" in err
    placed = (tmp_path / "b" / "build" / "results").rglob("*.json")
    assert [p.name for p in placed] == [".pulled.json"]  # the folder's mark (a rerun resumes into it), no result
