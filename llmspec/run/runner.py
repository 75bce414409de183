"""Running one cell: the planner's job in, a result on disk out.

`run_cell` asks the plan for the cell's job (one call down: decision, target, settings, server
arguments, fingerprint inputs), measures it on the session's llama-server (or the endpoint),
builds the `Result` and hands it back in one call (`Plan.record`) that writes it and updates
what the plan knows. GGUF metadata and the model identity are read once per cell.
Ctrl+C stops the server and raises `Interrupted`, so the caller (tasks.py) decides what an
interrupted run still does (a partial report); nothing half-measured is recorded.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import signal
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmspec.errors import CellError, SkipCell, UserError
from llmspec.fingerprint import digest
from llmspec.machine.activity import Background, BackgroundWatch, own_tree, wait_until_quiet
from llmspec.machine.host import hardware, host_id
from llmspec.models import binaries
from llmspec.models import files as modelfiles
from llmspec.plan.job import CellJob
from llmspec.plan.planner import Plan
from llmspec.plan.reference import Reference
from llmspec.plan.targets import LocalModel
from llmspec.profiles import ProfileContext
from llmspec.profiles.base import LocalRun, read_prose
from llmspec.results import Result
from llmspec.run.client import ChatClient
from llmspec.run.meter import CellMeter
from llmspec.run.perplexity import write_logits
from llmspec.run.server import Server
from llmspec.run.session import SESSION
from llmspec.spec import Spec
from llmspec.text import figure

log = logging.getLogger(__name__)
GB = 1e9


class Interrupted(Exception):
    """Ctrl+C during a cell: its server is stopped and nothing of it was recorded."""

    def __init__(self, cell):
        super().__init__(cell.task_name)
        self.cell = cell


def run_cell(plan: Plan, cell, progress=print, live=None) -> bool:
    """Measure one cell and write its result; False (a doit failure) when it ended in error.
    `live` (a llmspec.watch.state.Writer) hears of every answered request and samples the server."""
    job = plan.job(cell)
    result = measure(job, progress, live)
    try:
        plan.record(job, result)
    except OSError as exc:  # full disk, read-only folder: earlier results stay intact, no half file is left
        print(f"llmspec: {job.cell.task_name}: ERROR: cannot write its result {job.result_path}: "
              f"{exc.strerror or exc} ({disk_of(job.result_path)}); nothing of it was recorded, so the next "
              "`doit` measures it again", file=sys.stderr, flush=True)
        if live is not None:
            live.end_cell("error")
        return False
    if live is not None:
        live.end_cell(result.status)
    progress(summary_line(job, result))
    return result.status != "error"


def disk_of(path: Path) -> str:
    """"the disk mounted at /data, 0.0 MB free": where a write failed, for a user to free space on."""
    at = Path(path).absolute()
    while not at.exists() and at != at.parent:
        at = at.parent
    try:
        free = shutil.disk_usage(at).free / 1e6
    except OSError:
        free = None
    while not at.is_mount() and at != at.parent:
        at = at.parent
    return f"the disk mounted at {at}" + (f", {free:.1f} MB free" if free is not None else "")


def measure(job: CellJob, progress=print, live=None) -> Result:
    """The cell's result: measured, skipped (with the reason) or failed (with the reason)."""
    started, t0 = datetime.now(UTC), time.perf_counter()
    result = Result(cell=job.cell.as_dict(), status="ok")
    server, args, identity, meta, estimate = None, job.base_args, None, None, None
    speeds: dict[str, float] = {}
    try:
        if job.skip:
            raise SkipCell(job.skip, job.skip_evidence)
        if isinstance(job.target, LocalModel):
            path = modelfiles.make(job.spec, job.cell.model, job.cell.quant, job.base_args.threads)
            identity, meta = modelfiles.identity(path), modelfiles.metadata_or_none(path)
            if not job.kind.needs_server:
                SESSION.close()  # no idle server of ours holds memory while the tool runs
                _measure(job, result, None, meta, progress, live, _local(job, path))
            else:
                args = job.server_args((meta or {}).get("context_length"))
                server = SESSION.server_for(job, path, args, identity)
                _same_file(path, SESSION.loaded, "was replaced on disk after the server loaded it")
                # The pre-flight estimate for this cell's own server (its context, all slots), stored next to
                # the measured peak so the report can grade it (report.configs, "predicted vs measured").
                estimate = job.engine.estimate(path.stat().st_size, meta, args).total_gb
                speeds = _predicted_speeds(job, args, path.stat().st_size, meta)
                _measure(job, result, server, meta, progress, live)
                _same_file(path, identity, "changed on disk while the cell measured it")
        else:
            _measure(job, result, None, None, progress, live)
    except KeyboardInterrupt:
        SESSION.close()
        raise Interrupted(job.cell) from None
    except SkipCell as exc:
        result.status, result.reason = "skipped", str(exc)
        result.skip_evidence = exc.evidence
    except (CellError, UserError) as exc:
        result.status, result.reason = "error", str(exc)
        if server is not None:
            if death := server.death():
                result.reason = f"{death}; {exc}"
            root = str(job.root.resolve())
            result.server_log_tail = [line.replace(root, ".") for line in server.log_tail(20)]
            SESSION.close()  # crashed, hung or confused: the next cell gets a fresh server
    if not result.ok:
        args = job.base_args  # nothing was measured: the result names the spec's common arguments
    else:  # both predictions next to the measured peak: the report grades them (report.configs)
        if job.predicted_peak_gb is not None:
            result.metrics["predicted_peak_rss_gb"] = job.predicted_peak_gb
        if estimate is not None:
            result.metrics["estimated_memory_gb"] = estimate
        result.metrics.update({k: v for k, v in speeds.items()
                               if not k.startswith("predicted_") or k.removeprefix("predicted_") in result.metrics})
    if identity is None:  # not made this run (skipped, failed): the file as it is, if it is there
        identity = job.target.identity_now()
        meta = job.target.metadata_now() if identity is not None else None
    result.fingerprint, result.fingerprint_inputs = job.fingerprint(identity)
    result.started_at, result.duration_s = started.strftime("%Y-%m-%dT%H:%M:%SZ"), time.perf_counter() - t0
    result.host = {"id": host_id(), **hardware(), **result.host}  # plus what it could not measure (CellMeter)
    result.server = job.target.server_block(job.server_version, args)
    if not job.kind.needs_server:  # llama.cpp's tool ran on the file; no server, no server arguments
        result.server = {**result.server, "binary": "llama-perplexity", "args": []}
    result.model_file = job.target.provenance(identity, meta)
    return result


def _predicted_speeds(job: CellJob, args, size: int, meta: dict | None) -> dict[str, float]:
    """Decode and prompt speed as predicted before this cell measured them (`plan.prediction`),
    stored beside the measured ones so the report grades them. Only where the prediction holds:
    the default engine, one request at a time, and a bandwidth figure for this host; with layers
    offloaded, a GPU whose bandwidth is known (then `gpu_layers_share` is stored too, and the
    prompt speed, a CPU figure, is not predicted).
    This host's results are read through the session's cache: parsed once per run, a file again
    only when it changed (the cell just measured is new), so each cell sees them all as they are."""
    from llmspec.engines import DEFAULT
    from llmspec.machine.gpu import GpuSource, offloaded_layers
    from llmspec.plan.prediction import for_host

    if job.engine.name != DEFAULT or args.parallel != 1 or job.kind.server_overrides is not None:
        return {}
    layers, share, gpus = (meta or {}).get("layers"), 0.0, None
    if args.setting("n_gpu_layers") not in (None, 0):
        gpus = GpuSource().read()
        if not gpus or not layers:
            return {}
        share = offloaded_layers(layers, args.setting("n_gpu_layers")) / layers
    speed = for_host(job.workspace.results, host_id(), SESSION.results, gpus)
    if speed is None:
        return {}
    found = {"predicted_tokens_per_s": speed.decode(size, gpu_bytes=share * size),
             "predicted_prompt_tokens_per_s": None if share else speed.prompt(meta)}
    return {k: v for k, v in found.items() if v} | ({"gpu_layers_share": share} if gpus else {})


def _same_file(path: Path, measured: dict | None, what: str) -> None:
    """A model file replaced while a run is going (a download finishing, a re-quantization): the server
    still serves the file it loaded, so a figure taken now would be stored under the new file's
    fingerprint. The cell is an error naming the file instead; the next run measures the new one."""
    now = modelfiles.identity(path) if path.exists() else None
    if measured is not None and now != measured:
        found = f"now {now['size']:,} bytes, sha256 {now['sha256'][:12]}" if now else "now gone"
        raise CellError(f"the model file {path.name} {what} ({found}; measured: {measured['size']:,} bytes, "
                        f"sha256 {measured['sha256'][:12]}); not recorded, `doit` measures the file as it is now")


def _local(job: CellJob, path: Path) -> LocalRun:
    """What a profile that runs llama.cpp's tools on the file gets (see `ProfileContext.local`)."""
    server = binaries.find_server(job.server.binary)
    threads = job.base_args.threads
    logs = job.workspace.logs / "tools"
    model = job.spec.model(job.cell.model)

    def reference() -> tuple[Reference, dict]:
        say = lambda text: print(f"  {job.cell.model}@{job.cell.quant} {job.cell.profile}: {text}", flush=True)
        return job.reference, reference_logits(job.spec, job.reference, threads, job.server_version, logs, say)

    return LocalRun(path, job.cell.quant, lambda name: binaries.find_tool(name, server), threads, logs,
                    reference if job.reference is not None else None, model.less_precise_origin(job.cell.quant))


def reference_logits(spec: Spec, ref: Reference, threads: int, version: str | None, logs: Path, say) -> dict:
    """The divergence reference's logits facts, making its model file and the logits when needed
    (a divergence cell, or `doit logits` ahead of time)."""
    path = modelfiles.make(spec, ref.model, ref.quant, threads)
    tool = binaries.find_tool("llama-perplexity", binaries.find_server(spec.server.binary))
    vocab = (modelfiles.metadata_or_none(path) or {}).get("vocab_size")
    text = read_prose(spec.root, ref.text_folder)
    return ensure_reference(ref, path, vocab, tool, threads, modelfiles.identity(path), version,
                            spec.limits.min_free_disk_gb, logs, text, say)


def ensure_reference(ref: Reference, model_path: Path, vocab: int | None, tool: Path, threads: int,
                     identity: dict | None, version: str | None, min_free_gb: float, logs: Path, text: str,
                     say) -> dict:
    """The reference logits' facts (building them first when missing or stale). Too little disk
    for them is a skip with the figures, decided before anything is written."""
    found = ref.state(identity, version)
    if found.fresh:
        return ref.stored()
    if not vocab:
        raise CellError(f"{model_path.name}: the GGUF file names no vocabulary size, so the reference logits "
                        "cannot be sized")
    needed = ref.size_bytes(vocab)
    ref.path.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(ref.path.parent).free + (ref.path.stat().st_size if ref.path.exists() else 0)
    if needed + min_free_gb * GB > free:
        raise SkipCell(f"the reference logits of {ref.model} {ref.quant} need about {needed / GB:.2f} GB "
                       f"({ref.scored_tokens:,} scored tokens x {vocab:,}-token vocabulary x 2 bytes) and "
                       f"{ref.path.parent} has {free / GB:.2f} GB free, {min_free_gb:g} GB of which must stay free "
                       "(limits.min_free_disk_gb): free disk space or lower profiles.divergence.chunks",
                       evidence="disk space")
    say(f"reference logits: {ref.model} {ref.quant}, {ref.chunks} chunks of {ref.ctx} tokens, "
        f"about {needed / GB:.2f} GB ({found.reason})")
    ppl, ppl_error = write_logits(model_path, text, ref.ctx, ref.chunks, tool, threads, ref.path,
                                  logs / f"{ref.spec}-{ref.model}@{ref.quant}-reference.log",
                                  f"{ref.model} {ref.quant}", say)
    facts = {"fingerprint": digest(ref.inputs(identity, version)), "inputs": ref.inputs(identity, version),
             "bytes": ref.path.stat().st_size, "ppl": ppl, "ppl_error": ppl_error,
             "scored_tokens": ref.scored_tokens, "vocab_size": vocab}
    ref.meta_path.write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
    return facts


def _measure(job: CellJob, result: Result, server: Server | None, meta: dict | None, progress, live,
             local: LocalRun | None = None) -> None:
    """Run the profile on a ready server, the endpoint or (`local`) the model file itself, on a quiet
    machine, and put what it found into `result`; a measurement the background disturbed is the
    cell's error (docs/measuring.md)."""
    client, api_key = _client(job, server) if local is None else (None, None)
    if live is not None:
        if client is not None:
            client.on_record = live.request
        if server is not None:
            live.watch_server(server)
    t0 = time.perf_counter()
    cell, limits = job.cell, job.spec.limits
    say = lambda text: progress(f"  {cell.model}@{cell.config} {cell.profile}: {text} "
                                f"({time.perf_counter() - t0:.1f} s)")
    own = own_tree(*job.target.measured_pids())
    ctx = None
    try:
        before = wait_until_quiet(own, limits.max_background_cpu_pct, limits.quiet_wait_s, progress)
        if before.mean_pct > limits.max_background_cpu_pct:
            result.background = _background(before)
            raise CellError(f"the machine stayed busy for {limits.quiet_wait_s:g} s before measuring: "
                            f"{before.what_used()} ({before.who()}); not measured")
        meter = CellMeter() if job.target.managed else None  # energy and GPU of this machine: ours only
        ctx = ProfileContext(client, job.settings, job.root, say, server, meta, api_key, local,
                             getattr(job.spec.thresholds, job.cell.profile),
                             restarter=_restarter(server) if server is not None else None)
        with _stoppable() as stop_now:
            watch = BackgroundWatch(own, limit_pct=limits.max_background_cpu_pct, sustained_s=limits.quiet_wait_s,
                                    on_busy=stop_now)
            try:
                with watch, meter or contextlib.nullcontext():
                    outcome = job.kind.run(ctx)
            except (Exception, _TurnedBusy):
                if watch.busy_for_s is None:
                    raise
                found = getattr(watch, "result", None) or Background()  # None: the signal hit the watch's exit
                result.background = _background(found)
                raise CellError(f"the machine turned busy mid-cell and stayed busy for {watch.busy_for_s:.0f} s "
                                f"(limits.quiet_wait_s = {limits.quiet_wait_s:g}): {found.what_used()} "
                                f"({found.who()}); stopped measuring, measure again on a quiet machine") from None
    finally:
        if client is not None:
            client.close()
            if ctx is not None and ctx.client is not client:  # the profile started the server again
                ctx.client.close()
    background = watch.result
    result.metrics = {**(_server_metrics(server) if server else {}), **outcome.metrics,  # the profile's own win
                      **background.metrics(), **(meter.metrics(outcome.samples) if meter else {})}
    result.host = {**result.host, **(meter.host_facts() if meter else {})}
    result.samples, result.flags, result.background = outcome.samples, list(outcome.flags), _background(background)
    result.intervals = {name: found.as_dict() for name, found in outcome.intervals.items()} or None
    result.items = outcome.items or None
    if background.mean_pct > limits.max_background_cpu_pct:
        raise CellError(background.busy_reason(limits.max_background_cpu_pct))
    if server is not None:
        result.flags += [f for f in server.engine.missing() if f not in result.flags]
    result.flags += job.target.unapplied(job.server)
    if meta and meta.get("has_chat_template") is False and job.kind.needs_server:
        result.flags.append("the model file has no chat template, so llama-server formats prompts as ChatML, "
                            "which this model may not understand: answers and quality scores suffer, timings do not")


def _restarter(server: Server):
    """Stop and start the cell's server again (the same object, so the session keeps it): the new
    process is our child, so the background watch counts it as ours."""
    def restart() -> None:
        server.stop()
        server.start()
    return restart


class _TurnedBusy(BaseException):
    """Raised in the measuring thread when the background watch gives up on the cell: a BaseException, so
    no profile's or client's `except Exception` takes it for a failed request."""


@contextlib.contextmanager
def _stoppable():
    """A function the background watch calls (from its thread) to stop the measurement now: SIGUSR1 to
    the main thread breaks a blocking read (a stream, a tool's output) and raises `_TurnedBusy` there.
    Off the main thread, where no handler can be set, the cell is judged at its end as before."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: None
        return
    stopped = threading.Event()

    def handler(_signum, _frame):
        if not stopped.is_set():
            stopped.set()
            raise _TurnedBusy

    main = threading.main_thread().ident
    previous = signal.signal(signal.SIGUSR1, handler)
    try:
        yield lambda: signal.pthread_kill(main, signal.SIGUSR1)
    finally:
        stopped.set()  # the watch has stopped by now (its `with` is inside); a late signal is ignored
        signal.signal(signal.SIGUSR1, previous)


def _background(found: Background) -> dict:
    """What the result keeps of the background besides its metrics: who it was (no command lines)."""
    return {"top": found.top, "seconds": round(found.seconds, 1)}


def _client(job: CellJob, server: Server | None) -> tuple[ChatClient, str | None]:
    timeout = job.server.request_timeout_s
    if server is not None:
        return ChatClient(server.url, model=server.model_name, timeout_s=timeout, deadline_s=timeout,
                          engine=server.engine), None
    key = job.target.api_key()
    return job.target.client(timeout, key), key


SERVER_METRICS = ("load_time_s", "load_disk_read_mb", "load_disk_read_mb_per_s", "peak_rss_gb", "swap_peak_gb")


def _server_metrics(server: Server) -> dict[str, float]:
    """What the runner measures of the server itself, beside every profile's own figures (SERVER_METRICS)."""
    return {
        "load_time_s": server.load.load_time_s,
        "load_disk_read_mb": server.load.load_disk_read_mb,
        "load_disk_read_mb_per_s": server.load.load_disk_read_mb_per_s,
        "peak_rss_gb": server.peak_rss_bytes() / 2**30,
        "swap_peak_gb": server.memory.peak_swap_bytes / 2**30,
    }


def summary_line(job: CellJob, result: Result) -> str:
    """One line per finished cell: its status and the figures it is rated on."""
    name = job.cell.task_name
    if not result.ok:
        return f"{name}: {result.status.upper()}: {result.reason}"
    m: dict[str, Any] = result.metrics
    figures = ", ".join(f"{n} {figure(m[n])}" for n in job.kind.rated_metrics if m.get(n) is not None)
    return f"{name}: ok{f' ({figures})' if figures else ''}"


def stop_server() -> None:
    """doit's teardown hook: stop the server whether the run ended normally or by Ctrl+C."""
    SESSION.close()
    sys.stdout.flush()
