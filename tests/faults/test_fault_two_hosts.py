"""Two machines measured the same cell and their results meet in one git history: result paths carry the
host, so the merge has no conflict, both results are kept, the report shows them side by side, and this
host's `doit` measures nothing again (the other host's figures are not this machine's)."""

import csv
import json
import shutil
import subprocess
import time

import pytest
from conftest import doit, executed_cells
from faultkit import record, two_cells

pytestmark = [pytest.mark.faults, pytest.mark.server]


def git(root, *args):
    return subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          capture_output=True, text=True, check=True).stdout


def test_two_hosts_results_for_one_cell_merged_through_git_are_both_reported(tmp_path):
    root = two_cells(tmp_path / "p", tokens=16)
    spec = root / "specs" / "t.toml"
    spec.write_text(spec.read_text().split('[[models]]\nname = "smol-b"')[0])  # one cell is enough here
    doit(root)
    (mine,) = (root / "build" / "results").iterdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "specs", "build/results")
    git(root, "commit", "-qm", "this host")
    git(root, "checkout", "-qb", "laptop")
    other = mine.with_name("laptop-2c-8g-0a1b2c")  # what the other machine's run wrote: its own host folder
    shutil.copytree(mine, other)
    (path,) = other.glob("t/smol-a/Q4_1/interactive.json")
    theirs = json.loads(path.read_text())
    theirs["metrics"]["tokens_per_s"] = 12.5
    theirs["host"] = {**theirs["host"], "id": other.name, "cpu": "Laptop CPU"}
    path.write_text(json.dumps(theirs, indent=1, sort_keys=True))
    git(root, "add", "build/results")
    git(root, "commit", "-qm", "the laptop's run")
    git(root, "checkout", "-q", "main")
    t0 = time.perf_counter()
    git(root, "merge", "-q", "--no-edit", "laptop")
    again = doit(root)
    recover_s = time.perf_counter() - t0
    assert executed_cells(again.stdout) == []  # nothing of this host changed
    assert "Traceback" not in again.stderr
    rows = list(csv.DictReader((root / "build" / "reports" / "t" / "results.csv").open()))
    by_host = {row["host"]: row for row in rows}  # one row per configuration on each host
    assert set(by_host) == {mine.name, other.name}, rows
    assert float(by_host[other.name]["interactive_tokens_per_s"]) == 12.5
    assert float(by_host[mine.name]["interactive_tokens_per_s"]) != 12.5
    html = (root / "build" / "reports" / "t" / "report.html").read_text()
    assert mine.name in html and other.name in html
    kept = len(list((root / "build" / "results").glob("*/t/smol-a/Q4_1/interactive.json")))
    record("two hosts' results for one cell merged through git", 2 - kept, 0, recover_s)
