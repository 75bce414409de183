"""`llmspec watch` in a real headless Chromium, against a real run of `doit` on SmolLM2.

The page is opened before the run starts and read over the DevTools protocol (tests/devtools.py)
while the cell measures: the figures on it change without a reload, nothing complains in the
console, and every request the page makes goes to the dashboard on 127.0.0.1. Set
LLMSPEC_WATCH_SCREENSHOT=path.png to keep a screenshot taken mid-cell.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DOIT, REPO, SMOL_MODEL
from devtools import CHROMIUM, Browser

pytestmark = [pytest.mark.server, pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                 reason="needs headless Chromium at /usr/bin/chromium (Debian package `chromium`)")]

# Chromium runs beside the cell, so the machine is not quiet: the background limit is lifted
# (the figures of this run are not the point; the page showing them is).
SPEC = """
[server]
ctx_size = 1024
threads = 1

[limits]
max_background_cpu_pct = 400
quiet_wait_s = 1

[profiles.interactive]
requests = 3
max_requests = 3
max_tokens = 64
""" + SMOL_MODEL

READ = """JSON.stringify({state: document.getElementById("state").textContent,
  cell: document.getElementById("cell").textContent, line: document.getElementById("line").textContent,
  tokens: document.getElementById("fig-tokens").textContent, rss: document.getElementById("fig-rss").textContent,
  matrix: [...document.querySelectorAll("#matrix td.st")].map(td => td.textContent),
  points: document.querySelectorAll("#chart-tokens circle").length,
  reports: [...document.querySelectorAll("#reports a")].map(a => a.getAttribute("href"))})"""


@pytest.fixture
def dashboard(tmp_path, llama_server):
    """A fresh project and `llmspec watch --port 0` serving it; yields (root, url)."""
    root = tmp_path / "proj"
    (root / "specs").mkdir(parents=True)
    (root / "prompts").symlink_to(REPO / "prompts")
    (root / "specs" / "t.toml").write_text(SPEC)
    proc = subprocess.Popen([sys.executable, "-m", "llmspec.cli", "watch", "t", "--port", "0"], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = re.search(r"open (http://127\.0\.0\.1:\d+/)", proc.stdout.readline()).group(1)
        yield root, url, proc
    finally:
        proc.send_signal(2)
        proc.wait(timeout=30)


def test_the_page_follows_a_real_run_live_offline_and_quietly(dashboard, tmp_path):
    import json

    root, url, server = dashboard
    browser = Browser(tmp_path / "profile")
    run = None
    try:
        browser.open(url)
        assert browser.wait_for(f"document.getElementById('state').textContent === 'no run' && {READ}")
        run = subprocess.Popen(DOIT + ["-d", str(root)], stdout=open(tmp_path / "doit.out", "w"),
                               stderr=subprocess.STDOUT)
        seen, shot = [], os.environ.get("LLMSPEC_WATCH_SCREENSHOT")
        while run.poll() is None:  # the same page, read again and again while the cell runs
            now = json.loads(browser.evaluate(READ))
            if now["state"] == "running" and now not in seen:
                seen.append(now)
                if shot and now["points"] >= 2 and not Path(shot).exists():
                    browser.screenshot(Path(shot))
            time.sleep(0.1)
        assert run.returncode == 0, (tmp_path / "doit.out").read_text()[-3000:]
        during = [s for s in seen if s["cell"].startswith("cell 1 of 1 (t: SmolLM2-135M-Instruct@Q4_1 interactive)")]
        assert len({(s["line"], s["tokens"], s["points"]) for s in during}) >= 2, seen  # it changed, unreloaded
        assert any(re.fullmatch(r"\d+\.\d", s["tokens"]) and float(s["tokens"]) > 0 for s in during), during
        assert any(re.fullmatch(r"\d\.\d\d", s["rss"]) and float(s["rss"]) > 0.05 for s in during), during
        assert any(s["matrix"] == ["running"] for s in during)

        done = json.loads(browser.wait_for(f"document.getElementById('state').textContent === 'finished' "
                                           f"&& document.querySelector('#reports a') && {READ}"))
        assert done["matrix"] == ["done"] and done["reports"] == ["/reports/t/report.html"]
        assert browser.evaluate("fetch('/reports/t/report.html').then(r => r.status)") == 200
        assert browser.console_errors() == []
        assert browser.requests() and all(u.startswith(url) for u in browser.requests()), browser.requests()
    finally:
        if run is not None and run.poll() is None:
            run.terminate()
            run.wait()
        browser.close()
    assert server.poll() is None  # the dashboard outlived the run it watched


def test_the_probe_sees_a_console_error_and_a_request_elsewhere(tmp_path):
    """The checks above can fail: a page that logs an error and fetches from another host is caught."""
    page = tmp_path / "bad.html"
    page.write_text('<script>console.error("sabotage"); fetch("http://192.0.2.1/x").catch(() => 0)</script>')
    browser = Browser(tmp_path / "profile")
    try:
        browser.open(page.as_uri())
        browser.wait_for("document.readyState === 'complete'")
        deadline = time.monotonic() + 10
        while not any("192.0.2.1" in u for u in browser.requests()) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "sabotage" in browser.console_errors()
        assert "http://192.0.2.1/x" in browser.requests()
    finally:
        browser.close()


