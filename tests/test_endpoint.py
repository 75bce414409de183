"""A spec's [[endpoints]]: a server llmspec does not manage, measured through doit like any cell.

The "external" server here is a second real llama-server started by the test, which refuses
requests without its API key. The key is read from the environment at run time and must not
appear in any file llmspec writes.
"""

import json

import pytest
from conftest import PIPELINE_ONLY, REPO, doit, executed_cells

from llmspec.plan import view
from llmspec.plan.planner import Plan
from llmspec.run.client import ChatClient
from llmspec.spec import load_spec

SECRET = "sk-test-do-not-write-me-7f3a"


@pytest.fixture
def external(make_server):
    with make_server(ctx_size=2048, threads=2, parallel=2, extra=("--api-key", SECRET)) as server:
        yield server


@pytest.mark.server
def test_endpoint_cells_measure_the_external_server_and_never_store_the_key(external, tmp_path, monkeypatch):
    (tmp_path / "specs").mkdir()
    (tmp_path / "prompts").symlink_to(REPO / "prompts")
    (tmp_path / "specs" / "ext.toml").write_text(f"""
[profiles.interactive]
requests = 3
max_requests = 3  # the interval is not what this test is about: keep it short
max_tokens = 16

[profiles.load]
concurrent = 2
questions = 4
max_tokens = 8

[[endpoints]]
name = "other-box"
url = "{external.url}"
model = "smol"
api_key_env = "LLMSPEC_TEST_KEY"
profiles = ["interactive", "load"]
""")
    monkeypatch.setenv("LLMSPEC_TEST_KEY", SECRET)
    out = doit(tmp_path)
    assert executed_cells(out.stdout) == ["cell:ext:other-box@remote:interactive", "cell:ext:other-box@remote:load"]
    results = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "build" / "results").glob("*/*/*/*/*.json")}
    assert results["interactive"]["status"] == "ok" and results["interactive"]["metrics"]["tokens_per_s"] > 0
    assert results["load"]["status"] == "ok" and results["load"]["metrics"]["requests_ok"] == 4
    assert results["load"]["server"] == {"endpoint": external.url, "model": "smol"}
    assert "peak_rss_gb" not in results["interactive"]["metrics"]  # not ours to measure
    for path in tmp_path.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert SECRET not in path.read_text(errors="replace"), path
    monkeypatch.delenv("LLMSPEC_TEST_KEY")
    spec = tmp_path / "specs" / "ext.toml"
    spec.write_text(spec.read_text().replace("max_tokens = 16", "max_tokens = 17"))
    missing = doit(tmp_path, check=False)
    assert "environment variable LLMSPEC_TEST_KEY is not set" in missing.stdout


def test_client_honours_proxy_settings_from_the_environment(monkeypatch):
    """Looked up once per client, not per request, but with requests' rules: a proxy for remote
    endpoints, none for hosts in NO_PROXY."""
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "inside.example")
    assert ChatClient("http://gpu-box.example:8080").session.proxies.get("http") == "http://proxy.example:3128"
    assert not ChatClient("http://inside.example:8080").session.proxies.get("http")


NOT_APPLIED = "reasoning_budget 0 not applied: the endpoint's server was not started by llmspec; set it on that server"


@pytest.mark.doit
def test_a_reasoning_budget_an_endpoint_cannot_get_is_said_in_the_plan_and_the_result(fake_server, project):
    """[server] reasoning_budget starts llmspec's own server with a cap; a server it did not start
    never hears of it, so the plan and the endpoint cell's result say so instead of implying a cap."""
    fake = fake_server(answer_tokens=4, reasoning_tokens=3)
    spec = project(f"""
    {PIPELINE_ONLY}
    [server]
    reasoning_budget = 0
    [profiles.interactive]
    requests = 3
    max_requests = 3
    max_tokens = 8

    [[endpoints]]
    name = "box"
    url = "{fake.url}"
    profiles = ["interactive"]
    """)
    assert f"box: {NOT_APPLIED}" in view.render(Plan(load_spec(spec), cores=2)).splitlines()
    out = doit(project.root)
    assert executed_cells(out.stdout) == ["cell:t:box@remote:interactive"]
    (path,) = (project.root / "build" / "results").glob("*/*/*/*/*.json")
    result = json.loads(path.read_text())
    assert result["status"] == "ok", result.get("reason")
    assert NOT_APPLIED in result["flags"]
    assert all("reasoning_budget" not in body for body in fake.requests)  # not sent per request either


def test_without_a_budget_the_plan_says_nothing_of_it(project):
    spec = project("""
    [[endpoints]]
    name = "box"
    url = "http://127.0.0.1:9"
    profiles = ["interactive"]
    """)
    assert "not applied" not in view.render(Plan(load_spec(spec), cores=2))
