"""A real local HTTP server whose answers are not chat streams, one fault per path (`/<fault>/...`):
`500`, `html` (a web page), `endless` (a stream that never ends), `longline` (an SSE line over 1 MB),
`utf8` (an event that is not UTF-8). Shared by the client's tests and the fault suite (issue #28)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

EVENT = b'data: {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}\n\n'


class Faulty(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (http.server's name)
        """The model list answers as an OpenAI-compatible server's would (so a client gets as far as asking),
        except under `html`, where everything is the web page."""
        if self.path.split("/")[1] == "html":
            self._send(200, b"<html><body>Welcome to nginx!</body></html>", "text/html")
        else:
            self._send(200, b'{"object": "list", "data": [{"id": "m", "object": "model"}]}', "application/json")

    def do_POST(self):  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        fault = self.path.split("/")[1]
        if fault == "500":
            self._send(500, b'{"error": "boom"}', "application/json")
        elif fault == "html":
            self._send(200, b"<html><body>Welcome to nginx!</body></html>", "text/html")
        else:
            self.send_response(200)  # chunked, as every streaming server sends
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                self._stream(fault)
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass  # the client hung up, as it should

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _stream(self, fault: str) -> None:
        self._chunk(EVENT)
        if fault == "endless":  # a comment line every 0.1 s, for up to a minute: never idle, never done
            for _ in range(600):
                time.sleep(0.1)
                self._chunk(b": still here\n")
        elif fault == "longline":
            for _ in range(9):
                self._chunk(b"x" * (1 << 17))
            time.sleep(5)
        elif fault == "utf8":
            self._chunk(b'data: {"choices": [{"index": 0, "delta": {"content": "\xff\xfe"}}]}\n\n')
            self._chunk(b"data: [DONE]\n\n")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serving() -> Iterator[str]:
    """The server on a free port of 127.0.0.1, as its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Faulty)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
