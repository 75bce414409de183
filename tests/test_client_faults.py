"""Answers that are not chat streams (issue #28): each is the request's error with the reason, within
the request timeout, never a hang, a traceback or a silently empty answer. A real local HTTP server
sends each fault."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llmspec.run.client import ChatClient

EVENT = b'data: {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}\n\n'


class Faulty(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

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


@pytest.fixture(scope="module")
def faulty():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Faulty)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize(("fault", "expected"), [
    ("500", "HTTP 500"),
    ("html", "not a chat stream: a 200 answer without a single event (text/html"),
    ("endless", "Timeout: answer not complete within 2 s"),
    ("longline", "not a chat stream: a line of over 1 MB without an end"),
    ("utf8", "not a chat stream: an event it cannot read"),
])
def test_a_broken_answer_is_the_requests_error_within_the_timeout(faulty, fault, expected):
    client = ChatClient(f"{faulty}/{fault}", timeout_s=2.0, deadline_s=2.0)  # as the runner makes its clients
    t0 = time.perf_counter()
    try:
        record = client.chat("Hello", prompt_name="t", max_tokens=8)
    finally:
        client.close()
    assert record.error is not None and expected in record.error, record.error
    assert time.perf_counter() - t0 < 6  # bounded by the 2 s request timeout, not by the server
