"""Result files parsed in several processes (report/rows.py `parse`): the same frame as one
process parsing them in order, and an unreadable file in a worker's share is still warned about
here. The workers are real child processes."""

from __future__ import annotations

import logging
import shutil

import pytest
from conftest import REPO
from polars.testing import assert_frame_equal

from llmspec.report.rows import _parse, parse
from llmspec.results import result_paths
from tests.test_report_html import write_demo

FIXTURES = REPO / "tests" / "fixtures" / "results"
HOST = "amd-epyc-2c-24g-ef098a"


@pytest.fixture
def paths(tmp_path):
    """The demo's real results on three hosts, and every profile's (shaped as the profiles write
    them, test_report_html.write_demo) on three more."""
    for host in (HOST, "intel-n100-4c-8g-d4e5f6", "gpu-box-16c-64g-a1b2c3"):
        shutil.copytree(FIXTURES / HOST, tmp_path / "results" / host)
    for host, speed in (("mac-m2-8c-16g-aaaaaa", 2.0), ("pi5-4c-8g-bbbbbb", 0.2), ("xeon-32c-256g-cccccc", 4.0)):
        write_demo(tmp_path / "results", host, speed)
    return result_paths(tmp_path / "results", "demo")


def test_files_parsed_by_workers_make_the_frame_one_process_makes(paths):
    assert len(paths) > 60  # each process gets files of several hosts and profiles
    assert_frame_equal(parse(paths, workers=2, head_start=5), _parse(paths))
    # this process parses only the first three hosts' files (interactive and batch): the other
    # profiles' metrics come from the worker, and the columns still come in one order
    alone = 2 * 9 - len(paths)  # the head start that leaves this process the first 9 files
    assert_frame_equal(parse(paths, workers=1, head_start=alone), _parse(paths))


def test_an_unreadable_file_in_a_workers_share_is_warned_about_here_and_left_out(paths, caplog):
    torn = paths[-1]  # the last share is a worker's
    with open(torn, "r+b") as fh:
        fh.truncate(40)
    with caplog.at_level(logging.WARNING, logger="llmspec.report.rows"):
        frame = parse(paths, workers=2, head_start=5)
    assert [r.message for r in caplog.records if torn.split("/results/")[-1] in r.getMessage()]
    assert frame.height == len(paths) - 1
    assert_frame_equal(frame, _parse(paths))


def test_a_worker_that_cannot_run_leaves_its_share_to_this_process(paths, monkeypatch, caplog):
    monkeypatch.setenv("PYTHONHOME", "/nonexistent")  # the child interpreter cannot start; this one runs on
    with caplog.at_level(logging.INFO, logger="llmspec.report.rows"):
        frame = parse(paths, workers=2, head_start=5)
    assert_frame_equal(frame, _parse(paths))
    assert sum("parsing" in r.getMessage() and "worker exited" in r.getMessage() for r in caplog.records) == 2
