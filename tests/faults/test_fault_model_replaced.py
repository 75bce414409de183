"""The model file is replaced while a run is going (a download finishes, a re-quantization writes over
it): the running llama-server still serves the file it loaded, so no figure taken from it may be stored
under the new file's fingerprint. Every cell of that file measured across the change is an error naming the
file, and the next `doit` measures the file as it is now."""

import json
import os
import shutil
import time

import pytest
from conftest import REPO, doit, executed_cells
from faultkit import in_second_cell, orphans_after, record, stop

pytestmark = [pytest.mark.faults, pytest.mark.server]

# Two cells of one file (two names for the same path): one server start, shared by both.
SPEC = """
[server]
ctx_size = 1024

[limits]
quiet_wait_s = 5

[profiles.interactive]
requests = 3
max_requests = 3
max_tokens = 200

[[models]]
name = "smol-a"
size = "135M"
quants = ["Q4_1"]
files = {{ Q4_1 = "{path}" }}

[[models]]
name = "smol-b"
size = "135M"
quants = ["Q4_1"]
files = {{ Q4_1 = "{path}" }}
"""


def test_a_model_file_replaced_mid_run_makes_its_cells_errors_naming_it(tmp_path, smol_gguf):
    model = tmp_path / "models" / "smol.gguf"
    model.parent.mkdir()
    shutil.copyfile(smol_gguf, model)
    root = tmp_path / "p"
    (root / "specs").mkdir(parents=True)
    (root / "prompts").symlink_to(REPO / "prompts")
    (root / "specs" / "t.toml").write_text(SPEC.format(path=model))
    first, log = in_second_cell(root)  # smol-a measured on the file as it was; smol-b mid-stream
    try:
        new = model.with_name("smol.gguf.part")  # as a download does: write beside, then rename over
        shutil.copyfile(smol_gguf, new)
        with open(new, "ab") as fh:
            fh.write(b"\0" * 4096)  # padding after the tensors: another file, still a loadable model
        os.replace(new, model)
        assert first.wait(300) != 0
    finally:
        stop(first)
    out = log.read_text()
    assert "Traceback" not in out
    files = (root / "build" / "results").glob("*/*/*/*/*.json")
    results = {p.parents[1].name: json.loads(p.read_text()) for p in files}
    assert results["smol-a"]["status"] == "ok"  # finished before the change: the file it measured
    assert results["smol-b"]["status"] == "error"
    assert results["smol-b"]["reason"].startswith("the model file smol.gguf changed on disk while the cell measured "
                                                  "it (now "), results["smol-b"]["reason"]
    orphans = orphans_after(root, 5.0)
    t0 = time.perf_counter()
    again = doit(root)
    recover_s = time.perf_counter() - t0
    # smol-a's result is of the old file: stale now, measured again like smol-b, on the new file.
    assert sorted(executed_cells(again.stdout)) == ["cell:t:smol-a@Q4_1:interactive", "cell:t:smol-b@Q4_1:interactive"]
    size = model.stat().st_size
    for p in (root / "build" / "results").glob("*/*/*/*/*.json"):
        result = json.loads(p.read_text())
        assert result["status"] == "ok" and result["model_file"]["size"] == size
    record("the model file replaced while a run is going", 0, orphans, recover_s)
