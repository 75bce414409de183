"""report.html in a real headless Chromium: charts draw, nothing is fetched, nothing complains, no injection runs.

Chromium is driven through its command line only (no new dependency): `--dump-dom` gives the
document after its scripts ran, `--enable-logging=stderr` prints every console message and
uncaught error as a "CONSOLE" line, and `--log-net-log` records every request with the
network isolation key of the page that made it; Chromium's own background requests carry
a different key and are left out.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.test_report_html import INJECTION, Page, render, write_demo

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                 reason="needs headless Chromium at /usr/bin/chromium (Debian package `chromium`)")]
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000"]
CHARTS = ("speed", "memory", "quality", "context", "capacity", "stress-speed", "stress-temperature")


@dataclass
class Visit:
    dom: str  # the document after its scripts ran
    console: list[str]  # console messages and uncaught errors
    requests: list[str]  # URLs the page asked the network for


def visit(page: Path, tmp: Path) -> Visit:
    net_log = tmp / "net.json"
    proc = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'profile'}", f"--log-net-log={net_log}",
                           "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return Visit(proc.stdout, console, page_requests(json.loads(net_log.read_text())))


def page_requests(log: dict) -> list[str]:
    """URLs of requests started on behalf of a file:// page (any scheme other than file: and data:)."""
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    urls = []
    for event in log["events"]:
        params = event.get("params") or {}
        if event["type"] == start and "file://" in params.get("network_isolation_key", ""):
            urls.append(params["url"])
    return [u for u in urls if not u.startswith(("file:", "data:"))]


def chart_marks(dom: str, key: str) -> list[str]:
    """What Vega drew in one chart's container, by ARIA role description (empty when nothing)."""
    body = dom[dom.index(f'id="chart-{key}"'):]
    body = body[:body.index("</figure>")]
    return re.findall(r'aria-roledescription="([^"]+)"', body) if "<svg" in body else []


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    write_demo(root / "results")
    page = root / "report.html"
    page.write_text(render(root), encoding="utf-8")
    return page


def test_report_opens_offline_quietly_with_every_chart_drawn(report, tmp_path):
    seen = visit(report, tmp_path)
    assert seen.console == []
    assert seen.requests == []
    for key in CHARTS:
        assert "axis" in chart_marks(seen.dom, key), key
    assert chart_marks(seen.dom, "speed").count("point") == 4  # one per configuration
    assert chart_marks(seen.dom, "stress-temperature").count("line mark") == 1
    assert chart_marks(seen.dom, "capacity").count("line mark") == 3  # a line of levels per finished load cell


def test_injected_answer_stays_text_in_the_live_page(report, tmp_path):
    dom = Page(visit(report, tmp_path).dom)
    assert not [attrs for tag, attrs in dom.tags if tag == "img" or "onerror" in attrs]
    assert any(INJECTION in text for text in dom.text)


def test_tables_sort_by_a_clicked_header_and_filter_by_text_and_rating(report, tmp_path):
    driver = """<script>
    const table = document.querySelector("#profile-interactive + table");
    const th = [...table.tHead.rows[0].cells].find(c => c.textContent.startsWith("tokens_per_s"));
    th.click();
    const sorted = [...table.tBodies[0].rows].map(r => r.cells[0].textContent + " " + r.cells[1].textContent);
    const text = document.getElementById("filter-text");
    text.value = "Q4_1";
    text.dispatchEvent(new Event("input"));
    const shown = [...table.tBodies[0].rows].filter(r => !r.hidden).map(r => r.cells[1].textContent);
    text.value = "";
    const rating = document.getElementById("filter-rating");
    rating.value = "error";
    rating.dispatchEvent(new Event("change"));
    const errors = [...document.querySelectorAll("table.filterable tbody tr")].filter(r => !r.hidden).length;
    document.body.dataset.probe = JSON.stringify({sorted, shown, errors});
    </script></body>"""
    driven = tmp_path / "driven.html"
    page, end = report.read_text(encoding="utf-8").rsplit("</body>", 1)  # the chart library mentions </body> too
    driven.write_text(page + driver + end, encoding="utf-8")
    seen = visit(driven, tmp_path)
    assert seen.console == []
    probe = json.loads(re.search(r'data-probe="([^"]*)"', seen.dom).group(1).replace("&quot;", '"'))
    assert probe["sorted"] == ["gemma-3-270m Q8_0", "gemma-3-270m Q4_K_M", "SmolLM2-135M-Instruct Q8_0",
                               "SmolLM2-135M-Instruct Q4_1"]  # 13.7, 15.8, 27.6, 40.8 tokens/s
    assert probe["shown"] == ["Q4_1"]
    assert probe["errors"] == 2  # the failed load cell, and its configuration in the configurations table


def test_the_probe_catches_a_fetch_and_a_console_error(report, tmp_path):
    """The checks above can fail: a page with an external script and a console error is caught."""
    sabotaged = tmp_path / "sabotaged.html"
    sabotaged.write_text(report.read_text(encoding="utf-8").replace(
        "</head>", '<script src="https://example.com/x.js"></script><script>console.error("sabotage")</script></head>',
        1), encoding="utf-8")
    seen = visit(sabotaged, tmp_path)
    assert seen.requests == ["https://example.com/x.js"]
    assert any('"sabotage"' in line for line in seen.console)


def test_a_large_table_pages_and_sorts_and_filters_all_its_rows(tmp_path):
    """400 configurations: the page shows 100 rows and a pager; sorting and filtering reach the 300
    rows that arrived packed, the next page shows the next 100, and the speed chart, whose spec came
    packed too, draws all 400 points."""
    from tests.test_report_html import wide_spec, write_wide

    write_wide(tmp_path / "results", 400)
    page, end = render(tmp_path, wide_spec(400)).rsplit("</body>", 1)
    driver = """<script>
    Promise.all([window.llmspecCharts, ...window.llmspecTables.map(m => m.ready)]).then(() => {
      const table = document.querySelector("#profile-interactive + table");
      const pager = () => table.nextElementSibling.querySelector("span").textContent;
      const first = pager(), rows = table.tBodies[0].rows.length;
      table.nextElementSibling.querySelector('[data-step="1"]').click();
      const second = pager(), last = table.tBodies[0].rows[table.tBodies[0].rows.length - 1].cells[0].textContent;
      const th = [...table.tHead.rows[0].cells].find(c => c.textContent.startsWith("tokens_per_s"));
      th.click(); th.click();  // descending: the fastest, which came packed, first
      const top = table.tBodies[0].rows[0].cells[0].textContent;
      const text = document.getElementById("filter-text");
      text.value = "model-12";
      text.dispatchEvent(new Event("input"));
      const found = [...table.tBodies[0].rows].map(r => r.cells[0].textContent).sort();
      const points = document.querySelectorAll('#chart-speed [aria-roledescription="point"]').length;
      document.body.dataset.probe = JSON.stringify({first, rows, second, last, top, found, after: pager(), points});
    });
    </script></body>"""
    driven = tmp_path / "large.html"
    driven.write_text(page + driver + end, encoding="utf-8")
    seen = visit(driven, tmp_path)
    assert seen.console == [] and seen.requests == []
    probe = json.loads(re.search(r'data-probe="([^"]*)"', seen.dom).group(1).replace("&quot;", '"'))
    assert probe["first"] == "rows 1–100 of 400" and probe["rows"] == 100
    assert probe["second"] == "rows 101–200 of 400" and probe["last"] == "model-199"
    assert probe["top"] == "model-399"  # 409 tokens/s
    assert probe["found"] == [f"model-{i}" for i in range(120, 130)]
    assert probe["after"] == "rows 1–10 of 10 (filtered from 400)"
    assert probe["points"] == 400
