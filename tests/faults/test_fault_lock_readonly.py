"""The project's lock on a read-only filesystem: the project folder is a real read-only bind mount (mounting
needs root; without it the test says so and skips), once fresh and once after a run left build/ behind. `doit`
says in one line which folder it cannot write the lock to and exits 2 before anything runs, with no traceback.

A network filesystem without locking (flock fails with ENOLCK) gets its own one line from the same code; it
is not injected here: this kernel has no NFS or CIFS client (/proc/filesystems), and a FUSE share would need
a FUSE library that is not installed."""

import subprocess
import time

import pytest
from conftest import DOIT, executed_cells
from faultkit import record

pytestmark = [pytest.mark.faults]

SPEC = """
[[endpoints]]
name = "box"
url = "http://127.0.0.1:9"
"""


@pytest.fixture
def read_only(tmp_path):
    """A project folder, and a function that makes it read-only (a bind mount of itself, remounted ro)."""
    root = tmp_path / "p"
    (root / "specs").mkdir(parents=True)
    (root / "specs" / "t.toml").write_text(SPEC)
    mounted = []

    def freeze():
        for args in (["--bind", str(root), str(root)], ["-o", "remount,ro,bind", str(root)]):
            done = subprocess.run(["mount", *args], capture_output=True, text=True)
            if done.returncode != 0:
                pytest.skip(f"cannot mount a read-only folder here (needs root): {done.stderr.strip()}")
            mounted[:] = [root]
        assert subprocess.run(["touch", str(root / "x")], capture_output=True).returncode != 0  # really read-only

    yield root, freeze
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.parametrize("before", ["fresh", "after a run"])
def test_a_project_on_a_read_only_disk_is_one_line_naming_the_folder_and_exit_2(read_only, before):
    root, freeze = read_only
    if before == "after a run":
        (root / "build" / "run").mkdir(parents=True)
        (root / "build" / "run" / "llmspec.lock").write_text("")
    freeze()
    t0 = time.perf_counter()
    done = subprocess.run(DOIT + ["-d", str(root)], capture_output=True, text=True, timeout=300)
    said_s = time.perf_counter() - t0
    assert done.returncode == 2, done
    assert done.stderr.splitlines() == [
        f"llmspec: {root / 'build' / 'run'}: cannot write the project's lock there (Read-only file system); a run "
        "writes its lock, logs and results under build/, so the project must be on a writable disk"], done.stderr
    assert "Traceback" not in done.stdout + done.stderr and executed_cells(done.stdout) == []
    # nothing that only looks (`doit list`) needs the lock, but it cannot write its log either: one line too
    listed = subprocess.run(DOIT + ["-d", str(root), "list"], capture_output=True, text=True, timeout=300)
    assert listed.returncode == 2 and len(listed.stderr.splitlines()) == 1, listed
    assert "Read-only file system" in listed.stderr and "Traceback" not in listed.stderr
    record(f"the project's lock on a read-only filesystem ({before})", 0, 0, said_s)
