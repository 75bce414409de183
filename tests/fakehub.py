"""A real HTTP server on 127.0.0.1 that answers the routes huggingface_hub downloads through.

`HEAD|GET /{repo}/resolve/{revision}/{filename}` (whole, or a byte range) with the hub's headers (X-Repo-Commit,
ETag / X-Linked-Etag = sha256 for LFS files, X-Linked-Size) and its 404s (X-Error-Code
RepoNotFound / RevisionNotFound / EntryNotFound), and `GET /api/models/{repo}/tree/{revision}` (the
file list with sizes that HfApi.list_repo_tree reads), so the real client code runs end to end and
raises its real exceptions. A file can be served with bytes other than the ones advertised,
to test that a corrupted or truncated transfer is caught.

The write side, as `HfApi.create_commit` and `list_repo_tree` use it: `GET /api/{type}s/{repo}/tree/
{rev}` (files with their git blob oid, and the LFS sha256 for LFS files), `POST /api/repos/create`,
`POST /api/{type}s/{repo}/preupload/{rev}` (every file "regular": results are small) and `POST
/api/{type}s/{repo}/commit/{rev}` (the ndjson body applied all at once, as the hub does). A dataset
is the key "datasets/ORG/NAME", as its /resolve route names it. Writes need a bearer token
(`tokens`); `fail_commits` answers the next N commits with HTTP 500 and changes nothing.
"""

from __future__ import annotations

import base64
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

    def __init__(self, files: dict[tuple[str, str], bytes | FakeFile], repos: tuple[str, ...] = (),
                 tokens: tuple[str, ...] = ("hf_test_token",), fail_commits: int = 0):
        self.files = {k: v if isinstance(v, FakeFile) else FakeFile(v) for k, v in files.items()}
        self.repos = set(repos) | {repo for repo, _ in self.files}  # a repo may exist with no file yet
        self.tokens = set(tokens)
        self.fail_commits = fail_commits
        self.requests: list[tuple[str, str]] = []  # (method, path), to assert what the client did
        self.ranges: list[str] = []  # the Range header of each file GET ("" when it asked for all of it)
        self.sent_bytes = 0  # body bytes of files sent, ranges included
        self.commits: list[dict] = []  # {"repo", "oid", "summary", "files": {path: bytes}} per commit applied
        self.bodies: list[bytes] = []  # every request body received, to assert what was sent
        self.auth: list[str | None] = []  # the Authorization header of each request

    def __enter__(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                hub._answer(self, body=False)

            def do_GET(self) -> None:
                if self.path.startswith("/api/"):
                    return hub._api(self)
                hub._answer(self, body=True)

            def do_POST(self) -> None:
                hub._api(self)

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
        head, sep, tail = path.lstrip("/").partition("/resolve/")
        revision, _, filename = tail.partition("/")
        if not sep:
            return self._send(h, 404, {}, b"Not Found", body)
        if head not in self.repos:
            return self._error(h, "RepoNotFound", "Repository not found", body)
        if revision not in ("main", COMMIT, *(c["oid"] for c in self.commits)):
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

    def _api(self, h: BaseHTTPRequestHandler) -> None:
        """The JSON API routes: tree listing, repo creation, preupload and commit."""
        self.requests.append((h.command, h.path))
        self.auth.append(h.headers.get("Authorization"))
        data = h.rfile.read(int(h.headers.get("Content-Length") or 0)) if h.command == "POST" else b""
        self.bodies.append(data)
        path = unquote(h.path.split("?")[0]).removeprefix("/api/")
        if path == "repos/create":
            if not self._authorised(h):
                return self._send_json(h, 401, {"error": "Invalid credentials"})
            asked = json.loads(data)
            prefix = "" if asked.get("type", "model") == "model" else asked["type"] + "s/"
            repo = f"{prefix}{asked.get('organization') or 'me'}/{asked['name']}"
            status = 409 if repo in self.repos else 200
            self.repos.add(repo)
            return self._send_json(h, status, {"url": f"{self.endpoint}/{repo}", "error": "exists"})
        kind, _, rest = path.partition("/")
        for route in ("/tree/", "/preupload/", "/commit/"):
            if route in rest:
                name, _, revision = rest.partition(route)
                break
        else:
            return self._send(h, 404, {}, b"Not Found", True)
        repo = name if kind == "models" else f"{kind}/{name}"
        if repo not in self.repos:
            return self._error(h, "RepoNotFound", "Repository not found", True)
        if route == "/tree/":
            files = [{"type": "file", "path": f, "size": v.size or len(v.data),
                      "oid": hashlib.sha1(b"blob %d\0" % len(v.data) + v.data).hexdigest(),
                      **({"lfs": {"oid": v.etag, "size": v.size or len(v.data), "pointerSize": 130}} if v.lfs else {})}
                     for (r, f), v in sorted(self.files.items()) if r == repo]
            return self._send_json(h, 200, files)
        if not self._authorised(h):
            return self._send_json(h, 401, {"error": "Invalid credentials in Authorization header"})
        if route == "/preupload/":
            asked = json.loads(data)["files"]
            return self._send_json(h, 200, {"files": [{"path": f["path"], "uploadMode": "regular",
                                                       "shouldIgnore": False} for f in asked]})
        if self.fail_commits:
            self.fail_commits -= 1
            return self._send_json(h, 500, {"error": "Internal Error: the commit was not applied"})
        lines = [json.loads(line) for line in data.splitlines() if line.strip()]
        added = {v["value"]["path"]: base64.b64decode(v["value"]["content"]) for v in lines if v["key"] == "file"}
        oid = hashlib.sha1(repr((repo, len(self.commits), sorted(added))).encode()).hexdigest()
        for name, content in added.items():
            self.files[(repo, name)] = FakeFile(content, lfs=False)
        self.commits.append({"repo": repo, "oid": oid, "summary": lines[0]["value"]["summary"], "files": added})
        self._send_json(h, 200, {"commitUrl": f"{self.endpoint}/{repo}/commit/{oid}", "commitOid": oid})

    def _authorised(self, h: BaseHTTPRequestHandler) -> bool:
        return h.headers.get("Authorization", "").removeprefix("Bearer ") in self.tokens

    def _send_json(self, h: BaseHTTPRequestHandler, status: int, value) -> None:
        self._send(h, status, {"Content-Type": "application/json"}, json.dumps(value).encode(), True)

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
