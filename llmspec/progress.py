"""Progress of one long step (a 30-minute stress cell, llama-quantize, the reference logits).

On a terminal it is one line redrawn in place with a carriage return,
`  SmolLM2@Q4_1 stress: sustained generation [#########---------] 47%  14:02 elapsed, about 15:58 left  (812 requests)`,
so a person sees the step move; in a CI log or a file, where a redrawn line would be thousands
of lines or one unreadable one, it is a plain line when the step starts, at most every `every_s`
seconds, and when it ends. Without a total (a tool that tells nothing) it shows the elapsed time.
`follow` runs a tool and feeds its output to a bar, for llama.cpp's tools that print how far
they are. Model downloads keep huggingface_hub's own bar.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

EVERY_S = 20.0  # a plain line at most this often
REDRAW_S = 0.5  # a terminal bar at most this often (and at least this often, by a small thread)
BAR = 24


def clock(seconds: float) -> str:
    """"4:05", "1:02:03"."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Use as a context manager; `update(done, note=...)` as the step advances (from any thread).

    `say` receives the plain lines (not a terminal); `stream` is where a bar is drawn, and whether
    it is a terminal decides which of the two happens. `clock` is injectable for tests."""

    def __init__(self, label: str, total: float | None = None, unit: str = "", say: Callable[[str], None] = print,
                 stream: TextIO | None = None, every_s: float = EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.label, self.total, self.unit, self.say = label, total, unit, say
        self.stream = stream if stream is not None else sys.stdout
        self.tty = _isatty(self.stream)
        self.every_s, self.clock = every_s, clock
        self.done, self.note = 0.0, ""
        self.t0 = self._shown_at = clock()
        self._width = 0  # of the bar drawn last, to blank what a shorter one leaves
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Progress:
        self._show(force=True)
        if self.tty:  # the elapsed time moves even while the step says nothing
            self._thread = threading.Thread(target=self._redraw, name="llmspec-progress-bar", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, kind, exc, tb) -> None:
        self.close(None if kind is None else "stopped")

    def update(self, done: float | None = None, note: str | None = None, total: float | None = None) -> None:
        with self._lock:
            if total is not None:
                self.total = total
            if done is not None:
                self.done = done
            if note is not None:
                self.note = note
        self._show()

    def close(self, outcome: str | None = None) -> None:
        """The last line: the final state (`outcome`, e.g. "stopped", replaces the time left)."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        line = self.line(final=outcome or "done")
        if self.tty:
            self._draw(line + "\n")
        else:
            self.say(line)

    # --- what it says --------------------------------------------------------------------------
    def line(self, final: str | None = None) -> str:
        with self._lock:
            done, total, note = self.done, self.total, self.note
        elapsed = self.clock() - self.t0
        parts = [f"{clock(elapsed)} elapsed"]
        fraction = min(1.0, done / total) if total else None
        if final:
            parts.append(final)
        elif fraction:
            parts.append(f"about {clock(elapsed * (1 - fraction) / fraction)} left")
        if fraction is None:
            head = self.label
        else:
            count = f" ({_number(done)}/{_number(total)}{self.unit})"
            bar = "#" * round(fraction * BAR) + "-" * (BAR - round(fraction * BAR))
            head = f"{self.label} [{bar}] {fraction * 100:.0f}%" if self.tty else f"{self.label}: {fraction * 100:.0f}%"
            head += "" if self.tty else count
        text = f"{head}{'  ' if self.tty else ', '}{', '.join(parts)}"
        return text + (f"  ({note})" if self.tty and note else f"; {note}" if note else "")

    def _show(self, force: bool = False) -> None:
        now = self.clock()
        if self._stop.is_set() or (not force and now - self._shown_at < (REDRAW_S if self.tty else self.every_s)):
            return
        self._shown_at = now
        if self.tty:
            self._draw(self.line())
        else:
            self.say(self.line())

    def _draw(self, text: str) -> None:
        """Redraw the line in place: carriage return, the text cut to the terminal, blanks after it."""
        end = "\n" if text.endswith("\n") else ""
        text = text.rstrip("\n")[:max(20, shutil.get_terminal_size().columns - 1)]
        pad = " " * max(0, self._width - len(text))
        self._width = 0 if end else len(text)
        self.stream.write(f"\r{text}{pad}{end}")
        self.stream.flush()

    def _redraw(self) -> None:
        while not self._stop.wait(REDRAW_S):
            self._show()


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _number(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() or value >= 100 else f"{value:.1f}"


def follow(cmd: list[str], bar: Progress, count: Callable[[str], tuple[float, float | None] | None],
           timeout_s: float | None = None, **popen) -> tuple[int | None, str]:
    """Run a tool, feeding what it prints (stdout and stderr together) to `count`, which returns
    (done, total or None) when a piece of output says how far it is; (exit status or None when it
    ran past `timeout_s` and was killed, everything it printed)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **popen)
    pieces: list[str] = []

    def read() -> None:
        for raw in iter(lambda: proc.stdout.read1(1 << 14), b""):
            text = raw.decode("utf-8", errors="replace")
            pieces.append(text)
            found = count("".join(pieces[-2:]))  # a marker may straddle two reads
            if found is not None:
                bar.update(found[0], total=found[1])

    reader = threading.Thread(target=read, name="llmspec-tool-output", daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        code = None
    except BaseException:  # Ctrl+C: the tool goes with us
        proc.kill()
        proc.wait()
        raise
    finally:
        reader.join(timeout=10)
        proc.stdout.close()
    return code, "".join(pieces)


def last_match(pattern: re.Pattern[str]) -> Callable[[str], tuple[float, float | None] | None]:
    """A `count` for `follow`: the last match of `pattern`, whose groups are (done[, total])."""
    def count(text: str) -> tuple[float, float | None] | None:
        matches = list(pattern.finditer(text))
        if not matches:
            return None
        groups = matches[-1].groups()
        return float(groups[0]), float(groups[1]) if len(groups) > 1 and groups[1] else None
    return count
