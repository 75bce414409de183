"""The memo beside the reports (report/memo.py): after a threshold edit, the profiles whose inputs
did not change are read back instead of rated and built again, and the report says exactly what a
report made from nothing says. The results are every profile's, shaped as the profiles write them,
on three hosts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import REPO

from llmspec.report import build_report
from llmspec.report.memo import FOLDER
from llmspec.spec import Spec
from tests.test_report import HOST
from tests.test_report_html import OTHER_HOST, demo_spec, write_demo

STAMP = re.compile(rb"20\d\d-\d\d-\d\dT\d\d:\d\d:\d\dZ")  # the report's generation time
HOSTS = {HOST: 1.0, OTHER_HOST: 0.5, "gpu-box-16c-64g-a1b2c3": 3.0}  # host -> speed
# (profile, threshold, new value): each changes that profile's ratings; the load and long-context
# edits change a figure the report derives again from the stored ones (users at the service level,
# load time at the target context).
EDITS = [
    ("interactive", "min_tokens_per_s", 70.0),
    ("load", "max_p90_latency_s", 4.0),
    ("long_context", "target_context_tokens", 512),
]


@pytest.fixture
def results(tmp_path):
    """Every profile of two models' four configurations (test_report_html.write_demo) on three hosts."""
    for host, speed in HOSTS.items():
        write_demo(tmp_path / "results", host, speed)
    return tmp_path / "results"


def edited(spec: Spec, profile: str, threshold: str, value: float) -> Spec:
    limits = getattr(spec.thresholds, profile).model_copy(update={threshold: value})
    return spec.model_copy(update={"thresholds": spec.thresholds.model_copy(update={profile: limits})})


def outputs(folder: Path) -> dict[str, bytes]:
    names = ("report.html", "results.csv", "results.json")
    return {name: STAMP.sub(b"TS", (folder / name).read_bytes()) for name in names}


def kept(folder: Path) -> dict[str, str]:
    """{kind-profile: its file's name (which carries the digest of its inputs)}."""
    return {p.name.split(".")[0]: p.name for p in (folder / FOLDER).glob("*.arrow")}


@pytest.mark.parametrize(("profile", "threshold", "value"), EDITS, ids=[e[0] for e in EDITS])
def test_a_threshold_edit_makes_only_its_profile_again_and_the_report_is_a_fresh_ones(results, tmp_path, profile,
                                                                                         threshold, value):
    spec = demo_spec()
    before = build_report(spec, results, tmp_path / "reports")
    first, was = kept(before.html.parent), figures(before, profile)
    assert {f"{kind}-{profile}" for kind in ("rated", "table", "body", "json")} <= first.keys()
    assert {"charts-configs", "charts-capacity", "charts-context"} <= first.keys()  # read back after the edit

    after = build_report(edited(spec, profile, threshold, value), results, tmp_path / "reports")
    fresh = build_report(edited(spec, profile, threshold, value), results, tmp_path / "fresh")  # nothing kept

    assert outputs(after.html.parent) == outputs(fresh.html.parent)
    assert figures(after, profile) != was  # the edit changed what the report says
    second = kept(after.html.parent)
    made_again = {name for name in first if first[name] != second[name]}
    assert {f"rated-{profile}", f"json-{profile}"} <= made_again
    assert all(name.endswith(f"-{profile}") for name in made_again), made_again  # the other profiles: read back
    assert second == kept(fresh.html.parent)


def test_the_service_levels_ttft_draws_the_capacity_chart_again_and_no_other(results, tmp_path):
    """The capacity chart draws the service level's p90 TTFT across: editing it draws that chart
    again (its rule moves), and the other charts are read back."""
    spec = demo_spec()
    first = kept(build_report(spec, results, tmp_path / "reports").html.parent)
    after = build_report(edited(spec, "load", "max_p90_ttft_s", 0.25), results, tmp_path / "reports")
    fresh = build_report(edited(spec, "load", "max_p90_ttft_s", 0.25), results, tmp_path / "fresh")
    assert outputs(after.html.parent) == outputs(fresh.html.parent)
    second = kept(after.html.parent)
    assert {name for name in first if name.startswith("charts-") and first[name] != second[name]} == {
        "charts-capacity"}


def figures(summary, profile: str) -> list:
    """Each result's rating and metrics of `profile`, as results.json has them."""
    doc = json.loads(summary.json.read_text())
    return [(p.get("rating"), p.get("metrics")) for r in doc["results"] if (p := r["profiles"].get(profile))]


def test_a_torn_memo_file_is_made_again(results, tmp_path):
    spec = demo_spec()
    first = build_report(spec, results, tmp_path / "reports")
    torn = next((first.html.parent / FOLDER).glob("rated-interactive.*.arrow"))
    torn.write_bytes(b"torn")  # its name still matches the inputs: it must not be believed
    again = build_report(spec, results, tmp_path / "reports")
    fresh = build_report(spec, results, tmp_path / "fresh")
    assert outputs(again.html.parent) == outputs(fresh.html.parent)
    assert torn.stat().st_size > 100  # made again and kept


def test_the_memo_and_the_index_stay_out_of_git():
    """Reports and results are committed (build/README.md); what is kept beside them to re-render
    faster is not: it changes with every threshold edit and says nothing new."""
    import subprocess

    kept_files = ["build/reports/demo/.memo/rated-interactive.0123.arrow", "build/reports/demo/.results-index-0.arrow",
                  # what a report killed half way (SIGKILL) leaves: the data-file child's folder, a temp file
                  "build/reports/demo/.llmspec-files-x1y2/frame.arrow", "build/reports/demo/.report.html.x1y2.tmp"]
    shown = ["build/reports/demo/report.html", "build/results/host/demo/m/Q4_1/interactive.json"]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *kept_files, *shown], cwd=REPO,
                             capture_output=True, text=True).stdout.split()
    assert ignored == kept_files
