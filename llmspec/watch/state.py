"""build/run/progress.json: where a running matrix stands, for anyone who wants to look.

The runner (the one process holding the project's lock) writes it as cells start, progress and
finish; `llmspec watch` only reads it, so a dashboard can come and go, and several can look,
without touching the run. What it holds:

- `pid`, `pid_started` (the writer's process and its start time: a crash or kill -9 leaves a file
  whose writer is gone, which `read` reports as not running, even if the pid was reused),
  `started`, `updated`, `finished` (None while running, else "finished" or "interrupted");
- `specs`: per spec, the run's queue of cells (the ones stale when the run reached its first
  cell) with each cell's state (to run, running, done, skipped, error) and how many were
  already up to date;
- `current`: the running cell, "cell k of N", the ETA of the rest from its start (seconds and
  the words `doit` printed), the last progress line, and the cell's series: one point per
  answered request (tokens/s, TTFT) and per vitals sample (server RSS, CPU temperature).

Writes are atomic (temp file + rename, no fsync: a progress file need not survive a power cut)
and at most `MIN_WRITE_S` apart except at a cell's start and end; a small thread samples the
vitals and flushes a write that was held back. Series are capped, so the file stays small.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from llmspec.results import write_text_atomic

FILE = "progress.json"
MIN_WRITE_S = 0.5  # at most two writes a second
SAMPLE_S = 2.0  # server RSS and temperature
MAX_POINTS = 300  # per series: the chart shows the recent past, the result file keeps everything
STATES = ("to run", "running", "done", "skipped", "error")


def path(run_dir: Path) -> Path:
    return Path(run_dir) / FILE


class Writer:
    """The runner's side. Every method is cheap and thread-safe (load workers answer in parallel)."""

    def __init__(self, run_dir: Path, clock=time.time, temperature=None):
        """`temperature`: a callable giving the CPU temperature in C or None (default: the real
        machine's sensors, llmspec.machine.sensors)."""
        self.path, self.clock = path(run_dir), clock
        if temperature is None:
            from llmspec.machine.sensors import SensorSource

            temperature = SensorSource().temperature_c
        self.temperature = temperature
        me = psutil.Process()
        now = clock()
        self.doc: dict[str, Any] = {"pid": me.pid, "pid_started": me.create_time(), "started": now, "updated": now,
                                    "finished": None, "specs": {}, "current": None}
        self._lock = threading.RLock()
        self._written, self._pending = 0.0, False  # monotonic, as every duration here: an NTP step moves `clock`
        self._cell_t0 = time.monotonic()
        self._server = None  # what `vitals` samples: anything with rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="llmspec-progress", daemon=True)
        self._thread.start()

    # --- what the run tells it ------------------------------------------------------------------
    def begin_cell(self, spec: str, queue: list[dict[str, str]], k: int, eta_s: float | None, eta_text: str,
                   up_to_date: int) -> None:
        """Cell k (1-based) of `queue` starts; `queue` entries are {task, model, config, profile}."""
        with self._lock:
            known = self.doc["specs"].get(spec, {}).get("cells", [])
            states = {c["task"]: c["state"] for c in known}
            cells = [{**c, "state": states.get(c["task"], "to run")} for c in queue]
            cells[k - 1]["state"] = "running"
            self.doc["specs"][spec] = {"cells": cells, "up_to_date": up_to_date}
            self._cell_t0 = time.monotonic()
            self.doc["current"] = {"spec": spec, **queue[k - 1], "k": k, "n": len(queue), "started": self.clock(),
                                   "eta_s": eta_s, "eta_text": eta_text, "line": "", "requests": [], "vitals": []}
            self._write()

    def line(self, text: str) -> None:
        """The cell's latest progress line (as printed)."""
        with self._lock:
            if self.doc["current"] is not None:
                self.doc["current"]["line"] = text.strip()
                self._write_soon()

    def request(self, record) -> None:
        """One answered request (a llmspec.run.client.RequestRecord): its speed and TTFT."""
        with self._lock:
            current = self.doc["current"]
            if current is None:
                return
            _append(current["requests"], {"t": self._since_cell_start(),
                                          "tokens_per_s": _round(record.decode_tokens_per_s()),
                                          "ttft_s": _round(record.ttft_s), "ok": record.error is None,
                                          "warm_up": record.prompt_name.startswith("warm-up")})
            self._write_soon()

    def watch_server(self, server) -> None:
        """Sample this server's RSS (with the temperature) until the cell ends."""
        with self._lock:
            self._server = server

    def end_cell(self, status: str) -> None:
        """The running cell finished with its result's status (ok, skipped, error)."""
        with self._lock:
            current, self._server = self.doc["current"], None
            if current is None:
                return
            state = {"ok": "done"}.get(status, status)
            for cell in self.doc["specs"][current["spec"]]["cells"]:
                if cell["task"] == current["task"]:
                    cell["state"] = state
            current["state"] = state
            self._write()

    def finish(self, how: str = "finished") -> None:
        """The run ended (`how`: finished, interrupted); the file stays for the dashboard to say so."""
        self._stop.set()
        with self._lock:
            if self.doc["finished"] is None:
                self.doc["finished"] = how
                self._write()

    # --- writing -----------------------------------------------------------------------------
    def _write(self) -> None:
        self.doc["updated"], self._written = self.clock(), time.monotonic()
        self._pending = False
        with contextlib.suppress(OSError):  # a full disk must not fail a measurement
            write_text_atomic(self.path, json.dumps(self.doc, separators=(",", ":")), sync=False)

    def _write_soon(self) -> None:
        if time.monotonic() - self._written >= MIN_WRITE_S:
            self._write()
        else:
            self._pending = True

    def _loop(self) -> None:
        last_sample = 0.0
        while not self._stop.wait(MIN_WRITE_S):
            with self._lock:
                server, current = self._server, self.doc["current"]
            if server is not None and current is not None and time.monotonic() - last_sample >= SAMPLE_S:
                last_sample = time.monotonic()
                self._sample(server, current)
            with self._lock:
                if self._pending:
                    self._write()

    def _since_cell_start(self) -> float:
        """Seconds into the running cell, from the monotonic clock: a clock step mid-cell (NTP) would
        otherwise put a chart's points an hour before the cell began."""
        return round(time.monotonic() - self._cell_t0, 2)

    def _sample(self, server, current: dict) -> None:
        """Read outside the lock (a sensor read may take a moment), append inside it."""
        try:
            rss, temp = server.rss_bytes(), self.temperature()
        except (OSError, psutil.Error):
            return
        with self._lock:
            if self.doc["current"] is current:
                _append(current["vitals"], {"t": self._since_cell_start(),
                                            "rss_gb": _round(rss / 2**30 if rss else None),
                                            "temperature_c": _round(temp)})
                self._pending = True


def _append(series: list, point: dict) -> None:
    series.append(point)
    del series[:-MAX_POINTS]


def _round(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.4g}")


@dataclass(frozen=True)
class Snapshot:
    """What a reader sees: the document (None: no run has written one) and whether its writer lives."""

    doc: dict[str, Any] | None
    running: bool
    signature: tuple  # changes whenever what a page shows would

    @property
    def state(self) -> str:
        """running | finished | interrupted | not running (the writer died) | no run."""
        if self.doc is None:
            return "no run"
        if self.doc.get("finished"):
            return str(self.doc["finished"])
        return "running" if self.running else "not running"


def read(run_dir: Path) -> Snapshot:
    """The progress file as it is now; a torn or foreign file reads as no run."""
    file = path(run_dir)
    try:
        stat = file.stat()
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Snapshot(None, False, ("none",))
    if not isinstance(doc, dict):
        return Snapshot(None, False, ("none",))
    alive = writer_alive(doc)
    return Snapshot(doc, alive, (stat.st_mtime_ns, stat.st_size, alive))


def writer_alive(doc: dict) -> bool:
    """Whether the process that wrote `doc` still runs: same pid and the same start time (a pid
    reused by another process after a crash does not count)."""
    try:
        proc = psutil.Process(int(doc["pid"]))
        return abs(proc.create_time() - float(doc["pid_started"])) < 1.0 and proc.status() != psutil.STATUS_ZOMBIE
    except (KeyError, TypeError, ValueError, psutil.Error):
        return False


_writer: list[Writer] = []  # this process's writer: one run, one file


def writer(run_dir: Path) -> Writer:
    """The run's writer, made at its first cell; marked finished when the process ends normally
    (a run killed hard leaves it unmarked, and its dead pid tells readers)."""
    if not _writer:
        import atexit

        _writer.append(Writer(run_dir))
        atexit.register(_writer[0].finish)
    return _writer[0]
