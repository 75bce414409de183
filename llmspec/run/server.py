"""One engine's server process (llama-server by default): started on a free loopback port,
watched, and always stopped. What to start and how to tell it is ready comes from the engine
(`llmspec.engines`); the lifecycle here is the same for every engine.

No path may leave a server running: the child gets PR_SET_PDEATHSIG so it dies with us even
after `kill -9`, its pid is recorded so the next run can stop a survivor, and `stop()` escalates
from SIGTERM to SIGKILL. Memory is watched from outside (VmHWM, VmSwap) because the server's own
reports do not include what the kernel actually charged.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from llmspec.engines import engine_named
from llmspec.engines.base import Engine, ServerArgs
from llmspec.errors import CellError
from llmspec.results import KILLED

log = logging.getLogger(__name__)
STOP_GRACE_S = 30.0


@dataclass
class LoadStats:
    load_time_s: float = 0.0
    load_disk_read_mb: float = 0.0
    load_disk_read_mb_per_s: float = 0.0


@dataclass
class MemoryWatch:
    peak_rss_bytes: int = 0
    peak_swap_bytes: int = 0


class Server:
    """`engine` defaults to the one `args` names; `model_name` is what requests carry (the engine's
    `after_start` decides it: Ollama serves an imported copy under its own name)."""

    def __init__(self, binary: Path, model: Path, args: ServerArgs, log_path: Path, pid_file: Path,
                 load_timeout_s: float, engine: Engine | None = None):
        self.binary, self.model, self.args = binary, model, args
        self.engine = engine or engine_named(args.engine)
        self.model_name = "default"
        self.log_path, self.pid_file, self.load_timeout_s = log_path, pid_file, load_timeout_s
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.load = LoadStats()
        self.memory = MemoryWatch()
        self._stop_watch = threading.Event()
        self._watcher: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start and wait until /health answers 200; raise CellError if it dies or times out.

        The port is free when chosen but another program can take it before llama-server binds
        it; that one case is retried on a new port.
        """
        stop_leftover(self.pid_file)
        try:
            self._start_once()
        except CellError as exc:
            if "bind" not in str(exc).lower() and "address already in use" not in str(exc).lower():
                raise
            log.warning("port %d was taken before %s bound it; retrying on another", self.port, self.engine.name)
            self._start_once(avoid=self.port)

    def _start_once(self, avoid: int = 0) -> None:
        self._stop_watch = threading.Event()
        self.port = free_port(avoid)
        cmd = self.engine.command(self.binary, self.model, "127.0.0.1", self.port, self.args)
        env = {**os.environ, **self.engine.environment("127.0.0.1", self.port, self.args, self.workdir)}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log.info("starting %s", " ".join(cmd))
        t0 = time.perf_counter()
        with open(self.log_path, "ab") as out:
            out.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(cmd)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, preexec_fn=die_with_parent, env=env)
        _write_pid_file(self.pid_file, self.proc.pid)
        self._watcher = threading.Thread(target=self._watch, args=(self.proc.pid,), name="llmspec-memwatch",
                                         daemon=True)
        self._watcher.start()
        try:
            self._wait_healthy(t0)
            self.model_name = self.engine.after_start(self.binary, self.model, self.url, self.args, self.workdir)
        except BaseException:
            self.stop()
            raise
        self._record_load(time.perf_counter() - t0)

    @property
    def workdir(self) -> Path:
        """A private folder for the engine's own files, beside its pid file (build/run/)."""
        return self.pid_file.with_name(self.pid_file.stem + ".d")

    def _wait_healthy(self, t0: float) -> None:
        import requests  # here, not at the top: planning (every doit run) never needs it

        deadline = t0 + self.load_timeout_s
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                reason = first_error_line(self.log_tail(40)) or f"exit code {self.proc.returncode}"
                raise CellError(f"failed to load: {reason}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}{self.engine.health_path}", timeout=2).status_code == 200:
                    return
            time.sleep(0.05)
        raise CellError(f"did not load within {self.load_timeout_s:g} s")

    def _record_load(self, seconds: float) -> None:
        read = _read_bytes(self.proc.pid) / 1e6
        self.load = LoadStats(seconds, read, read / seconds if seconds > 0 else 0.0)
        log.info("server healthy on port %d after %.2f s (%.1f MB read from disk)", self.port, seconds, read)

    def _watch(self, pid: int) -> None:
        """Sample RSS and swap every 0.25 s; the kernel's VmHWM supplies the exact peak RSS."""
        while not self._stop_watch.wait(0.25):
            status = _proc_status(pid)
            if not status:
                return
            rss, swap, hwm = status.get("VmRSS", 0), status.get("VmSwap", 0), status.get("VmHWM", 0)
            self.memory.peak_rss_bytes = max(self.memory.peak_rss_bytes, hwm, rss)
            self.memory.peak_swap_bytes = max(self.memory.peak_swap_bytes, swap)

    def rss_bytes(self) -> int:
        return _proc_status(self.proc.pid).get("VmRSS", 0) if self.alive() else 0

    def swap_bytes(self) -> int:
        return _proc_status(self.proc.pid).get("VmSwap", 0) if self.alive() else 0

    def peak_rss_bytes(self) -> int:
        """Peak RSS so far, read fresh from the kernel (the watcher may lag by one interval)."""
        if self.alive():
            self.memory.peak_rss_bytes = max(self.memory.peak_rss_bytes, _proc_status(self.proc.pid).get("VmHWM", 0))
        return self.memory.peak_rss_bytes

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def death(self) -> str | None:
        """Why the server is gone, when a signal ended it that was not ours (`stop()` keeps no process):
        SIGKILL from outside is almost always the kernel's OOM killer, so the reason says so with the
        peak memory seen. A server that is still running (hung, or the request failed) gives None."""
        proc = self.proc
        if proc is None:
            return None
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(1)  # a killed server may not be reaped yet when its connection drops
        if proc.returncode is None or proc.returncode >= 0:
            return None
        peak = f"peak memory seen {self.memory.peak_rss_bytes / 2**30:.2f} GB"
        if proc.returncode == -signal.SIGKILL:
            return f"{KILLED}: SIGKILL, {peak}"
        name = signal.Signals(-proc.returncode).name if -proc.returncode in signal.valid_signals() else "a signal"
        return f"the server died of {name}, {peak}"

    def log_tail(self, lines: int = 20) -> list[str]:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(max(0, fh.seek(0, os.SEEK_END) - 64 * 1024))
                return fh.read().decode("utf-8", "replace").splitlines()[-lines:]
        except OSError:
            return []

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM, wait up to `grace_s`, then SIGKILL; safe to call twice and from signal handlers."""
        self._stop_watch.set()
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            with contextlib.suppress(OSError):
                os.kill(proc.pid, signal.SIGCONT)  # a stopped (SIGSTOP) server acts on SIGTERM only once resumed
            try:
                proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                log.warning("%s %d ignored SIGTERM for %g s; killing it", self.engine.name, proc.pid, grace_s)
                proc.kill()
                proc.wait()
        if proc is not None:  # an engine's own children (Ollama's runner) share its process group: none outlives it
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
        self.proc = proc  # keep returncode visible
        self.pid_file.unlink(missing_ok=True)

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def free_port(avoid: int = 0) -> int:
    """A loopback port free right now, never `avoid` (the one another program just took from us: it may
    have let it go again by the time we ask, and a retry on the same port could meet it once more)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port != avoid:
            return port


def first_error_line(lines: list[str]) -> str:
    """The line a user needs from a failed load (llama.cpp prefixes them with 'error' or 'failed')."""
    for line in lines:
        low = line.lower()
        if any(w in low for w in ("error", "failed", "invalid", "couldn't bind", "address already in use")) \
                and not line.startswith("==="):
            return line.strip()[:300]
    return ""


def stop_leftover(pid_file: Path) -> None:
    """Stop a server that a killed earlier run left behind (its pid file survived): the same pid,
    start time and command line, so a recycled pid is never hit."""
    try:
        info = json.loads(pid_file.read_text())
        proc = psutil.Process(info["pid"])
        same = proc.cmdline() == info["cmdline"] if "cmdline" in info else "llama-server" in proc.name()
        if abs(proc.create_time() - info["create_time"]) < 1 and same:
            log.warning("stopping %s %d left over from an earlier run", proc.name(), proc.pid)
            proc.terminate()
            try:
                proc.wait(STOP_GRACE_S)
            except psutil.TimeoutExpired:
                proc.kill()
    except (OSError, ValueError, KeyError, psutil.Error):
        pass
    pid_file.unlink(missing_ok=True)


def _write_pid_file(pid_file: Path, pid: int) -> None:
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(pid)
        pid_file.write_text(json.dumps({"pid": pid, "create_time": proc.create_time(), "cmdline": proc.cmdline()}))


def die_with_parent() -> None:
    """Runs in the child before exec: ask Linux to SIGTERM it when our process dies."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _proc_status(pid: int) -> dict[str, int]:
    """The server's memory with its children's (Ollama runs the model in a child): each figure summed
    over the tree, so a peak is at most the sum of each process's own peak."""
    found = _one_status(pid)
    if not found:
        return found
    with contextlib.suppress(psutil.Error):
        for child in psutil.Process(pid).children(recursive=True):
            for key, value in _one_status(child.pid).items():
                found[key] = found.get(key, 0) + value
    return found


def _one_status(pid: int) -> dict[str, int]:
    """VmRSS/VmHWM/VmSwap in bytes from /proc (cheap, and VmHWM is the kernel's exact peak)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "VmSwap"):
                    out[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return {}
    return out


def _read_bytes(pid: int) -> int:
    with contextlib.suppress(psutil.Error, AttributeError):
        return psutil.Process(pid).io_counters().read_bytes
    return 0
