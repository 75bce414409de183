"""The index of parsed results beside the reports: a re-render whose results did not change reads
it instead of every result file, and any file whose size or modification time changed is parsed
again, so a new figure shows and a deleted result disappears.

What is read is counted by the interpreter's own audit events (every `open` of a result file
under the fixture folder), not by patching llmspec: the files are the demo's real results.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from conftest import REPO
from polars.testing import assert_frame_equal

from llmspec.report import build_report
from llmspec.report.frame import load_frame
from llmspec.report.parsed import PREFIX, index_path
from llmspec.results import result_paths
from llmspec.spec import load_spec

FIXTURES = REPO / "tests" / "fixtures" / "results"
HOST = "amd-epyc-2c-24g-ef098a"
OPENED: list[str] = []  # result files opened while a test watches (`watching`)
WATCHED: list[str] = []  # the folder being watched, if any


def _audit(event: str, args: tuple) -> None:
    if event == "open" and WATCHED and isinstance(args[0], str) and args[0].startswith(WATCHED[0]) \
            and args[0].endswith(".json"):
        OPENED.append(args[0])


sys.addaudithook(_audit)  # cannot be removed; it records nothing unless a test watches


def opened_by(call, root: Path):
    """The result files under `root` that `call()` opened, and what it returned."""
    OPENED.clear()
    WATCHED[:] = [str(root)]
    try:
        value = call()
    finally:
        WATCHED.clear()
    return sorted(OPENED), value


@pytest.fixture
def fleet(tmp_path):
    """The demo's real results of one host, copied twice more under other host folders."""
    results = tmp_path / "results"
    for host in (HOST, "intel-n100-4c-8g-d4e5f6", "gpu-box-16c-64g-a1b2c3"):
        shutil.copytree(FIXTURES / HOST, results / host)
    return results


def test_unchanged_results_are_read_from_the_index_not_the_files(fleet, tmp_path):
    index = index_path(tmp_path / "reports" / "demo")
    files = result_paths(fleet, "demo")
    first_read, first = opened_by(lambda: load_frame(fleet, "demo", index), fleet)
    assert first_read == sorted(files) and index.is_file()
    again_read, again = opened_by(lambda: load_frame(fleet, "demo", index), fleet)
    assert again_read == []  # nothing changed: not one result file opened
    assert_frame_equal(again, load_frame(fleet, "demo"))  # the same frame as parsing every file
    assert_frame_equal(first, again)


def test_a_touched_file_is_parsed_again_and_only_it(fleet, tmp_path):
    index = index_path(tmp_path / "reports" / "demo")
    load_frame(fleet, "demo", index)
    touched = result_paths(fleet, "demo")[3]
    st = os.stat(touched)
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # same bytes, a new time
    read, frame = opened_by(lambda: load_frame(fleet, "demo", index), fleet)
    assert read == [touched]
    assert_frame_equal(frame, load_frame(fleet, "demo"))
    read, _ = opened_by(lambda: load_frame(fleet, "demo", index), fleet)
    assert read == []  # the index now holds the touched file's new time


def test_a_changed_figure_shows_and_a_deleted_result_disappears(fleet, tmp_path):
    spec = load_spec(REPO / "specs" / "demo.toml")
    build_report(spec, fleet, tmp_path / "reports")
    cell = fleet / "intel-n100-4c-8g-d4e5f6" / "demo" / "SmolLM2-135M-Instruct" / "Q4_1"
    data = json.loads((cell / "interactive.json").read_text())
    data["metrics"]["tokens_per_s"] = 4242.5  # rewritten in place, as a new measurement would be
    (cell / "interactive.json").write_text(json.dumps(data, sort_keys=True, indent=1))
    (cell / "batch.json").unlink()
    summary = build_report(spec, fleet, tmp_path / "reports")
    doc = json.loads(summary.json.read_text())
    mine = [r for r in doc["results"] if r["host"] == "intel-n100-4c-8g-d4e5f6" and r["quantization"] == "Q4_1"]
    assert mine[0]["profiles"]["interactive"]["metrics"]["tokens_per_s"] == 4242.5
    assert "batch" not in mine[0]["profiles"]
    others = [r for r in doc["results"] if r["host"] == HOST and r["quantization"] == "Q4_1"]
    assert "batch" in others[0]["profiles"]
    assert "4242" in summary.html.read_text()
    assert summary.result_count == len(result_paths(fleet, "demo"))


def test_a_broken_or_old_index_is_rebuilt(fleet, tmp_path):
    out = tmp_path / "reports" / "demo"
    out.mkdir(parents=True)
    old = out / f"{PREFIX}-000000000000.arrow"  # another llmspec version's
    old.write_bytes(b"not arrow")
    index = index_path(out)
    index.write_bytes(b"torn")
    read, frame = opened_by(lambda: load_frame(fleet, "demo", index), fleet)
    assert len(read) == len(result_paths(fleet, "demo"))
    assert_frame_equal(frame, load_frame(fleet, "demo"))
    assert not old.exists() and index.stat().st_size > 100
