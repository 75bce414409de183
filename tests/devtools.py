"""Headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`).

No new dependency: Chromium reads JSON commands from fd 3 and writes answers and events to fd 4,
each message ended by a NUL byte. This is the least a test needs to watch a live page: open a
URL, evaluate an expression, take a screenshot, and collect console errors, uncaught exceptions
and every URL the page requested.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# The flags that work on this machine (tests/test_report_browser.py).
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _high(fd: int) -> int:
    """The same pipe end at a number >= 10, so moving it onto 3 or 4 in the child clobbers nothing."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


class Browser:
    def __init__(self, profile: Path, width: int = 1200, height: int = 1000):
        to_child, self._out = (_high(fd) for fd in os.pipe())
        self._in, from_child = (_high(fd) for fd in os.pipe())

        def onto_3_and_4():
            os.dup2(to_child, 3)
            os.dup2(from_child, 4)

        self.log = open(profile.with_suffix(".log"), "w")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}",
                                      f"--window-size={width},{height}"], stdout=self.log, stderr=self.log,
                                     pass_fds=(3, 4), preexec_fn=onto_3_and_4)
        os.close(to_child)
        os.close(from_child)
        self._ids, self._answers = iter(range(1, 10**9)), {}
        self._cond = threading.Condition()
        self.events: queue.Queue = queue.Queue()
        self.seen: list[dict] = []  # every event, in order
        threading.Thread(target=self._read, daemon=True).start()
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.call(f"{domain}.enable", session=True)

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = os.read(self._in, 1 << 16)
            except OSError:  # closed by close()
                return
            if not chunk:
                return
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for raw in messages:
                message = json.loads(raw)
                with self._cond:
                    if "id" in message:
                        self._answers[message["id"]] = message
                    else:
                        self.seen.append(message)
                    self._cond.notify_all()

    def call(self, method: str, session: bool = False, timeout_s: float = 60, **params) -> dict:
        ident = next(self._ids)
        message = {"id": ident, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        with self._cond:
            assert self._cond.wait_for(lambda: ident in self._answers, timeout_s), f"{method}: no answer"
            answer = self._answers.pop(ident)
        assert "error" not in answer, (method, answer["error"])
        return answer["result"]

    def open(self, url: str) -> None:
        """Navigate and return once the page's own scripts have run (its document is complete)."""
        self.call("Page.navigate", session=True, url=url)
        self.wait_for(f"location.href === {json.dumps(url)} && document.readyState === 'complete'")

    def evaluate(self, expression: str):
        found = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True,
                          awaitPromise=True)
        assert "exceptionDetails" not in found, found["exceptionDetails"]
        return found["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 60, every_s: float = 0.1):
        """Evaluate until the answer is truthy; that answer."""
        deadline = time.monotonic() + timeout_s
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            assert time.monotonic() < deadline, f"never true: {expression}"
            time.sleep(every_s)

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", session=True, format="png", captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))

    def console_errors(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions and the browser's own error entries."""
        found = []
        for event in list(self.seen):
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
                found.append(" ".join(str(a.get("value", a.get("description"))) for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                found.append(json.dumps(params["exceptionDetails"])[:500])
            elif method == "Log.entryAdded" and params["entry"]["level"] in ("error", "warning"):
                found.append(f"{params['entry'].get('url', '')}: {params['entry']['text']}")
        return found

    def requests(self) -> list[str]:
        """Every URL the page asked for."""
        return [e["params"]["request"]["url"] for e in list(self.seen)
                if e.get("method") == "Network.requestWillBeSent"]

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout_s=10)
        except (AssertionError, OSError):
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._out, self._in):
            os.close(fd)
        self.log.close()
