"""A real HTTP server on 127.0.0.1 that answers the routes huggingface_hub downloads through.

`HEAD|GET /{repo}/resolve/{revision}/{filename}` (whole, or a byte range) with the hub's headers (X-Repo-Commit,
ETag / X-Linked-Etag = sha256 for LFS files, X-Linked-Size) and its 404s (X-Error-Code
RepoNotFound / RevisionNotFound / EntryNotFound), and `GET /api/models/{repo}/tree/{revision}` (the
file list with sizes that HfApi.list_repo_tree reads), so the real client code runs end to end and
raises its real exceptions. A file can be served with bytes other than the ones advertised,
to test that a corrupted or truncated transfer is caught.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class FakeFile:
    data: bytes  # what the hub advertises (size, sha256)
    served: bytes | None = None  # what GET actually sends; None = data
    size: int | None = None  # advertised size override, e.g. far beyond any free disk
    lfs: bool = True  # LFS: ETag is the sha256; git: ETag is the git blob sha1

    @property
    def etag(self) -> str:
        if self.lfs:
            return hashlib.sha256(self.data).hexdigest()
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()


class FakeHub:
    """`with FakeHub({(repo, filename): bytes | FakeFile}) as hub:` then use `hub.endpoint`."""

    def __init__(self, files: dict[tuple[str, str], bytes | FakeFile]):
        self.files = {k: v if isinstance(v, FakeFile) else FakeFile(v) for k, v in files.items()}
        self.requests: list[tuple[str, str]] = []  # (method, path), to assert what the client did
        self.ranges: list[str] = []  # the Range header of each file GET ("" when it asked for all of it)
        self.sent_bytes = 0  # body bytes of files sent, ranges included

    def __enter__(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                hub._answer(self, body=False)

            def do_GET(self) -> None:
                hub._answer(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def _answer(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        self.requests.append((h.command, h.path))
        path = unquote(h.path.split("?")[0])
        if path.startswith("/api/models/") and "/tree/" in path:
            return self._tree(h, path.removeprefix("/api/models/").partition("/tree/")[0], body)
        head, sep, tail = path.lstrip("/").partition("/resolve/")
        revision, _, filename = tail.partition("/")
        if not sep:
            return self._send(h, 404, {}, b"Not Found", body)
        if not any(repo == head for repo, _ in self.files):
            return self._error(h, "RepoNotFound", "Repository not found", body)
        if revision not in ("main", COMMIT):
            return self._error(h, "RevisionNotFound", "Invalid rev id: " + revision, body)
        f = self.files.get((head, filename))
        if f is None:
            return self._error(h, "EntryNotFound", "Entry not found", body)

        data = f.data if f.served is None else f.served
        status, headers = 200, {"X-Repo-Commit": COMMIT, "ETag": f'"{f.etag}"', "Accept-Ranges": "bytes"}
        if f.lfs:
            headers |= {"X-Linked-Etag": f'"{f.etag}"', "X-Linked-Size": str(f.size or len(f.data))}
        rng = h.headers.get("Range", "")
        if body:
            self.ranges.append(rng)
        if rng.startswith("bytes=") and rng[6:].split("-")[0].isdigit():  # "bytes=N-" (resume) or "bytes=N-M"
            first, _, last = rng[6:].partition("-")
            start, end = int(first), min(int(last) if last.isdigit() else len(data) - 1, len(data) - 1)
            status, headers["Content-Range"] = 206, f"bytes {start}-{end}/{len(data)}"
            data = data[start:end + 1]
        self.sent_bytes += len(data) if body else 0
        self._send(h, status, headers, data, body)

    def _tree(self, h: BaseHTTPRequestHandler, repo: str, body: bool) -> None:
        if not any(r == repo for r, _ in self.files):
            return self._error(h, "RepoNotFound", "Repository not found", body)
        entries = [{"type": "file", "path": name, "size": f.size or len(f.data), "oid": f.etag,
                    **({"lfs": {"oid": f.etag, "size": f.size or len(f.data), "pointerSize": 134}} if f.lfs else {})}
                   for (r, name), f in sorted(self.files.items()) if r == repo]
        self._send(h, 200, {"Content-Type": "application/json"}, json.dumps(entries).encode(), body)

    def _error(self, h: BaseHTTPRequestHandler, code: str, message: str, body: bool) -> None:
        headers = {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"}
        self._send(h, 404, headers, b'{"error": "%s"}' % message.encode(), body)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, headers: dict[str, str], data: bytes, body: bool) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if body:
            h.wfile.write(data)
