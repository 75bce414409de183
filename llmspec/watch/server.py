"""`llmspec watch`: a live dashboard of the running matrix, on 127.0.0.1 unless told otherwise.

It reads what the run writes (build/run/progress.json, see `state`; the reports under
build/reports/) and nothing else, so it can be started and stopped at any time and any number
of browsers can look. Routes: `/` the page (one self-contained file, no CDN), `/status` the
progress file with the writer's liveness as JSON, `/events` the same as server-sent events
whenever it changes, `/reports/...` the rendered reports.

Why the standard library's ThreadingHTTPServer: the dashboard serves a handful of local
browsers, each holding one long SSE response, which is one thread per client; that is what
ThreadingHTTPServer does, with no new dependency and no event loop beside doit's synchronous
world. What it lacks is added here: heartbeats (a comment line every `HEARTBEAT_S`, so a
vanished client is noticed at the next write), quiet handling of clients that go away
(BrokenPipe / ConnectionReset end that client's thread, no traceback), and a clean Ctrl+C: the
event streams watch a stop flag, the handler threads are daemons, the socket is closed.

Remote watching (`--bind ADDR`, the design document's "remote progress tracking"): the page shows
this machine's paths and figures, so on any address but loopback every route lives under a
token generated at start (`http://ADDR:PORT/<token>/`, printed once) and a request without it
gets 403. It stays read-only either way: GET only, and only the progress file and the reports.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import mimetypes
import secrets
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from urllib.parse import unquote, urlsplit

from llmspec.errors import UserError
from llmspec.watch import state

HOST = "127.0.0.1"  # never another interface: the page shows paths and figures of this machine
DEFAULT_PORT = 8765
POLL_S = 0.25  # how often each event stream looks at the progress file (a stat, a read when changed)
HEARTBEAT_S = 10.0
GONE = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError)


class Dashboard(ThreadingHTTPServer):
    """The HTTP server: `run_dir` holds the progress file, `reports` the rendered reports."""

    daemon_threads = True  # a client that never reads does not keep Ctrl+C waiting
    allow_reuse_address = True

    def __init__(self, run_dir: Path, reports: Path, spec: str | None = None, port: int = DEFAULT_PORT,
                 heartbeat_s: float = HEARTBEAT_S, bind: str = HOST):
        self.run_dir, self.reports, self.spec = Path(run_dir), Path(reports), spec
        self.heartbeat_s = heartbeat_s
        self.stopping = threading.Event()
        self.page = resources.files("llmspec.watch").joinpath("page.html").read_bytes()
        self.bind = bind
        self.token = None if loopback(bind) else secrets.token_urlsafe(24)  # beyond this machine: a secret URL
        self.prefix = f"/{self.token}" if self.token else ""
        if ":" in bind:
            self.address_family = socket.AF_INET6
        try:
            super().__init__((bind, port), Handler)
        except (OSError, OverflowError) as exc:
            raise UserError(f"cannot listen on {bind}:{port} ({getattr(exc, 'strerror', None) or exc}): "
                            "another `llmspec watch` may hold it; choose another with --port"
                            + ("" if loopback(bind) else ", or check --bind names an address of this machine")) \
                from None

    @property
    def url(self) -> str:
        host = f"[{self.bind}]" if ":" in self.bind else self.bind
        return f"http://{host}:{self.server_address[1]}{self.prefix}/"

    def snapshot(self) -> tuple[tuple, dict]:
        """(signature, what /status answers): the progress file, its liveness and the reports."""
        found = state.read(self.run_dir)
        reports = self.report_links()
        body = {"state": found.state, "run": found.doc, "spec": self.spec, "reports": reports, "now": time.time()}
        return (found.signature, tuple(r["mtime"] for r in reports)), body

    def report_links(self) -> list[dict]:
        """Every spec's report.html (the watched spec's first), with when it was rendered."""
        found = []
        for page in sorted(self.reports.glob("*/report.html")):
            try:
                found.append({"spec": page.parent.name, "href": f"{self.prefix}/reports/{page.parent.name}/report.html",
                              "mtime": page.stat().st_mtime})
            except OSError:
                continue
        return sorted(found, key=lambda r: r["spec"] != self.spec)

    def serve(self) -> None:
        """Until Ctrl+C (or `stop()` from another thread); then every event stream ends."""
        try:
            self.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            pass
        finally:
            self.stopping.set()
            self.server_close()

    def stop(self) -> None:
        self.stopping.set()
        self.shutdown()

    def handle_error(self, request, client_address) -> None:
        """A client that went away mid-answer is normal; anything else is still reported."""
        import sys

        if not isinstance(sys.exc_info()[1], GONE):
            super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    server: Dashboard
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        route = unquote(urlsplit(self.path).path)
        if self.server.token is not None:
            given, slash, rest = route.removeprefix("/").partition("/")
            if not hmac.compare_digest(given.encode(), self.server.token.encode()):
                self.send_error(HTTPStatus.FORBIDDEN, "this dashboard needs the token from the URL it printed")
                return
            if not slash:  # /<token> without its slash: relative links would lose the token
                self.send_response(HTTPStatus.MOVED_PERMANENTLY)
                self.send_header("Location", f"{self.server.prefix}/")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            route = "/" + rest
        try:
            if route in ("/", "/index.html"):
                self._send(self.server.page, "text/html; charset=utf-8")
            elif route == "/status":
                self._send(json.dumps(self.server.snapshot()[1]).encode(), "application/json")
            elif route == "/events":
                self._events()
            elif route.startswith("/reports/"):
                self._report(route.removeprefix("/reports/"))
            else:
                self.send_error(HTTPStatus.NOT_FOUND, "not here: try /")
        except GONE:
            self.close_connection = True

    def _send(self, body: bytes, kind: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _report(self, relative: str) -> None:
        """A file under build/reports/, and nothing outside it (no `..`, no links out)."""
        root = self.server.reports.resolve()
        wanted = (root / relative).resolve()
        if not wanted.is_relative_to(root) or not wanted.is_file():
            self.send_error(HTTPStatus.NOT_FOUND, "no such report (run `doit report`)")
            return
        kind = mimetypes.guess_type(wanted.name)[0] or "application/octet-stream"
        self._send(wanted.read_bytes(), kind + ("; charset=utf-8" if kind.startswith("text/") else ""))

    def _events(self) -> None:
        """Server-sent events: the status whenever it changes, a heartbeat comment in between."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        last, beat = None, time.monotonic()
        while not self.server.stopping.is_set():
            signature, body = self.server.snapshot()
            if signature != last:
                last = signature
                self.wfile.write(b"data: " + json.dumps(body).encode() + b"\n\n")
                self.wfile.flush()
                beat = time.monotonic()
            elif time.monotonic() - beat >= self.server.heartbeat_s:
                self.wfile.write(b": heartbeat\n\n")
                self.wfile.flush()
                beat = time.monotonic()
            self.server.stopping.wait(POLL_S)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        """Quiet: one line per request would bury the URL the user needs."""


def loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False  # a host name: it may resolve beyond this machine


def watch(run_dir: Path, reports: Path, spec: str | None, port: int, say=print, bind: str = HOST) -> None:
    """Serve until Ctrl+C."""
    dashboard = Dashboard(run_dir, reports, spec, port, bind=bind)
    if dashboard.token:
        where = " (every interface: use this machine's address in place of it)" if bind in ("0.0.0.0", "::") else ""
        say(f"watching {state.path(run_dir)}, read-only, beyond this machine on {bind}{where}: open {dashboard.url} "
            "(the token in this URL is shown only now; a request without it is refused; Ctrl+C to stop)")
    else:
        say(f"watching {state.path(run_dir)}: open {dashboard.url} (Ctrl+C to stop)")
    dashboard.serve()
