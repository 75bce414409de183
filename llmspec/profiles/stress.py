"""System stress: sustained generation while the machine's vitals are sampled throughout.

System stress (docs/profiles.md): generate back to back for `duration_s`, sample CPU
temperature, CPU frequency, swap and the server's RSS at least every `sample_interval_s`, and
stop early at `abort_temperature_c`. An abort is a finding, not an error: the outcome is still
returned, with `aborted` = 1.0 and a flag saying why. Which configuration is stressed was
decided by the planner (`stress_choice`); this module only measures.

A small sampler thread takes the vitals so that a long request never delays a sample; the
request loop checks the abort decision between requests, so an abort waits for at most the
request in flight (bounded by `max_tokens`).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from pydantic import Field

from llmspec.errors import CellError
from llmspec.machine.gpu import GpuSource
from llmspec.machine.gpu import summary as gpu_summary
from llmspec.machine.sensors import SensorSource, drop_pct, is_throttled, should_abort, thirds
from llmspec.profiles.base import (
    Outcome,
    ProfileContext,
    ProfileKind,
    Rule,
    clock_check,
    median,
    prompt_files,
    require_cache_miss,
)
from llmspec.progress import Progress
from llmspec.stats import median_interval
from llmspec.strict import Strict

if TYPE_CHECKING:
    from llmspec.run.client import RequestRecord

SYSTEM = "You are a novelist. Continue the story the user gives you, in the same voice."
GIB = 2**30


class StressProfile(Strict):
    """System stress (docs/profiles.md): sustained generation with vitals sampled throughout."""

    duration_s: float = Field(1800.0, gt=0, description="how long to generate back to back")
    sample_interval_s: float = Field(30.0, gt=0, description="vitals sampled at least this often")
    abort_temperature_c: float = Field(90.0, gt=0, description="stop at this CPU temperature")
    max_tokens: int = Field(256, ge=8)
    prompts: str = Field("prompts/interactive", description="folder of .txt prompts")


class StressThresholds(Strict):
    max_temperature_c: float = Field(85.0, gt=0, description="hottest CPU temperature at most (Celsius)")
    max_drift_pct: float = Field(10.0, gt=0, description="tokens/s lost from the first to the last samples")
    max_swap_gb: float = Field(0.1, ge=0, description="swap used during the run at most")


class Sampler:
    """Takes a vitals sample now and then every `interval` seconds on its own thread."""

    def __init__(self, source: SensorSource, server, limit_c: float, gpus: GpuSource | None = None):
        """`gpus`: sampled with the vitals when nvidia-smi answers (GPU memory, utilization,
        temperature, power, SM clock per sample); without a GPU the samples carry none of them."""
        self.source, self.server, self.limit_c = source, server, limit_c
        self.gpus = gpus if gpus is not None and gpus.read() is not None else None
        self.t0 = time.perf_counter()
        self.samples: list[dict[str, Any]] = []
        self.latest_tps: float | None = None  # written by the request loop, read here
        self.requests_done = 0
        self.abort: dict[str, float] | None = None
        self.error: BaseException | None = None
        self.halted = threading.Event()  # abort or sampler failure: the request loop stops
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def take(self) -> dict[str, Any]:
        sample = {
            "kind": "vitals",
            "elapsed_s": round(self.elapsed(), 3),
            "temperature_c": self.source.temperature_c(),
            "cpu_freq_mhz": self.source.cpu_freq_mhz(),
            "swap_used_bytes": self.source.swap_used_bytes(),
            "rss_bytes": self.server.rss_bytes() if self.server is not None else None,
            "tokens_per_s": self.latest_tps,
            "requests_done": self.requests_done,
        }
        if self.gpus is not None:
            readings = self.gpus.read()
            sample |= {k: v for k, v in gpu_summary([readings] if readings else []).items() if k != "gpu_throttled"}
        self.samples.append(sample)
        if should_abort(sample["temperature_c"], self.limit_c) and self.abort is None:
            self.abort = {"temperature_c": sample["temperature_c"], "elapsed_s": sample["elapsed_s"]}
            self.halted.set()
        return sample

    def restart(self) -> None:
        """Start the clock and the series again (after the warm-up), beginning with a sample."""
        self.t0, self.samples = time.perf_counter(), []
        self.take()

    def start(self, interval_s: float) -> None:
        self._thread = threading.Thread(target=self._loop, args=(interval_s,), name="llmspec-stress-vitals",
                                        daemon=True)
        self._thread.start()

    def _loop(self, interval_s: float) -> None:
        due = self.elapsed()
        while True:
            due += interval_s
            if self._stop.wait(max(0.0, due - self.elapsed())):
                return
            try:
                self.take()
            except Exception as exc:  # a bug in a reader: stop the run and re-raise it in the caller
                self.error = exc
                self.halted.set()
                return

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def run(ctx: ProfileContext, sensors: SensorSource | None = None) -> Outcome:
    """`sensors` defaults to the real machine; tests pass a fixture sysfs tree (and put a fake
    nvidia-smi on PATH for the GPU series)."""
    s = ctx.settings
    prompts = [(p.name, p.read_text()) for p in prompt_files(ctx.root, s.prompts)]
    sampler = Sampler(sensors or SensorSource(), ctx.server, s.abort_temperature_c, GpuSource())
    sampler.take()  # before any load: a machine already at the limit is not heated further
    records: list[tuple[float, RequestRecord]] = []
    try:
        if not sampler.halted.is_set():
            ctx.warm_up(prompts[0][1], 8, system=SYSTEM, ignore_eos=True)
            sampler.restart()  # the clock and the series start with the measured run
            if not sampler.halted.is_set():
                sampler.start(s.sample_interval_s)
                _generate(ctx, prompts, sampler, records)
    finally:
        sampler.stop()  # also on KeyboardInterrupt, which then propagates
    if sampler.error is not None:
        raise sampler.error
    if sampler.abort is None:
        sampler.take()  # the end state, however the last interval fell
    return _outcome(records, sampler, s)


def _generate(ctx: ProfileContext, prompts, sampler: Sampler, records: list) -> None:
    """Requests back to back until the duration is spent or the sampler halts the run; a bar on a
    terminal, a line every 20 s elsewhere (llmspec.progress)."""
    s = ctx.settings
    with Progress("sustained generation", s.duration_s, " s", ctx.progress) as bar:
        while sampler.elapsed() < s.duration_s and not sampler.halted.is_set():
            _one(ctx, prompts, sampler, records)
            bar.update(min(sampler.elapsed(), s.duration_s), note=_progress_note(sampler))
        bar.update(min(sampler.elapsed(), s.duration_s))


def _one(ctx: ProfileContext, prompts, sampler: Sampler, records: list) -> None:
    """One request, checked and recorded; its speed is the sampler's latest."""
    name, text = prompts[len(records) % len(prompts)]
    record = ctx.client.chat(text, prompt_name=name, max_tokens=ctx.settings.max_tokens, system=SYSTEM,
                             ignore_eos=True)
    if record.error:
        raise CellError(f"request {len(records) + 1} failed after {sampler.elapsed():.0f} s of sustained "
                        f"generation: {record.error}")
    require_cache_miss(record)
    records.append((round(sampler.elapsed(), 3), record))
    sampler.latest_tps, sampler.requests_done = record.decode_tokens_per_s(), len(records)


def _progress_note(sampler: Sampler) -> str:
    temp, tps = sampler.samples[-1]["temperature_c"], sampler.latest_tps
    return (f"{sampler.requests_done} requests, {f'{tps:.1f}' if tps else '-'} t/s, "
            f"CPU {f'{temp:.1f} C' if temp is not None else 'temperature n/a'}")


def _outcome(records: list[tuple[float, RequestRecord]], sampler: Sampler, s) -> Outcome:
    vitals = sampler.samples
    decode = [r.decode_tokens_per_s() for _, r in records]
    client_tps = median(decode)
    server_tps = median([(r.timings or {}).get("predicted_per_second") for _, r in records])
    disagreement, flags = clock_check(client_tps, server_tps, "decode speed")
    temps = [v["temperature_c"] for v in vitals if v["temperature_c"] is not None]
    freqs = [v["cpu_freq_mhz"] for v in vitals if v["cpu_freq_mhz"] is not None]
    throttled = is_throttled(freqs)
    metrics = {
        "tokens_per_s": client_tps,
        "server_tokens_per_s": server_tps,
        "clock_disagreement_pct": disagreement,
        "drift_pct": drop_pct(decode),
        "duration_s": max([vitals[-1]["elapsed_s"]] + [elapsed for elapsed, _ in records[-1:]]),
        "samples_taken": float(len(vitals)),
        "requests": float(len(records)),
        "swap_peak_gb": _swap_caused_gb([v["swap_used_bytes"] for v in vitals]),
        "rss_peak_gb": _peak_gb(v["rss_bytes"] for v in vitals),
        "cpu_freq_start_mhz": median(thirds(freqs)[0]) if freqs else None,
        "cpu_freq_end_mhz": median(thirds(freqs)[1]) if freqs else None,
        "throttled": None if throttled is None else float(throttled),
        "max_temperature_c": max(temps) if temps else None,
        "mean_temperature_c": sum(temps) / len(temps) if temps else None,
        "aborted": 1.0 if sampler.abort else 0.0,
    }
    flags += _flags(temps, freqs, decode, sampler, s)
    samples = vitals + [_request_sample(elapsed, r) for elapsed, r in records]
    intervals = {name: found for name, values in (
        ("tokens_per_s", decode), ("server_tokens_per_s", [(r.timings or {}).get("predicted_per_second")
                                                           for _, r in records]))
        if (found := median_interval(values)) is not None}
    return Outcome(metrics, samples, flags, intervals)


def _flags(temps, freqs, decode, sampler: Sampler, s) -> list[str]:
    flags = []
    if not temps:
        flags.append("temperature: not available on this machine (no sensors)")
    if len(freqs) < 2:
        flags.append("cpu frequency: not readable on this machine (or one sample only); throttling unknown")
    if sampler.abort:
        a = sampler.abort
        flags.append(f"aborted: CPU temperature {a['temperature_c']:.1f} C reached the {s.abort_temperature_c:g} C "
                     f"limit at {a['elapsed_s']:.0f} s of {s.duration_s:g} s, after {len(decode)} requests")
    timed = sum(d is not None for d in decode)
    if timed < 3:
        flags.append(f"drift: only {timed} timed request{'s' if timed != 1 else ''}; too few to show a trend")
    return flags


def _swap_caused_gb(values: list[int | None]) -> float | None:
    """Swap the run added over what was in use when it started: a machine that swapped 2 GB before
    the cell (another program, long ago) is not this configuration's failure."""
    present = [v for v in values if v is not None]
    return max(0, max(present) - present[0]) / GIB if present else None


def _peak_gb(values) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) / GIB if present else None


def _request_sample(elapsed_s: float, record: RequestRecord) -> dict[str, Any]:
    """The request without per-chunk times and text (a 30-minute run would store ~10^5 of them);
    first/last chunk time and the token count still recompute the decode speed."""
    sample = record.as_sample()
    chunks = sample.pop("chunk_times_s")
    sample.pop("content")
    return {"kind": "request", "elapsed_s": elapsed_s, **sample, "chunks": len(chunks),
            "first_chunk_s": chunks[0] if chunks else None, "last_chunk_s": chunks[-1] if chunks else None,
            "decode_tokens_per_s": record.decode_tokens_per_s()}


KIND = ProfileKind(
    name="stress",
    summary="sustained generation on the largest passing configuration: temperature, throttling, swap, drift",
    version=1,
    settings=StressProfile,
    thresholds=StressThresholds,
    run=run,
    files=lambda s, root: ("prompt_files", prompt_files(root, s.prompts)),
    metrics=("tokens_per_s", "server_tokens_per_s", "clock_disagreement_pct", "drift_pct", "duration_s",
             "samples_taken", "requests", "swap_peak_gb", "rss_peak_gb", "cpu_freq_start_mhz", "cpu_freq_end_mhz",
             "throttled", "max_temperature_c", "mean_temperature_c", "aborted"),
    rules=(
        Rule("max_temperature_c", "max_temperature_c", "max", critical=True),
        Rule("drift_pct", "max_drift_pct", "max", critical=False),
        Rule("swap_peak_gb", "max_swap_gb", "max", critical=True),
    ),
    headlines={"drift_pct": "drift_pct", "max_temperature_c": "max_temperature_c"},
    performance=False,  # it judges the machine, after the performance profiles chose what to stress
    managed_only=True,  # reads the server's memory and the machine's sensors
    last=True,
    roles=frozenset({"sustained"}),
    uses=("serving",),
    init_settings=("duration_s",),
)
