"""The data files of a report with thousands of results are written by a child process
(report/datafiles.py): the same bytes as this process writes, the memo kept by the child, a child
that cannot start made up for here, and none left behind when the report fails half way.

The results are every profile's, shaped as the profiles write them (test_report_html.write_demo),
on enough hosts for more results than a spreadsheet gets, so the child writes them; the child
is a real `python -m` process.
"""

from __future__ import annotations

import logging

import psutil
import pytest

from llmspec.report.configs import broadcast_serverless, configs
from llmspec.report.datafiles import NAMES, XLSX_MAX_RESULTS, Writer, write
from llmspec.report.frame import for_spec, load_frame
from llmspec.report.memo import FOLDER, NO_MEMO, Memo
from tests.test_fleet_scale import host_name
from tests.test_report_html import demo_spec, write_demo

HEAD = ' "metadata": {"spec": "demo"},\n "recommendations": {},\n'


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    root = tmp_path_factory.mktemp("datafiles")
    written = i = 0
    while written <= XLSX_MAX_RESULTS:
        written += write_demo(root / "results", host_name(i), speed=1.0 + i / 50)
        i += 1
    spec = demo_spec()
    frame, _ = for_spec(load_frame(root / "results", spec.name), spec)
    wide = broadcast_serverless(frame)
    assert wide.height > XLSX_MAX_RESULTS
    return wide, configs(wide, spec, {})


def written_here(frames, folder):
    write(folder, *frames, lambda: HEAD)
    return {name: (folder / name).read_bytes() for name in NAMES}


def children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "llmspec.report.datafiles" in " ".join(p.cmdline())]


def test_a_child_process_writes_the_bytes_this_process_writes_and_keeps_the_json_memo(frames, tmp_path, caplog):
    out = tmp_path / "child"
    with caplog.at_level(logging.INFO, logger="llmspec.report.datafiles"), Memo(out / FOLDER) as memo, \
            Writer(out, memo, frames[0].height) as files:
        assert files.in_child
        files.start(*frames)
        assert children()  # started with the report, it has been waiting for the frames
        files.finish(HEAD)
        files.result()
    assert {name: (out / name).read_bytes() for name in NAMES} == written_here(frames, tmp_path / "here")
    assert not caplog.records  # nothing was made up for
    assert sorted(p.name.split(".")[0] for p in (out / FOLDER).glob("json-*")) == sorted(
        f"json-{p}" for p in frames[0]["profile"].unique())
    assert not list(out.glob(".llmspec-files-*")) and not children()
    assert not (out / "results.xlsx").exists()  # more results than a spreadsheet gets


def test_a_child_that_cannot_start_leaves_the_files_to_this_process(frames, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("PYTHONHOME", "/nonexistent")  # the child interpreter cannot start; this one runs on
    out = tmp_path / "child"
    with caplog.at_level(logging.INFO, logger="llmspec.report.datafiles"), Writer(out, NO_MEMO,
                                                                                  frames[0].height) as files:
        files.start(*frames)
        files.finish(HEAD)
        files.result()
    assert {name: (out / name).read_bytes() for name in NAMES} == written_here(frames, tmp_path / "here")
    assert [r.getMessage() for r in caplog.records if "writing the data files here: the child process exited"
            in r.getMessage()]


def test_a_report_that_fails_half_way_leaves_no_child_no_folder_and_no_data_file(frames, tmp_path):
    out = tmp_path / "child"
    with pytest.raises(RuntimeError, match="the page failed"), Writer(out, NO_MEMO, frames[0].height) as files:
        files.start(*frames)  # the child is at work; results.json waits for its head, which never comes
        raise RuntimeError("the page failed")
    assert not children()
    assert sorted(p.name for p in out.iterdir()) == []


def test_a_report_of_few_results_writes_its_data_files_on_a_thread(frames, tmp_path):
    few = frames[0].head(XLSX_MAX_RESULTS), frames[1]
    with Writer(tmp_path, NO_MEMO, few[0].height) as files:
        assert not files.in_child and not children()
        files.start(*few)
        files.finish(HEAD)
        files.result()
    assert (tmp_path / "results.xlsx").is_file()  # a spreadsheet too
    assert b'"results": [' in (tmp_path / "results.json").read_bytes()
