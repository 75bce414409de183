"""One run per project at a time.

Two runs on one project measure side by side on the same cores (every figure of both is wrong)
and fight over doit's database (the second died with "database is locked"). The lock is an
fcntl lock on `build/run/llmspec.lock`, so the kernel lets go of it when the holder dies, even
by kill -9: a stale lock cannot outlive its run. The file says who holds it, for the message, and is
emptied when its run ends, so one that still names a run is the mark of a kill: the next run says so.

A project on a read-only disk, or on a network filesystem mounted without locking, cannot hold the
lock: that is one line naming the folder, before anything runs (a run writes its results there too).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import sys
import time
from pathlib import Path

from llmspec.errors import UserError

_held: list = []  # the open lock file of this process, kept open for the process's lifetime


def hold(run_dir: Path, what: str) -> None:
    """Take the project's lock for this process, or raise a one-line UserError naming the holder."""
    if _held:
        return
    path = run_dir / "llmspec.lock"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held open until the process ends
    except OSError as exc:
        raise UserError(f"{run_dir}: cannot write the project's lock there ({exc.strerror or exc}); a run writes "
                        "its lock, logs and results under build/, so the project must be on a writable disk") from None
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        raise UserError(f"another run holds this project ({_holder(fh.read())}); wait for it to finish or stop it "
                        f"first: two runs on one machine measure each other") from None
    except OSError as exc:  # ENOLCK, EOPNOTSUPP: a network filesystem mounted without locking
        fh.close()
        raise UserError(f"{run_dir}: cannot lock {path.name} there ({exc.strerror or exc}); the filesystem does not "
                        "support file locks (a network share mounted without locking?): run the project from a "
                        "local disk, or mount the share with locking") from None
    fh.seek(0)
    left = fh.read().strip()
    if left:  # a run that ends lets go and empties the file (`_let_go`); one killed with -9 cannot
        print(f"llmspec: taking over this project from {_holder(left)}, which ended without letting go "
              "(killed?)", file=sys.stderr, flush=True)
    fh.seek(0)
    fh.truncate()
    fh.write(json.dumps({"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "what": what}))
    fh.flush()
    _held.append(fh)
    atexit.register(_let_go, fh)


def _let_go(fh) -> None:
    """At a normal end, Ctrl+C or SIGTERM: empty the file, so the next run knows this one ended."""
    with contextlib.suppress(OSError, ValueError):
        fh.seek(0)
        fh.truncate()
        fh.flush()


def _holder(text: str) -> str:
    with contextlib.suppress(ValueError, TypeError):
        info = json.loads(text)
        return f"{info.get('what', 'a run')}, pid {info['pid']}, started {info['started']}"
    return "a run whose details are unreadable"
