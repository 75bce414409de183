"""The at-most-one server of this process, shared by the cells of one (model file, engine, arguments).

doit calls the runner once per stale cell, in plan order. The session keeps the current server
between calls and replaces it when the next cell needs another model file or other arguments,
so a model is loaded once per run however many profiles it has. `close()` is wired to doit's
teardown, to atexit and to SIGTERM, so the server never outlives the run.
"""

from __future__ import annotations

import atexit
import signal
from pathlib import Path

from llmspec.engines.base import ServerArgs
from llmspec.errors import CellError, SkipCell
from llmspec.plan.job import CellJob
from llmspec.plan.prediction import HostResults
from llmspec.run.server import Server


class Session:
    """The running server, plus what failed to load this run (not tried twice)."""

    def __init__(self) -> None:
        self.server: Server | None = None
        self.key: tuple | None = None
        self.loaded: dict | None = None  # the model file's identity when the server loaded it
        self.load_failures: dict[tuple, str] = {}
        # this host's result files as read for the cells' speed predictions: each parsed once per run
        self.results = HostResults()
        atexit.register(self.close)

    def server_for(self, job: CellJob, model_path: Path, args: ServerArgs, identity: dict | None = None) -> Server:
        """The server for this cell, started when needed; `identity` is the model file's as the caller read
        it just before, kept as `loaded` when the server is started (what it serves until it stops)."""
        key = (str(model_path), args, job.server.load_timeout_s)
        if key in self.load_failures:
            raise SkipCell(f"model did not load in this run: {self.load_failures[key]}", evidence="load failure")
        if self.key != key or not (self.server and self.server.alive()):
            self.close()
            binary = job.engine_binary()
            ws = job.workspace
            log_path = ws.logs / "servers" / f"{job.cell.model}@{job.cell.config}.log"
            if signal.getsignal(signal.SIGTERM) is not _terminate:  # `kill` of the run stops its server
                signal.signal(signal.SIGTERM, _terminate)
            server = Server(binary, model_path, args, log_path, ws.run / f"{job.engine.name}.pid",
                            job.server.load_timeout_s, job.engine)
            try:
                server.start()
            except CellError as exc:
                self.load_failures[key] = str(exc)
                raise
            self.server, self.key, self.loaded = server, key, identity
        return self.server

    def close(self, grace_s: float | None = None) -> None:
        """Stop the server: gracefully between models, within `grace_s` when the run is being killed."""
        if self.server is not None:
            self.server.stop() if grace_s is None else self.server.stop(grace_s)
        self.server, self.key, self.loaded = None, None, None


SESSION = Session()


TERMINATE_GRACE_S = 3.0  # `kill` of a run: a server mid-stream gets this long, then SIGKILL (5 s promised)


def _terminate(signum, _frame):
    SESSION.close(TERMINATE_GRACE_S)
    raise SystemExit(128 + signum)
