"""Fault: an endpoint (a server llmspec did not start) answers with something that is not a chat stream:
a web page, an HTTP 500, a stream that never ends, an SSE line over 1 MB, or bytes that are not UTF-8
(issue #28). The cell is an error naming the reason within the request timeout, never a hang or a
traceback, and `llmspec loadtest` counts every such answer as a failed request. The endpoint is a
real local HTTP server (tests/faultyserver.py) sending each fault."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from conftest import REPO, doit
from faultkit import record
from faultyserver import serving

pytestmark = pytest.mark.faults

CASES = [
    ("500", "HTTP 500", "an HTTP 500"),
    ("html", "not a chat stream", "a web page (text/html)"),
    ("endless", "answer not complete within 3 s", "a stream that never ends"),
    ("longline", "a line of over 1 MB", "an SSE line over 1 MB"),
    ("utf8", "an event it cannot read", "invalid UTF-8"),
]


@pytest.fixture(scope="module")
def faulty():
    with serving() as url:
        yield url


@pytest.mark.parametrize(("fault", "expected", "what"), CASES, ids=[c[0] for c in CASES])
def test_an_endpoint_that_answers_garbage_is_an_error_result_and_failed_loadtest_requests(
        faulty, tmp_path, fault, expected, what):
    (tmp_path / "specs").mkdir()
    (tmp_path / "prompts").symlink_to(REPO / "prompts")
    (tmp_path / "specs" / "ext.toml").write_text(f"""
[server]
request_timeout_s = 3

[profiles.interactive]
requests = 3
max_requests = 3
max_tokens = 16

[[endpoints]]
name = "broken-box"
url = "{faulty}/{fault}"
model = "m"
profiles = ["interactive"]
""")
    t0 = time.monotonic()
    run = doit(tmp_path, check=False)
    took = time.monotonic() - t0
    assert "Traceback" not in run.stdout + run.stderr
    assert run.returncode != 0  # a cell failed, and doit says so
    (found,) = list((tmp_path / "build" / "results").glob("*/ext/broken-box/remote/interactive.json"))
    result = json.loads(found.read_text())
    assert result["status"] == "error" and expected in result["reason"], result["reason"]

    load = subprocess.run([sys.executable, "-m", "llmspec.cli", "loadtest", "broken", "--endpoint", f"{faulty}/{fault}",
                           "--model", "m", "--questions", str(REPO / "prompts" / "questions.json"),
                           "--concurrent", "2", "--count", "4", "--timeout", "3"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in load.stdout + load.stderr
    document = json.loads((tmp_path / "results" / "broken.json").read_text())
    assert len(document["results"]) == 4 and all(r["error"] for r in document["results"])
    assert any(expected in r["error"] for r in document["results"])
    record(f"an endpoint answers with {what}", lost=0, orphans=0, recover_s=took)
