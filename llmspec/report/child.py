"""Child processes of a report: `python -m llmspec.report.<module>`, for work that needs a core of its own.

Python threads take turns on the GIL, so a report with thousands of results spreads its
Python-heavy parts (parsing the files, writing the data files) over processes. Plain child
processes, not multiprocessing: that would run the caller's main script (dodo.py) again in the
child. A child runs this llmspec, whatever PYTHONPATH says; its stderr is kept for the log; none
outlives the report (`stop`, from a `finally`).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def cores() -> int:
    """The cores this process may run on (a container's cpuset, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


class Child:
    """`python -m MODULE ARGS...` with its stderr in the file `err`; with `stdin`, a pipe to
    `send` a line to it. A child that cannot start is `started` False, and the caller does its
    work itself."""

    def __init__(self, module: str, args: list[str], err: Path, stdin: bool = False) -> None:
        self.err = err
        root = str(Path(__file__).resolve().parents[2])  # this llmspec, whatever PYTHONPATH says
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p),
               "POLARS_MAX_THREADS": "1"}  # a core of its own, not polars' threads on every core
        try:
            with open(err, "wb") as stderr:
                self.process: subprocess.Popen | None = subprocess.Popen(
                    [sys.executable, "-m", module, *args], stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        except OSError as error:
            log.info("no child process %s (%s)", module, error)
            self.process = None

    @property
    def started(self) -> bool:
        return self.process is not None

    def send(self, line: str, last: bool = False) -> bool:
        """`line` written to the child's stdin (closed after the `last`); False when the child is gone."""
        try:
            self.process.stdin.write(line.encode() + b"\n")
            self.process.stdin.flush()
            if last:
                self.process.stdin.close()
        except (OSError, ValueError):  # it exited (BrokenPipeError) or the pipe is closed
            return False
        return True

    def failure(self) -> str | None:
        """None once it ran to the end (waiting for it: exit status 0); else why not, for the log."""
        if self.process is None:
            return "could not start"
        if self.process.wait() == 0:
            return None
        return f"exited with {self.process.returncode}:\n{self.said()[-2000:]}"

    def said(self) -> str:
        """What it wrote to stderr (its warnings)."""
        return self.err.read_text(errors="replace").strip() if self.err.is_file() else ""

    def stop(self) -> None:
        """Killed if still running (Ctrl+C, an error in the report, a child no longer needed)."""
        if self.process is None:
            return
        if self.process.stdin is not None:
            try:
                self.process.stdin.close()
            except OSError:
                pass
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
