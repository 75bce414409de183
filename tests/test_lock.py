"""One run per project at a time (llmspec/lock.py): a second run says who holds the project and starts
nothing; a run killed by kill -9 leaves no lock that outlives it.

The holders here are real processes that take the lock the way `doit` does (`lock.hold`), so the kernel's
fcntl lock is what the second run meets; only the last test starts a real engine.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SMOL_MODEL, doit, doit_until_first_request, executed_cells, llama_servers_under

# An endpoint that is never asked: `doit report` renders from results and measures nothing.
SPEC = """
[[endpoints]]
name = "box"
url = "http://127.0.0.1:9"
"""

HOLD = """
import sys, time
from pathlib import Path
from llmspec import lock
lock.hold(Path(sys.argv[1]), "doit (the first run)")
print("held", flush=True)
sys.stdin.read()  # until the test closes stdin, or kills this process
"""


def holder(run_dir: Path) -> subprocess.Popen:
    """A process holding the project's lock, returned once it holds it."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "held\n"
    return proc


def release(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    proc.wait(30)


@pytest.mark.doit
def test_a_second_run_gets_one_line_naming_the_holder_and_exit_2(project):
    project(SPEC)
    root = project.root
    first = holder(root / "build" / "run")
    try:
        second = doit(root, "report", check=False)
        looking = doit(root, "list", check=False)  # commands that only look do not need the lock
    finally:
        release(first)
    assert second.returncode == 2 and "Traceback" not in second.stderr
    (line,) = second.stderr.strip().splitlines()
    assert line.startswith(f"llmspec: another run holds this project (doit (the first run), pid {first.pid}, started ")
    assert line.endswith("wait for it to finish or stop it first: two runs on one machine measure each other")
    assert not (root / "build" / "reports").exists()  # it started nothing
    assert looking.returncode == 0 and "report" in looking.stdout
    assert doit(root, "report").returncode == 0  # the holder has finished: the project is free again


@pytest.mark.doit
def test_a_lock_left_by_a_killed_run_is_taken_over(project):
    """kill -9 gives no chance to clean up: the lock file stays, naming the dead run, but the kernel has
    let go of the lock, so the next run takes the project without anyone deleting anything."""
    project(SPEC)
    root = project.root
    killed = holder(root / "build" / "run")
    killed.send_signal(signal.SIGKILL)
    killed.wait(30)
    lock_file = root / "build" / "run" / "llmspec.lock"
    assert json.loads(lock_file.read_text())["pid"] == killed.pid  # stale: its holder is gone
    after = doit(root, "report", check=False)
    assert after.returncode == 0, after.stderr
    assert "another run holds this project" not in after.stderr
    (line,) = [x for x in after.stderr.splitlines() if "taking over" in x]
    assert line.startswith(f"llmspec: taking over this project from doit (the first run), pid {killed.pid}, started ")
    assert line.endswith(", which ended without letting go (killed?)")
    assert (root / "build" / "reports" / "t" / "report.html").is_file()
    assert lock_file.read_text() == ""  # the run that took it over ended normally and let go
    again = doit(root, "report")
    assert "taking over" not in again.stderr  # so the next run takes it without a word


@pytest.mark.doit
def test_a_holder_whose_details_cannot_be_read_is_still_refused_in_one_line(project):
    """Whatever the lock file says (an older llmspec, a hand edit), the lock itself decides."""
    project(SPEC)
    root = project.root
    run_dir = root / "build" / "run"
    run_dir.mkdir(parents=True)
    (run_dir / "llmspec.lock").write_text("not json")
    garbled = subprocess.Popen([sys.executable, "-c", "import fcntl, sys\nf = open(sys.argv[1], 'a')\n"
                                "fcntl.flock(f, fcntl.LOCK_EX)\nprint('held', flush=True)\nsys.stdin.read()",
                                str(run_dir / "llmspec.lock")],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert garbled.stdout.readline() == "held\n"
        second = doit(root, "report", check=False)
    finally:
        release(garbled)
    assert second.returncode == 2
    assert second.stderr.strip() == ("llmspec: another run holds this project (a run whose details are unreadable); "
                                     "wait for it to finish or stop it first: two runs on one machine measure "
                                     "each other")


@pytest.mark.server
def test_a_second_run_on_the_project_says_who_holds_it_and_starts_nothing(project):
    project("""
[server]
ctx_size = 1024

[limits]
quiet_wait_s = 2

[profiles.interactive]
requests = 3
max_requests = 3  # the interval is not what this test is about: keep it short
max_tokens = 200
""" + SMOL_MODEL)
    root = project.root
    first, log = doit_until_first_request(root)
    try:
        second = doit(root, check=False)
        assert second.returncode == 2
        assert "Traceback" not in second.stderr
        line = second.stderr.strip().splitlines()[-1]
        assert line.startswith("llmspec: another run holds this project (doit") and f"pid {first.pid}" in line
        assert len(llama_servers_under(root)) == 1  # only the first run's
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(60)
    assert executed_cells(doit(root).stdout) == ["cell:t:SmolLM2-135M-Instruct@Q4_1:interactive"]  # lock released
