"""Results are written atomically, and freshness is decided from the result file alone."""

import json
import os
import signal
import subprocess
import sys

from conftest import REPO

from llmspec.freshness import Freshness
from llmspec.plan.fingerprint import digest
from llmspec.results import FOR_REPORTS, WITHOUT_SAMPLES, Result, ResultPath, judge, read_result, write_result


def freshness(path, inputs):
    """What the planner asks of a stored result: is it up to date for these inputs, and why not."""
    return judge(Result.load(path, WITHOUT_SAMPLES), inputs)

INPUTS = {"method": "interactive/1.1", "profile": {"max_tokens": 64},
          "model": {"name": "m.gguf", "size": 1, "sha256": "ab"},
          "source": {"kind": "package", "origin": "p", "file": "m.gguf"},
          "server": {"version": "1", "args": []}, "host": "h"}


def result(status="ok", inputs=INPUTS):
    return {"status": status, "reason": "", "fingerprint": digest(inputs), "fingerprint_inputs": inputs,
            "metrics": {"x": 1.0}}


def test_roundtrip_sorted_and_rounded(tmp_path):
    path = tmp_path / "a" / "r.json"
    write_result(path, {**result(), "metrics": {"b": 1 / 3, "a": 2.0}})
    text = path.read_text()
    assert text.index('"a"') < text.index('"b"')
    assert read_result(path)["metrics"]["b"] == 0.333333
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]


def test_a_moment_in_unix_seconds_keeps_its_milliseconds(tmp_path):
    """Six significant digits of 1.8e9 seconds would date every request of a day to one 10,000 s
    bucket; a request's send time must still order requests and date them to the millisecond."""
    path = tmp_path / "r.json"
    write_result(path, {**result(), "samples": [{"send_unix": 1796450123.45678, "ttft_s": 0.123456789}]})
    (sample,) = read_result(path)["samples"]
    assert sample == {"send_unix": 1796450123.457, "ttft_s": 0.123457}


def test_fresh_when_fingerprint_matches(tmp_path):
    path = tmp_path / "r.json"
    write_result(path, result())
    assert freshness(path, INPUTS) == Freshness(True, "up to date")


def test_missing_result_is_stale(tmp_path):
    found = freshness(tmp_path / "nope.json", INPUTS)
    assert not found.fresh and "no result yet" in found.reason


def test_changed_setting_is_explained(tmp_path):
    path = tmp_path / "r.json"
    write_result(path, result())
    assert freshness(path, {**INPUTS, "profile": {"max_tokens": 128}}) == \
        Freshness.stale("profile settings changed (max_tokens: 64 -> 128)")


def test_error_results_are_retried(tmp_path):
    path = tmp_path / "r.json"
    write_result(path, {**result("error"), "reason": "server crashed"})
    found = freshness(path, INPUTS)
    assert not found.fresh and "server crashed" in found.reason


def test_model_not_on_disk_trusts_committed_result_with_same_source(tmp_path):
    path = tmp_path / "r.json"
    write_result(path, result())
    assert freshness(path, {**INPUTS, "model": None}).fresh
    other_source = {**INPUTS, "model": None, "source": {"kind": "hf", "origin": "x@main", "file": "m.gguf"}}
    assert not freshness(path, other_source).fresh


def test_killed_writer_leaves_no_half_file(tmp_path):
    """SIGKILL in the middle of writing a large result: the old file stays whole."""
    path = tmp_path / "r.json"
    write_result(path, result())
    before = path.read_text()
    code = (
        "import sys; from pathlib import Path; from llmspec.results import write_result\n"
        "big = {'status': 'ok', 'samples': ['x' * 1000] * 200000}\n"
        "import os, threading; threading.Timer(0.05, lambda: os.kill(os.getpid(), 9)).start()\n"
        f"write_result(Path({str(path)!r}), big)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert path.read_text() == before
    json.loads(path.read_text())
    assert not [p for p in os.listdir(tmp_path) if p != "r.json" and not p.endswith(".tmp")]


def test_reading_without_samples_keeps_everything_else(tmp_path):
    """Planning and reports skip the raw samples; nothing else may go missing, whatever the answers say."""
    path = tmp_path / "r.json"
    tricky = {"content": 'fake\n "status": "error",\n "x": {', "nested": {"status": "error"}}
    write_result(path, {**result(), "samples": [tricky] * 3, "skip_evidence": {"a": 1}})
    full = read_result(path)
    light = read_result(path, WITHOUT_SAMPLES)
    assert "samples" not in light and light == {k: v for k, v in full.items() if k != "samples"}
    assert light["status"] == "ok" and light["skip_evidence"] == {"a": 1}
    report = read_result(path, FOR_REPORTS)  # reports need no fingerprint inputs either
    assert report == {k: v for k, v in light.items() if k != "fingerprint_inputs"} and report["fingerprint"]
    lines = path.read_text().splitlines()
    assert [line[:13] for line in lines if "tricky" in line or "fake" in line] == [' "samples": [']  # one line
    assert '  "x": 1.0' in lines[lines.index(' "metrics": {') + 1]  # the rest indented, diffable
    path.write_text(json.dumps(full, sort_keys=True, indent=1))  # results written before samples had one line
    assert read_result(path, WITHOUT_SAMPLES) == light
    path.write_text(path.read_text()[:200])  # torn by hand: unreadable, so stale, never a crash
    assert read_result(path, WITHOUT_SAMPLES) is None and not freshness(path, INPUTS).fresh


def test_freshness_is_truthy_only_when_fresh():
    """A stale answer must not pass an `if`: the bare tuples it replaced were always truthy."""
    assert Freshness(True, "up to date") and not Freshness.stale("no result yet")


def test_a_result_path_is_built_and_read_back_by_one_type(tmp_path):
    """The planner writes where the report, its history and `compare` read: one type both ways, with
    the byte-identical layout of the contract and a variant in the quant slot."""
    where = ResultPath("host-ab12", "demo", "SmolLM2-135M-Instruct", "Q4_1+t2-fa", "interactive")
    path = where.under(tmp_path)
    assert path == tmp_path / "host-ab12/demo/SmolLM2-135M-Instruct/Q4_1+t2-fa/interactive.json"
    assert where.relative == "host-ab12/demo/SmolLM2-135M-Instruct/Q4_1+t2-fa/interactive.json"
    assert (where.quant, where.variant) == ("Q4_1", "t2-fa")
    assert ResultPath.parse(path) == where == ResultPath.parse(str(path))
    assert ResultPath.parse("build\\results\\" + where.relative.replace("/", "\\")) == where  # a Windows tree
    assert ResultPath.parse("Q4_1/interactive.json") is None and ResultPath.parse(where.relative + ".tmp") is None


def test_a_report_reads_every_result_as_json_loads_does_without_the_skipped_keys(tmp_path):
    """parse_without hands the text left after the skipped keys to pydantic-core's parser; what that
    parser refuses but json.loads reads (a lone surrogate escape, a byte-order mark, hand-written
    files) is read by json, so a report sees exactly the values json.loads gives."""
    from tests.test_report_html import write_demo  # every profile's results, shaped as the profiles write them

    assert write_demo(tmp_path / "demo") > 20
    fixtures = sorted((REPO / "tests" / "fixtures" / "results").rglob("*.json")) + sorted(tmp_path.rglob("*.json"))
    odd = [b'{\n "fingerprint": "f",\n "metrics": {"x": 1.5},\n "reason": "\\ud800 lone",\n "status": "ok"\n}\n',
           b'\xef\xbb\xbf{"fingerprint": "f", "metrics": {"x": NaN}, "samples": [1, 2], "status": "ok"}',
           b'{"status": "ok", "fingerprint": "f", "metrics": {"x": 1e400, "y": -0.0}, "samples": []}']
    for i, data in enumerate(odd):
        (tmp_path / f"odd{i}.json").write_bytes(data)
    for path in [*fixtures, *sorted(tmp_path.glob("odd*.json"))]:
        expected = json.loads(path.read_bytes())
        for key in FOR_REPORTS:
            expected.pop(key, None)
        got = read_result(path, FOR_REPORTS)
        assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True), path.name
