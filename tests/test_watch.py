"""The progress file a run writes and the dashboard that serves it (llmspec.watch), without a browser.

The browser and a real run are tests/test_watch_browser.py; here the file's life (running,
finished, a writer that died) and the server's manners: events on change, heartbeats, clients
that vanish, files outside build/reports/, Ctrl+C, a port already taken.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from llmspec.run.client import RequestRecord
from llmspec.watch import state
from llmspec.watch.server import Dashboard

QUEUE = [{"task": f"t:m@Q4_1:{p}", "model": "m", "config": "Q4_1", "profile": p} for p in ("interactive", "batch")]


class FakeServer:
    """Stands in for llama-server's process: a managed server's RSS is all the writer reads of it."""

    def rss_bytes(self) -> int:
        return 300 * 2**20


def record(tokens: int = 33, span_s: float = 0.5) -> RequestRecord:
    found = RequestRecord("01-x.txt", time.time(), ttft_s=0.25, chunk_times_s=[0.25, 0.25 + span_s])
    found.timings = {"predicted_n": tokens}
    return found


def test_a_run_writes_where_it_stands_and_says_when_it_ended(tmp_path):
    live = state.Writer(tmp_path, temperature=lambda: 51.5)
    assert state.read(tmp_path).doc is None  # nothing before the first cell
    live.begin_cell("t", QUEUE, 1, 90.0, "about 2 min left", 3)
    live.watch_server(FakeServer())
    live.request(record())
    live.line("  m@Q4_1 interactive: request 1/3 (01-x.txt) (0.8 s)")
    deadline = time.monotonic() + 10  # the sampler thread adds a vitals point within SAMPLE_S
    while not state.read(tmp_path).doc["current"]["vitals"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    seen = state.read(tmp_path)
    assert seen.state == "running"
    current = seen.doc["current"]
    assert (current["k"], current["n"], current["eta_s"], current["line"]) == (
        1, 2, 90.0, "m@Q4_1 interactive: request 1/3 (01-x.txt) (0.8 s)")
    assert current["requests"][0]["tokens_per_s"] == 64.0 and current["requests"][0]["ttft_s"] == 0.25
    assert current["vitals"][0]["rss_gb"] == pytest.approx(0.293) and current["vitals"][0]["temperature_c"] == 51.5
    assert [c["state"] for c in seen.doc["specs"]["t"]["cells"]] == ["running", "to run"]
    live.end_cell("ok")
    live.begin_cell("t", QUEUE, 2, 30.0, "about 30 s left", 3)
    live.end_cell("error")
    live.finish()
    seen = state.read(tmp_path)
    assert seen.state == "finished"
    assert [c["state"] for c in seen.doc["specs"]["t"]["cells"]] == ["done", "error"]
    assert seen.doc["specs"]["t"]["up_to_date"] == 3


def test_series_stay_small_on_a_long_cell(tmp_path):
    live = state.Writer(tmp_path, temperature=lambda: None)
    live.begin_cell("t", QUEUE, 1, None, "no basis", 0)
    for _ in range(state.MAX_POINTS + 50):
        live.request(record())
    live.finish()
    assert len(state.read(tmp_path).doc["current"]["requests"]) == state.MAX_POINTS


def test_a_run_that_died_reads_as_not_running(tmp_path):
    """kill -9 or a crash leaves the file unmarked; its writer's pid is gone (or is someone else now)."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / state.FILE).write_text(json.dumps({"pid": dead.pid, "pid_started": time.time() - 5, "finished": None,
                                                   "specs": {}, "current": None, "updated": time.time()}))
    assert state.read(tmp_path).state == "not running"
    import os

    import psutil

    me = {"pid": os.getpid(), "pid_started": psutil.Process().create_time() - 100}  # our pid, another start
    (tmp_path / state.FILE).write_text(json.dumps({**me, "finished": None}))
    assert state.read(tmp_path).state == "not running"
    (tmp_path / state.FILE).write_text('{"pid": 1, "specs"')  # torn (not by our writer, which renames)
    assert state.read(tmp_path).state == "no run"


@pytest.fixture
def dashboard(tmp_path):
    (tmp_path / "reports" / "t").mkdir(parents=True)
    (tmp_path / "reports" / "t" / "report.html").write_text("<p>report</p>")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "secret.txt").write_text("not for the web")
    server = Dashboard(tmp_path / "run", tmp_path / "reports", "t", port=0, heartbeat_s=0.3)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    yield server
    server.stop()
    thread.join(timeout=10)
    assert not thread.is_alive()


def get(server: Dashboard, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    conn.request("GET", path)
    resp = conn.getresponse()
    return resp.status, resp.read()


def handler_threads() -> set[threading.Thread]:
    """The dashboard's threads that each serve one client (socketserver names them after their target)."""
    return {t for t in threading.enumerate() if "process_request_thread" in t.name}


def test_events_come_on_change_with_heartbeats_between(dashboard, tmp_path, capsys):
    before = handler_threads()
    sock = socket.create_connection(("127.0.0.1", dashboard.server_address[1]), timeout=10)
    sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
    stream = sock.makefile("rb")
    assert b"text/event-stream" in b"".join(iter(lambda: stream.readline(), b"\r\n"))
    (client,) = handler_threads() - before  # the thread serving this event stream
    first = json.loads(stream.readline().removeprefix(b"data: "))
    assert first["state"] == "no run" and first["reports"][0]["href"] == "/reports/t/report.html"
    assert stream.readline() == b"\n"
    live = state.Writer(tmp_path / "run", temperature=lambda: None)
    live.begin_cell("t", QUEUE, 1, None, "no basis", 0)
    lines = []
    while not lines or not lines[-1].startswith(b"data: "):
        lines.append(stream.readline())
    assert json.loads(lines[-1].removeprefix(b"data: "))["state"] == "running"
    while (line := stream.readline()) != b": heartbeat\n":  # nothing changes: a heartbeat comes anyway
        assert line in (b"\n",) or line.startswith(b"data: ")
    live.finish()
    stream.close()
    sock.close()  # the client goes away mid-stream: its thread ends at the next write, quietly
    client.join(timeout=30)  # the next heartbeat (0.3 s) finds the client gone
    assert not client.is_alive()
    assert "Traceback" not in capsys.readouterr().err


def test_reports_are_served_and_nothing_outside_them(dashboard):
    assert get(dashboard, "/reports/t/report.html") == (200, b"<p>report</p>")
    assert get(dashboard, "/reports/../run/secret.txt")[0] == 404
    assert get(dashboard, "/reports/%2e%2e/run/secret.txt")[0] == 404
    status, page = get(dashboard, "/")
    assert status == 200 and b"<title>llmspec watch</title>" in page
    bare = page.replace(b"http://www.w3.org/2000/svg", b"")  # SVG's namespace name, never fetched
    assert b"http://" not in bare and b"https://" not in bare  # one offline file: no CDN


def start_watch(root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "llmspec.cli", "watch", *args], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_ctrl_c_ends_the_dashboard_cleanly_with_a_client_attached(tmp_path):
    proc = start_watch(tmp_path, "--port", "0")
    port = int(proc.stdout.readline().rsplit(":", 1)[1].split("/")[0])
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
    assert sock.recv(100).startswith(b"HTTP/1.1 200")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    sock.close()
    assert proc.returncode == 0 and err == ""


def test_a_taken_port_is_one_line_and_exit_2(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = start_watch(tmp_path, "--port", str(port))
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert err.startswith(f"llmspec: cannot listen on 127.0.0.1:{port}") and err.count("\n") == 1


def test_an_unknown_spec_is_one_line(tmp_path):
    (tmp_path / "specs").mkdir()
    proc = start_watch(tmp_path, "nope")
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and err.count("\n") == 1 and "nope.toml" in err


# --- beyond this machine: --bind ---------------------------------------------------------------

def request(port: int, path: str, method: str = "GET") -> tuple[int, bytes, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path)
    resp = conn.getresponse()
    return resp.status, resp.read(), dict(resp.getheaders())


def test_the_default_stays_on_loopback_without_a_token(dashboard):
    assert dashboard.server_address[0] == "127.0.0.1" and dashboard.token is None
    assert dashboard.url == f"http://127.0.0.1:{dashboard.server_address[1]}/"


def test_bound_beyond_loopback_every_route_needs_the_token_and_stays_read_only(tmp_path):
    (tmp_path / "reports" / "t").mkdir(parents=True)
    (tmp_path / "reports" / "t" / "report.html").write_text("<p>report</p>")
    server = Dashboard(tmp_path / "run", tmp_path / "reports", "t", port=0, bind="0.0.0.0")
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        port, token = server.server_address[1], server.token
        assert token and len(token) >= 32 and server.url.endswith(f":{port}/{token}/")
        for path in ("/", "/status", "/events", "/reports/t/report.html", f"/{token[:-1]}/status", "/x/" + token):
            status, body, _ = request(port, path)
            assert status == 403 and b"token" in body, path
        status, page, _ = request(port, f"/{token}/")
        assert status == 200 and b"<title>llmspec watch</title>" in page
        status, body, _ = request(port, f"/{token}/status")
        assert status == 200 and json.loads(body)["reports"][0]["href"] == f"/{token}/reports/t/report.html"
        assert request(port, f"/{token}/reports/t/report.html")[:2] == (200, b"<p>report</p>")
        status, _, headers = request(port, f"/{token}")
        assert status == 301 and headers["Location"] == f"/{token}/"
        assert request(port, f"/{token}/status", "POST")[0] == 501  # read-only: GET is all it answers
        assert request(port, f"/{token}/reports/t/report.html", "PUT")[0] == 501
    finally:
        server.stop()
        thread.join(timeout=10)


def test_watch_bind_prints_the_token_url_once_and_says_read_only(tmp_path):
    proc = start_watch(tmp_path, "--port", "0", "--bind", "0.0.0.0")
    line = proc.stdout.readline()
    url = line.split("open ", 1)[1].split(" ", 1)[0]
    port, token = url.split(":")[2].split("/")[:2]
    assert "read-only" in line and "shown only now" in line and len(token) >= 32
    assert request(int(port), "/status")[0] == 403 and request(int(port), f"/{token}/status")[0] == 200
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and err == "" and token not in out  # printed once, in the first line only
