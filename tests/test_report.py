"""Reports from result files: what a user reads, and that thresholds re-rate without re-measuring."""

import csv
import json
import re
from pathlib import Path

from llmspec.rating import rate
from llmspec.report import build_report
from llmspec.report.frame import for_spec, load_frame
from llmspec.results import write_result
from llmspec.spec import Spec

MODEL = "SmolLM2-135M-Instruct"
HOST = "amd-epyc-2c-24g-ef098a"
XSS = "<script>alert(1)</script>"


def make_spec(**thresholds):
    return Spec.model_validate({
        "name": "demo",
        "models": [{"name": MODEL, "size": "135M", "quants": ["Q4_1", "Q8_0"], "package": "x",
                    "files": {"Q4_1": "x.gguf", "Q8_0": "y.gguf"}}],
        "thresholds": {"interactive": thresholds},
    })


def make_result(quant="Q4_1", status="ok", reason="", host=HOST, **metrics):
    """A result as a cell writes it, raw samples included."""
    metrics = metrics if metrics or status != "ok" else {
        "ttft_s": 0.05, "tokens_per_s": 118.2, "itl_cv_pct": 12.3, "peak_rss_gb": 0.31}
    return {
        "cell": {"spec": "demo", "model": MODEL, "quant": quant, "profile": "interactive"},
        "fingerprint": "0123456789abcdef", "fingerprint_inputs": {"profile": {"max_tokens": 128}},
        "status": status, "reason": reason, "metrics": metrics, "flags": [],
        "samples": [{"ttft_s": 0.05, "timings": {"cache_n": 0, "predicted_n": 128}, "content": "<b>story</b>"}],
        "started_at": "2026-11-22T21:40:00Z", "duration_s": 5.2,
        "host": {"id": host, "cpu": f"CPU of {host}", "cores_logical": 2, "cores_physical": 2,
                 "ram_gb": 24, "arch": "x86_64", "os": "Linux 6.18"},
        "server": {"binary": "llama-server", "version": "version: 11434 (abc123)", "args": ["--ctx-size", "4096"]},
        "model_file": {"name": f"{MODEL}.{quant}.gguf", "size": 98_000_000, "sha256": "ab" * 32,
                       "quant": quant, "source": "package"},
    }


def put(root: Path, result: dict) -> None:
    cell = result["cell"]
    write_result(root / result["host"]["id"] / "demo" / MODEL / cell["quant"] / "interactive.json", result)


def report(tmp_path, spec=None):
    summary = build_report(spec or make_spec(), tmp_path / "results", tmp_path / "reports")
    rows = list(csv.DictReader(summary.csv.open(encoding="utf-8")))
    return summary, rows, json.loads(summary.json.read_text()), summary.html.read_text()


def profile_of(doc, quant, host=HOST):
    entry = next(r for r in doc["results"] if r["quantization"] == quant and r["host"] == host)
    return entry["profiles"]["interactive"]


def test_csv_has_one_row_per_model_file_with_its_numbers(tmp_path):
    put(tmp_path / "results", make_result("Q4_1"))
    put(tmp_path / "results", make_result("Q8_0", ttft_s=0.08, tokens_per_s=60.5, itl_cv_pct=30.0))
    summary, rows, _, _ = report(tmp_path)
    written = [summary.html, summary.csv, summary.json]
    assert written == [tmp_path / "reports/demo" / n for n in ("report.html", "results.csv", "results.json")]
    assert [(r["model"], r["quant"]) for r in rows] == [(MODEL, "Q8_0"), (MODEL, "Q4_1")]  # spec run order
    q4 = rows[1]
    assert float(q4["interactive_tokens_per_s"]) == 118.2
    assert float(q4["interactive_ttft_s"]) == 0.05
    assert float(q4["model_size_gb"]) == 0.098
    assert (q4["interactive_rating"], rows[0]["interactive_rating"]) == ("Excellent", "Poor")


def test_json_has_ratings_checks_and_metadata(tmp_path):
    put(tmp_path / "results", make_result("Q4_1"))
    _, _, doc, _ = report(tmp_path)
    profile = profile_of(doc, "Q4_1")
    assert profile["rating"] == "Excellent"
    assert {c["name"] for c in profile["checks"]} == {"tokens_per_s", "ttft_s", "itl_cv_pct"}
    assert profile["metrics"]["tokens_per_s"] == 118.2
    assert doc["metadata"]["thresholds"]["interactive"]["min_tokens_per_s"] == 2.0
    assert doc["metadata"]["hosts"][0]["cpu"] == f"CPU of {HOST}"
    assert "samples" not in json.dumps(doc)


def test_changing_a_threshold_re_rates_without_remeasuring(tmp_path):
    put(tmp_path / "results", make_result("Q4_1"))
    result_file = next((tmp_path / "results").rglob("*.json"))
    before = result_file.read_bytes()
    _, rows, _, _ = report(tmp_path)
    assert rows[0]["interactive_rating"] == "Excellent"
    _, rows, doc, _ = report(tmp_path, make_spec(min_tokens_per_s=150.0))
    assert rows[0]["interactive_rating"] == "Failed"
    assert profile_of(doc, "Q4_1")["rating"] == "Failed"
    assert result_file.read_bytes() == before


def test_skipped_and_error_results_show_their_reason(tmp_path):
    put(tmp_path / "results", make_result("Q4_1", status="skipped", reason="needs 9 GB, 4 GB free"))
    put(tmp_path / "results", make_result("Q8_0", status="error", reason="llama-server exited with code 1"))
    summary, rows, doc, html = report(tmp_path)
    by_quant = {r["quant"]: r for r in rows}
    assert by_quant["Q4_1"]["interactive_status"] == "skipped"
    assert by_quant["Q4_1"]["interactive_reason"] == "needs 9 GB, 4 GB free"
    assert profile_of(doc, "Q8_0")["reason"] == "llama-server exited with code 1"
    assert profile_of(doc, "Q8_0")["rating"] is None
    assert "needs 9 GB, 4 GB free" in html and "llama-server exited with code 1" in html
    assert "skipped" in summary.console_table()


def test_html_escapes_reasons(tmp_path):
    put(tmp_path / "results", make_result("Q8_0", status="error", reason=f"server said {XSS}"))
    put(tmp_path / "results", make_result("Q4_1"))
    _, _, _, html = report(tmp_path)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert XSS not in html and "<b>story</b>" not in html


def test_two_hosts_give_two_rows(tmp_path):
    put(tmp_path / "results", make_result("Q4_1"))
    put(tmp_path / "results", make_result("Q4_1", host="intel-n100-4c-16g-123abc", tokens_per_s=1.5,
                                          ttft_s=4.0, itl_cv_pct=10.0))
    summary, rows, doc, html = report(tmp_path)
    assert [(r["host"], r["quant"], r["interactive_rating"]) for r in rows] == [
        (HOST, "Q4_1", "Excellent"), ("intel-n100-4c-16g-123abc", "Q4_1", "Failed")]
    assert [h["id"] for h in doc["metadata"]["hosts"]] == [HOST, "intel-n100-4c-16g-123abc"]
    assert "CPU of intel-n100-4c-16g-123abc" in html
    assert "intel-n100-4c-16g-123abc" in summary.console_table()


def test_no_results_yet_still_writes_valid_empty_reports(tmp_path):
    summary, rows, doc, html = report(tmp_path)
    assert rows == [] and doc["results"] == [] and "<html" in html
    assert "No results" in summary.console_table()


def test_console_table_lists_cells(tmp_path):
    put(tmp_path / "results", make_result("Q4_1"))
    text = build_report(make_spec(), tmp_path / "results", tmp_path / "reports").console_table()
    header, _, row = text.splitlines()[:3]
    assert header.split() == ["model", "quant", "profile", "status", "tokens/s", "TTFT", "s", "rating"]
    assert row.split() == [MODEL, "Q4_1", "interactive", "ok", "118.2", "0.05", "Excellent"]


def test_figures_show_their_interval_next_to_them(tmp_path):
    with_interval = make_result("Q4_1")
    with_interval["intervals"] = {"tokens_per_s": {"n": 7, "low": 114.93, "high": 121.04,
                                                   "method": "distribution-free median (order statistics)"}}
    put(tmp_path / "results", with_interval)
    put(tmp_path / "results", make_result("Q8_0"))  # measured without intervals: the figure alone
    summary, rows, doc, html = report(tmp_path)
    console = summary.console_table().splitlines()
    assert "118.2 (114.9-121.0)" in next(line for line in console if "Q4_1" in line)
    assert "(" not in next(line for line in console if "Q8_0" in line)
    assert "118 (115–121)" in html  # the profile table: 3 significant digits, as every figure there
    assert "tokens_per_s:low" not in rows[0] and "tokens_per_s:low" not in json.dumps(doc)  # bounds are no metric
    entries = {e["quantization"]: e["profiles"]["interactive"] for e in doc["results"]}
    assert entries["Q4_1"]["intervals"] == {"tokens_per_s": {"low": 114.93, "high": 121.04}}
    assert entries["Q8_0"]["intervals"] == {}


def test_frame_leaves_samples_out_and_reads_any_json_layout(tmp_path):
    root = tmp_path / "results"
    put(root, make_result("Q4_1"))
    compact = root / HOST / "demo" / MODEL / "Q8_0" / "interactive.json"
    compact.parent.mkdir(parents=True)
    odd = make_result("Q8_0", tokens_per_s=7.0)
    compact.write_text(json.dumps(odd))  # not write_result's layout
    edited = root / HOST / "demo" / MODEL / "Q2_K" / "interactive.json"
    edited.parent.mkdir(parents=True)
    edited.write_text(json.dumps({**odd, "metrics": {**odd["metrics"], "itl_cv_pct": "n/a"}}))  # by hand
    (root / HOST / "other-spec" / MODEL / "Q4_1").mkdir(parents=True)
    (root / HOST / "other-spec" / MODEL / "Q4_1" / "interactive.json").write_text("{}")
    frame = load_frame(root, "demo")
    assert frame.height == 2 and "samples" not in frame.columns
    assert sorted(frame["tokens_per_s"].to_list()) == [7.0, 118.2]
    assert frame["model_size_bytes"].to_list() == [98_000_000, 98_000_000]
    assert frame["peak_rss_gb"].null_count() == 1  # missing in one file: null, not an error
    assert sorted(frame["itl_cv_pct"].to_list(), key=str) == [12.3, None]  # missing: null
    assert "Q2_K" not in frame["quant"].to_list()  # a figure that is no number: the file is named and left out


def test_each_results_flags_reach_the_frame_as_written_with_and_without_the_index(tmp_path):
    root = tmp_path / "results"
    put(root, {**make_result("Q4_1"), "flags": ["the machine was busy", "clocks disagree by 12%"]})
    put(root, make_result("Q8_0"))  # no flags: an empty list, not null
    index = tmp_path / "reports" / "index.arrow"
    for frame in (load_frame(root, "demo"), load_frame(root, "demo", index), load_frame(root, "demo", index)):
        assert frame["quant"].to_list() == ["Q4_1", "Q8_0"]
        assert frame["flags"].to_list() == [["the machine was busy", "clocks disagree by 12%"], []]


def test_each_rows_rating_summary_is_its_ratings_words(tmp_path):
    """The tooltip of a rated cell: one line per check, as `Rating.summary` words them; none unrated."""
    root = tmp_path / "results"
    put(root, make_result("Q4_1"))
    put(root, make_result("Q8_0", status="error", reason="the server died"))
    spec = make_spec(min_tokens_per_s=150.0)
    frame, _ = for_spec(load_frame(root, "demo"), spec)
    expected = rate("interactive", make_result("Q4_1")["metrics"], spec.thresholds).summary()
    assert "tokens_per_s 118.2 >= 150: missed" in expected
    assert dict(zip(frame["quant"], frame["rating_summary"])) == {"Q4_1": expected, "Q8_0": ""}


def test_json_follows_the_design_shape_with_derived_scores_and_recommendations(tmp_path):
    put(tmp_path / "results", make_result("Q4_1"))
    put(tmp_path / "results", make_result("Q8_0", ttft_s=0.08, tokens_per_s=60.5, itl_cv_pct=30.0))
    _, rows, doc, _ = report(tmp_path)
    meta = doc["metadata"]
    assert meta["hostname"] == HOST and meta["hardware"]["cpu"] == f"CPU of {HOST}"
    assert meta["test_duration_seconds"] == 10.4 and meta["timestamp"].endswith("Z")
    assert meta["config"]["models"][0]["name"] == MODEL
    q4 = next(r for r in doc["results"] if r["quantization"] == "Q4_1")
    assert q4["memory_gb"] == 0.31 and q4["derived"]["efficiency_score"] == 100.0
    assert q4["profiles"]["interactive"]["meaning"]["tokens_per_s"] == "Nearly instant for most prompts"
    overall = doc["recommendations"]["overall"]
    assert [(o["model"], o["quant"]) for o in overall] == [(MODEL, "Q4_1")]
    assert float(rows[1]["memory_gb"]) == 0.31 and float(rows[1]["efficiency_score"]) == 100.0


def test_render_skips_an_unchanged_report_but_not_a_changed_threshold(tmp_path):
    from llmspec.report import render

    put(tmp_path / "results", make_result("Q4_1"))
    args = (tmp_path / "results", tmp_path / "reports")
    first = render(make_spec(), *args)
    stamp = first.html.stat().st_mtime_ns
    again = render(make_spec(), *args)
    assert again.html.stat().st_mtime_ns == stamp  # nothing re-rendered
    assert again.console() == first.console() and "RECOMMENDED CONFIGURATIONS" in again.console()
    stricter = render(make_spec(min_tokens_per_s=150.0), *args)
    assert stricter.html.stat().st_mtime_ns != stamp and "Failed" in stricter.csv.read_text()
    put(tmp_path / "results", make_result("Q8_0"))  # a new result re-renders too
    assert render(make_spec(min_tokens_per_s=150.0), *args).result_count == 2


def test_index_links_every_spec_report(tmp_path):
    from llmspec.report import build_index, render

    put(tmp_path / "results", make_result("Q4_1"))
    render(make_spec(), tmp_path / "results", tmp_path / "reports")
    other = make_spec().model_copy(update={"name": "other", "description": "an <i>empty</i> spec"})
    render(other, tmp_path / "results", tmp_path / "reports")
    page = build_index(tmp_path / "reports").read_text()
    assert 'href="demo/report.html"' in page and 'href="other/report.html"' in page
    assert "an &lt;i&gt;empty&lt;/i&gt; spec" in page


def test_xlsx_beside_the_csv_has_a_summary_and_a_sheet_per_profile(tmp_path):
    """Opened with openpyxl, as a spreadsheet program reads it."""
    import openpyxl

    put(tmp_path / "results", make_result("Q4_1"))
    put(tmp_path / "results", make_result("Q8_0", ttft_s=0.08, tokens_per_s=60.5, itl_cv_pct=30.0))
    summary, rows, _, _ = report(tmp_path)
    book = openpyxl.load_workbook(summary.csv.with_suffix(".xlsx"), read_only=True)
    assert book.sheetnames == ["summary", "interactive"]
    sheet = [list(r) for r in book["interactive"].iter_rows(values_only=True)]
    head = sheet[0]
    assert head[:6] == ["host", "model", "quant", "variant", "status", "rating"]
    by_quant = {r[2]: dict(zip(head, r)) for r in sheet[1:]}
    assert by_quant["Q4_1"]["tokens_per_s"] == 118.2 and by_quant["Q8_0"]["rating"] == "Poor"
    assert [r[2] for r in book["summary"].iter_rows(min_row=2, values_only=True)] == [r["quant"] for r in rows]


def test_json_writes_each_entry_as_json_dumps_would_on_one_line(tmp_path):
    """Other tools diff results.json line by line and read it with any JSON parser: tiny floats,
    quotes, newlines and non-ASCII text keep json.dumps's spelling (sorted keys, 1e-06, escapes);
    the checks keep the compact text frame.for_spec made of them."""
    odd = make_result("Q4_1", ttft_s=4.8e-05, tokens_per_s=118.2, itl_cv_pct=1e-06, peak_rss_gb=0.31)
    odd["flags"] = ['said "hi"\nthen left', "Grüße, plain"]
    put(tmp_path / "results", odd)
    failed = make_result("Q8_0", status="error", reason='exited "1"\tafter C:\\x')
    del failed["flags"]  # a result written before results had flags
    put(tmp_path / "results", failed)
    summary, _, doc, _ = report(tmp_path)
    lines = summary.json.read_text(encoding="utf-8").splitlines()
    entries = lines[lines.index(' "results": [') + 1:-2]
    assert len(entries) == len(doc["results"]) == 2
    checks = re.compile(r'"checks": \[.*?\], "duration_s"')  # spliced in compact, as for_spec wrote them
    for line in entries:
        text = line.removeprefix("  ").removesuffix(",")
        assert checks.sub("", text) == checks.sub("", json.dumps(json.loads(text), sort_keys=True, ensure_ascii=False))
    profile = profile_of(doc, "Q4_1")
    assert profile["metrics"]["ttft_s"] == 4.8e-05 and profile["metrics"]["itl_cv_pct"] == 1e-06
    assert profile["flags"] == odd["flags"]
    assert profile["meaning"]["ttft_s"] == "Feels instant, excellent UX"
    assert profile_of(doc, "Q8_0")["reason"] == 'exited "1"\tafter C:\\x'
    assert profile_of(doc, "Q8_0")["flags"] == []


def test_a_data_file_that_cannot_be_written_fails_the_report_instead_of_passing_silently(tmp_path):
    """results.csv/.json are written beside the page on a second thread; their failure still ends the report."""
    import pytest

    put(tmp_path / "results", make_result("Q4_1"))
    (tmp_path / "reports" / "demo" / "results.json").mkdir(parents=True)  # a folder where the file goes
    with pytest.raises(OSError):
        build_report(make_spec(), tmp_path / "results", tmp_path / "reports")
    assert (tmp_path / "reports" / "demo" / "results.csv").is_file()  # written before the one that failed
