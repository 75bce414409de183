"""The disk fills while a result is written. Simulated with a real full filesystem: build/results is a
1 MiB tmpfs (mounting one needs root; without it the test says so and skips), filled to the last byte once
the first cell is recorded. The second cell's write fails: no half file and no temp file is left, the
first result is intact, doit names the cell, the error and the disk, and once there is room the next
`doit` measures only that cell."""

import subprocess
import time

import pytest
from conftest import doit, executed_cells
from faultkit import CELL_B, in_second_cell, orphans_after, record, result_files, stop, two_cells

pytestmark = [pytest.mark.faults, pytest.mark.server]


@pytest.fixture
def small_disk(tmp_path):
    where = tmp_path / "p" / "build" / "results"
    where.mkdir(parents=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.strip()}")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder):
    """Write until the filesystem refuses: the disk is full."""
    with open(folder / "filler", "wb", buffering=0) as fh:
        for size in (65536, 4096, 512, 1):
            try:
                while fh.write(b"\0" * size):
                    pass
            except OSError:
                pass


def test_a_full_disk_leaves_no_half_result_names_the_disk_and_the_cell_is_measured_again(tmp_path, small_disk):
    root = two_cells(tmp_path / "p", tokens=32)
    proc, log = in_second_cell(root)
    try:
        finished = result_files(root)
        assert len(finished) == 1
        fill(small_disk)
        assert proc.wait(300) != 0
    finally:
        stop(proc)
    out = log.read_text()
    assert "Traceback" not in out
    (line,) = [x for x in out.splitlines() if "cannot write its result" in x]
    assert line.startswith("llmspec: t:smol-b@Q4_1:interactive: ERROR: cannot write its result "), line
    assert f"No space left on device (the disk mounted at {small_disk}, 0.0 MB free)" in line, line
    assert result_files(root) == finished  # no half file of smol-b, smol-a's intact
    assert not [p for p in small_disk.rglob(".*") if p.is_file()]  # nor a temp file (".interactive.json.*.tmp")
    orphans = orphans_after(root, 5.0)
    (small_disk / "filler").unlink()  # the user frees space
    t0 = time.perf_counter()
    again = doit(root)
    recover_s = time.perf_counter() - t0
    assert executed_cells(again.stdout) == [CELL_B]
    lost = sum(1 for path, body in finished.items() if path.read_bytes() != body)
    record("the disk fills while a result is written", lost, orphans, recover_s)
