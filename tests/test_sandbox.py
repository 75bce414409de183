"""The sandbox: every program gone wrong is a verdict, the run goes on, and nothing is left behind.

Real processes, real limits: each case runs as llmspec runs a model's code, and afterwards no
process of it is alive (or a zombie) and nothing it wrote is left outside its temporary folder.
"""

from __future__ import annotations

import os
import socket
import tempfile
import textwrap

import psutil
import pytest

from llmspec import sandbox
from llmspec.sandbox import Limits, run_program

FAST = Limits(timeout_s=3, cpu_s=2, memory_mb=512, file_mb=8, disk_mb=32, processes=16)

CASES = {
    "passes": ("def add(a, b):\n    return a + b\n\nassert add(2, 3) == 5\n", "passed"),
    "wrong answer": ("def add(a, b):\n    return a - b\n\nassert add(2, 3) == 5\n", "wrong_answer"),
    "exception": ("def add(a, b):\n    return a + None\n\nassert add(2, 3) == 5\n", "wrong_answer"),
    "syntax error": ("def add(a, b)\n    return a + b\n", "syntax_error"),
    "loops forever": ("while True:\n    pass\n", "timeout"),
    "sleeps forever": ("import time\ntime.sleep(3600)\n", "timeout"),
    "fork bomb": ("import os\nwhile True:\n    os.fork()\n", "resource_limit"),
    "large file": ("with open('big.bin', 'wb') as f:\n    while True:\n        f.write(b'x' * (1 << 20))\n",
                   "resource_limit"),
    "fills the disk": ("i = 0\nwhile True:\n    open(f'part{i}.bin', 'wb').write(b'x' * (4 << 20))\n    i += 1\n",
                       "resource_limit"),
    "too much memory": ("blocks = [bytearray(64 << 20) for _ in range(64)]\n", "resource_limit"),
    "exits early": ("import os\nos._exit(0)\n", "wrong_answer"),  # a program that skips its tests never passes
    "exit()": ("import sys\nsys.exit(0)\n", "wrong_answer"),
}


def sandbox_processes() -> list[psutil.Process]:
    """Processes of ours or of the sandbox user still around, zombies included."""
    me = psutil.Process()
    found = me.children(recursive=True)
    uid = sandbox.isolation().uid
    if uid is not None:
        found += [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid]
    return found


def outside_writes(uid: int | None) -> list[str]:
    """Files of the sandbox user in the shared temp folder, and this process's sandbox folders not
    cleaned up (another test run's may come and go meanwhile)."""
    tmp = tempfile.gettempdir()
    found = []
    for entry in os.scandir(tmp):
        try:
            owner = entry.stat(follow_symlinks=False).st_uid
        except OSError:
            continue
        if entry.name.startswith(f"llmspec-sandbox-{os.getpid()}-") or (uid is not None and owner == uid):
            found.append(entry.path)
    return found


@pytest.fixture
def clean():
    """Asserts after the test that nothing of any program is left: processes or files."""
    uid = sandbox.isolation().uid
    before = set(outside_writes(uid))
    yield
    assert sandbox_processes() == []
    assert set(outside_writes(uid)) - before == set()


@pytest.mark.parametrize("name", list(CASES))
def test_each_program_gets_a_verdict_of_its_kind(name, clean):
    source, kind = CASES[name]
    verdict = run_program(source, FAST)
    print(name, verdict)
    assert verdict.kind == kind, verdict
    assert verdict.passed == (kind == "passed")
    assert verdict.detail or verdict.passed


def test_a_failure_names_the_line_and_the_run_goes_on(clean):
    for name in ("fork bomb", "loops forever", "too much memory"):
        assert not run_program(CASES[name][0], FAST).passed
    wrong = run_program(CASES["wrong answer"][0], FAST)
    assert "AssertionError" in wrong.detail and "assert add(2, 3) == 5" in wrong.detail
    assert run_program(CASES["passes"][0], FAST).passed  # the sandbox still works after all that


def test_a_process_that_leaves_its_session_is_killed_too(clean):
    """Double fork and setsid, the way a daemon escapes its parent's process group."""
    source = textwrap.dedent("""
        import os, time
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                time.sleep(3600)
            os._exit(0)
        time.sleep(0.2)
    """)
    assert run_program(source, FAST).passed


def test_no_network(clean):
    """A program cannot reach a server on this machine's loopback where the machine allows a new
    network namespace; where it does not, the isolation says so (for the result's flags)."""
    iso = sandbox.isolation()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        source = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'hi')\n"
        verdict = run_program(source, FAST)
        if not iso.network_isolated:
            assert any(note.startswith("not network-isolated: ") for note in iso.notes)
            pytest.skip(f"this machine allows no network namespace: {iso.notes}")
        assert verdict.kind == "wrong_answer" and "Network is unreachable" in verdict.detail, verdict
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody came


def test_the_program_works_in_a_folder_of_its_own(clean):
    source = textwrap.dedent("""
        import os
        open("note.txt", "w").write("x")
        assert os.listdir(".") == ["note.txt"], os.listdir(".")
        assert os.environ["HOME"] == os.getcwd() == os.environ["TMPDIR"]
    """)
    assert run_program(source, FAST).passed
