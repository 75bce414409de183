"""The server's port is taken by another program between choosing and binding. Injected with real processes:
the llama-server llmspec runs (LLAMA_SERVER) is a wrapper that, on its first start, has a separate process
bind the `--port` it was given and then execs the real llama-server, which fails to bind it exactly as it
would beside any other program. The cell must not notice: llama-server's own "couldn't bind" line is
recognised, the server starts again on a new port, the result is ok and no server is left behind."""

import re
import signal
import sys
import time

import psutil
import pytest
from conftest import executed_cells
from faultkit import CELL_A, CELL_B, orphans_after, record, result_files, results, start_doit, stop, two_cells

pytestmark = [pytest.mark.faults, pytest.mark.server]

# The other program: binds the port, says so, and holds it until the test ends it.
HOLDER = ("import socket, sys, time\n"
          "s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
          "print('bound', flush=True); time.sleep(600)\n")

WRAPPER = """#!{python}
import os, subprocess, sys
from pathlib import Path

real, args, mark = {real!r}, sys.argv[1:], Path({mark!r})
if "--port" in args and not mark.exists():  # the first start (not `--version`): someone takes the port first
    port = args[args.index("--port") + 1]
    holder = subprocess.Popen([sys.executable, "-c", {holder!r}, port], stdout=subprocess.PIPE,
                              start_new_session=True)
    assert holder.stdout.readline().strip() == b"bound"
    mark.write_text(f"{{port}} {{holder.pid}}")
os.execv(real, [real, *args])
"""


def wrapper(root, real) -> tuple:
    folder = root / "bin"
    folder.mkdir()
    path, mark = folder / "llama-server", root / "port-taken"
    path.write_text(WRAPPER.format(python=sys.executable, real=str(real), mark=str(mark), holder=HOLDER))
    path.chmod(0o755)
    return path, mark


def test_a_port_taken_before_llama_server_binds_it_is_retried_on_a_new_port(tmp_path, llama_server):
    root = two_cells(tmp_path / "p", tokens=32)
    binary, mark = wrapper(root, llama_server)
    holder = None
    t0 = time.perf_counter()
    proc, log = start_doit(root, env={"LLAMA_SERVER": str(binary)})
    try:
        assert proc.wait(600) == 0, log.read_text()
        recover_s = time.perf_counter() - t0
        taken, pid = mark.read_text().split()
        holder = psutil.Process(int(pid))
        assert any(c.laddr.port == int(taken) for c in holder.net_connections("tcp")), "the holder held the port"
    finally:
        stop(proc)
        if holder is not None and holder.is_running():
            holder.send_signal(signal.SIGKILL)
            holder.wait(10)
    out = log.read_text()
    assert "Traceback" not in out
    assert executed_cells(out) == [CELL_A, CELL_B]
    assert {name: r["status"] for name, r in results(root).items()} == {"smol-a": "ok", "smol-b": "ok"}
    (server_log,) = (root / "build").rglob("smol-a@*.log")
    text = server_log.read_text(errors="replace")
    ports = re.findall(r"^=== \S+ .* --port (\d+)", text, re.M)
    assert len(ports) == 2 and ports[0] == taken and ports[1] != taken, ports  # started twice, on a new port
    assert f"couldn't bind HTTP server socket, hostname: 127.0.0.1, port: {taken}" in text  # llama-server's own words
    assert f"port {taken} was taken before llama-server bound it; retrying on another" in out
    orphans = orphans_after(root, 5.0)
    assert orphans == 0
    assert not holder.is_running() or holder.status() == psutil.STATUS_ZOMBIE  # no leftover holder either
    lost = 2 - len(result_files(root))
    record("the server's port is taken between choosing and binding", lost, orphans, recover_s)
