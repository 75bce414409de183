"""Running cells: one llama-server at a time, shared by the cells of one (model, quant).

doit calls `run_cell` once per stale cell, in plan order. The `Session` keeps the current
server between calls and replaces it when the next cell needs another model file, so a
model is loaded once per run however many profiles it has. `Session.close()` is wired to doit's
teardown, to atexit and to SIGTERM, so the server never outlives the run.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmspec import binaries, modelfiles
from llmspec.cells import Cell
from llmspec.client import ChatClient
from llmspec.errors import CellError, UserError
from llmspec.fingerprint import digest
from llmspec.host import hardware, host_id
from llmspec.cells import REMOTE
from llmspec.planner import Plan, profile_module
from llmspec.profiles import ProfileContext
from llmspec.results import write_result
from llmspec.server import Server

log = logging.getLogger(__name__)


class Session:
    """The at-most-one running server of this process, plus what failed to load this run."""

    def __init__(self) -> None:
        self.server: Server | None = None
        self.key: tuple | None = None
        self.load_failures: dict[tuple, str] = {}
        atexit.register(self.close)

    def server_for(self, plan: Plan, cell: Cell, model_path: Path) -> Server:
        trained = (_safe_metadata(model_path) or {}).get("context_length")
        args = plan.profile_server_args(cell.profile, trained)
        key = (str(model_path), tuple(args), plan.spec.server.load_timeout_s)
        if key in self.load_failures:
            raise SkipCell(f"model did not load in this run: {self.load_failures[key]}")
        if self.key != key or not (self.server and self.server.alive()):
            self.close()
            binary = binaries.find_server(plan.spec.server.binary)
            log_path = plan.workspace.logs / "servers" / f"{cell.model}@{cell.quant}.log"
            if signal.getsignal(signal.SIGTERM) is not _terminate:  # `kill` of the run stops its server
                signal.signal(signal.SIGTERM, _terminate)
            server = Server(binary, model_path, args, log_path, plan.workspace.run / "llama-server.pid",
                            plan.spec.server.load_timeout_s)
            try:
                server.start()
            except CellError as exc:
                self.load_failures[key] = str(exc)
                raise
            self.server, self.key = server, key
        return self.server

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.server, self.key = None, None


class SkipCell(Exception):
    """This cell cannot run for a reason decided before measuring (e.g. its model did not load)."""


SESSION = Session()


def _terminate(signum, _frame):
    SESSION.close()
    raise SystemExit(128 + signum)


def run_cell(plan: Plan, cell: Cell, progress=print) -> bool:
    """Measure one cell and write its result; False (a doit failure) when it ended in error."""
    started = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    mf = plan.model_file(cell.model, cell.quant) if cell.quant != REMOTE else None
    result: dict[str, Any] = {"status": "ok", "reason": "", "metrics": {}, "samples": [], "flags": []}
    server = None
    decision = plan.decide(cell)
    try:
        if decision.skip:
            result["skip_evidence"] = decision.evidence
            raise SkipCell(decision.reason)
        if cell.profile == "stress" and not (choice := plan.stress_choice()).picks(cell):
            raise SkipCell(f"not selected for the stress test: {choice.reason}")
        if cell.quant == REMOTE:
            result.update(_measure(plan, cell, None, progress))
        else:
            model_path = ensure_model(plan, cell.model, cell.quant)
            server = SESSION.server_for(plan, cell, model_path)
            result.update(_measure(plan, cell, server, progress))
    except KeyboardInterrupt:
        _interrupted(plan, cell)
    except SkipCell as exc:
        result.update(status="skipped", reason=str(exc))
    except (CellError, UserError) as exc:
        result.update(status="error", reason=str(exc))
        if server is not None:
            root = str(plan.spec.root.resolve())
            result["server_log_tail"] = [line.replace(root, ".") for line in server.log_tail(20)]
            SESSION.close()  # crashed, hung or confused: the next cell gets a fresh server
    if decision.predicted_peak_gb is not None and result["status"] == "ok":
        result["metrics"]["predicted_peak_rss_gb"] = decision.predicted_peak_gb  # next to the measured peak
    result = {**_provenance(plan, cell, mf, started, time.perf_counter() - t0), **result}
    try:
        write_result(plan.result_path(cell), result)
    except OSError as exc:  # full disk, read-only folder: earlier results stay intact
        print(f"llmspec: cannot write {plan.result_path(cell)}: {exc.strerror or exc}", file=sys.stderr)
        return False
    plan.forget_evidence()
    progress(_summary_line(cell, result))
    return result["status"] != "error"


def _interrupted(plan: Plan, cell: Cell) -> None:
    """Ctrl+C: stop the server, keep finished cells, write a partial report, exit 130 (no traceback)."""
    SESSION.close()
    print(f"\ninterrupted: {cell.task_name} was not recorded; finished cells are kept, `doit` resumes the rest")
    from llmspec.report import render

    ws = plan.workspace
    print(f"partial report: {render(plan.spec, ws.results, ws.reports, ws.build / 'cache').html}")
    raise SystemExit(130)


def ensure_model(plan: Plan, model: str, quant: str) -> Path:
    """Make (model, quant)'s file exist: link, assemble or download it, or derive it (base first)."""
    mf = plan.model_file(model, quant)
    if plan.model_state(model, quant)[0]:
        return mf.path
    if mf.kind != "derive":
        return modelfiles.ensure(plan.spec, mf)
    base = ensure_model(plan, model, mf.origin)
    quantize = binaries.find_tool("llama-quantize", binaries.find_server(plan.spec.server.binary))
    mf.path.parent.mkdir(parents=True, exist_ok=True)
    modelfiles.derive(base, mf.path, quant, quantize, plan.threads())
    print(f"derived {mf.path.name} ({mf.path.stat().st_size / 1e6:.0f} MB) from {base.name}")
    plan.model_identity.cache_clear()
    return mf.path


def _measure(plan: Plan, cell: Cell, server: Server | None, progress) -> dict[str, Any]:
    settings = getattr(plan.spec.profiles, cell.profile)
    client = _client(plan, cell, server)
    t0 = time.perf_counter()
    say = lambda text: progress(f"  {cell.model}@{cell.quant} {cell.profile}: {text} ({time.perf_counter() - t0:.1f} s)")
    meta = _safe_metadata(plan.model_file(cell.model, cell.quant).path) if server else None
    try:
        outcome = profile_module(cell.profile).run(ProfileContext(client, settings, plan.spec.root, say, server, meta))
    finally:
        client.close()
    metrics = {**(_server_metrics(server) if server else {}), **outcome.metrics}  # the profile's own figures win
    if meta and meta.get("has_chat_template") is False:
        outcome.flags.append("the model file has no chat template, so llama-server formats prompts as ChatML, "
                             "which this model may not understand: answers and quality scores suffer, timings do not")
    extra = {"server": {"binary": "llama-server", "version": plan.server_version, "args": server.args}} if server else {}
    return {"metrics": metrics, "samples": outcome.samples, "flags": outcome.flags, **extra}


def _client(plan: Plan, cell: Cell, server: Server | None) -> ChatClient:
    if server is not None:
        return ChatClient(server.url, timeout_s=plan.spec.server.request_timeout_s)
    endpoint = plan.endpoint(cell.model)
    key = os.environ.get(endpoint.api_key_env) if endpoint.api_key_env else None
    if endpoint.api_key_env and not key:
        raise UserError(f"endpoints: {endpoint.name}: environment variable {endpoint.api_key_env} is not set")
    return ChatClient(endpoint.url, model=endpoint.model, api_key=key, timeout_s=plan.spec.server.request_timeout_s)


def _server_metrics(server: Server) -> dict[str, float]:
    return {
        "load_time_s": server.load.load_time_s,
        "load_disk_read_mb": server.load.load_disk_read_mb,
        "load_disk_read_mb_per_s": server.load.load_disk_read_mb_per_s,
        "peak_rss_gb": server.peak_rss_bytes() / 2**30,
        "swap_peak_gb": server.memory.peak_swap_bytes / 2**30,
    }


def _provenance(plan: Plan, cell: Cell, mf, started: datetime, duration: float) -> dict:
    """What was measured with what: cell, fingerprint (computed now the model exists), host, server, model."""
    plan.model_identity.cache_clear()
    inputs = plan.inputs(cell)
    model_file = None
    if inputs["model"] is not None and cell.quant != REMOTE:
        model_file = {**inputs["model"], "quant": cell.quant, "source": mf.kind,
                      "metadata": _safe_metadata(mf.path)}
    server_info = {"binary": "llama-server", "version": plan.server_version, "args": plan.server_args()}
    if cell.quant == REMOTE:
        endpoint = plan.endpoint(cell.model)
        server_info = {"endpoint": endpoint.url, "model": endpoint.model}
    return {
        "cell": cell.as_dict(),
        "fingerprint": digest(inputs),
        "fingerprint_inputs": inputs,
        "started_at": started.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "duration_s": duration,
        "host": {"id": host_id(), **hardware()},
        "server": server_info,
        "model_file": model_file,
    }


def _safe_metadata(path: Path) -> dict | None:
    try:
        return modelfiles.metadata(path)
    except (UserError, OSError):
        return None


def _summary_line(cell: Cell, result: dict) -> str:
    """One line per finished cell: its status and the figures it is rated on."""
    from llmspec.rating import rated_metrics

    if result["status"] != "ok":
        return f"{cell.task_name}: {result['status'].upper()}: {result['reason']}"
    m = result["metrics"]
    figures = ", ".join(f"{name} {_figure(m[name])}" for name in rated_metrics(cell.profile) if m.get(name) is not None)
    return f"{cell.task_name}: ok{f' ({figures})' if figures else ''}"


def _figure(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def stop_on_interrupt() -> None:
    """doit's teardown hook: stop the server whether the run ended normally or by Ctrl+C."""
    SESSION.close()
    sys.stdout.flush()
