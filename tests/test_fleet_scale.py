"""report.html at fleet scale (#29 part 5): hosts become rows, not columns, and each host's detail
is unpacked when chosen, so the page stays small and opens in Chromium without a script error.

The results are the demo's real result files, copied to 420 host folders with their own host
cards (a byte-level replace of the host id and memory, as `benchmarks/report.py --hosts` does).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REPO
from devtools import CHROMIUM, Browser

from llmspec.report import build_report
from llmspec.report.html import FLEET_WIDE
from llmspec.spec import load_spec

SOURCE = REPO / "tests" / "fixtures" / "results" / "amd-epyc-2c-24g-ef098a"
HOSTS = 420
RAM = (8, 16, 24, 32, 64, 128)


def host_name(i: int) -> str:
    return f"fleet-{i:03d}-{RAM[i % len(RAM)]}g-{i * 7919 % 65536:04x}"


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fleet-scale")
    files = {p.relative_to(SOURCE): p.read_bytes() for p in SOURCE.rglob("*.json")}
    for i in range(HOSTS):
        for rel, data in files.items():
            path = root / "results" / host_name(i) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data.replace(SOURCE.name.encode(), host_name(i).encode())
                             .replace(b'"ram_gb": 24', f'"ram_gb": {RAM[i % len(RAM)]}'.encode()))
    summary = build_report(load_spec(REPO / "specs" / "demo.toml"), root / "results", root / "reports")
    assert summary.host_count == HOSTS > FLEET_WIDE
    return summary.html


def test_hosts_are_rows_and_each_host_detail_is_packed(page):
    html = page.read_text()
    assert 'id="host-details"' in html and 'id="host-pick"' in html
    assert html.count('<div class="card">') == 0  # cards are packed, not 420 on the page
    assert html.count('<th class="group"') == 0  # no column group per host
    assert html.count(f"<option>{host_name(7)}</option>") == 1


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs headless Chromium at /usr/bin/chromium")
def test_fleet_page_opens_in_chromium_and_unpacks_a_host(page, tmp_path):
    browser = Browser(tmp_path / "profile")
    try:
        browser.open(page.as_uri())
        browser.evaluate("Promise.all(window.llmspecTables.map(m => m.ready)).then(() => window.llmspecCharts)")
        rows = browser.evaluate("""JSON.stringify(window.llmspecTables
                                   .filter(m => m.table.classList.contains("heatmap")).map(m => m.rows.length))""")
        assert json.loads(rows) == [HOSTS * 2]  # a row per (host, model, quant): 2 model files on each host
        browser.evaluate(f"window.llmspecShowHost({json.dumps(host_name(7))})")
        shown = browser.evaluate("document.getElementById('host-detail').textContent")
        assert host_name(7) in shown and f"RAM{RAM[7 % len(RAM)]} GB" in shown and "Overall best" in shown
        errors = [e for e in browser.console_errors() if not e.startswith("WARN ")]  # Vega's own notes
    finally:
        browser.close()
    assert errors == []
