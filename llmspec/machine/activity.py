"""What else the machine is doing while a cell measures: other processes' CPU, steal, memory.

A busy machine ruins every figure, silently: llama.cpp's worker threads spin while they wait for
each other, so a neighbour using one of two cores can cut decode speed by far more than half
(measured here: 4.7 t/s instead of ~36 with a second llama-server running). The watch samples,
on its own thread, the system's busy CPU time minus the time of the processes that belong to
the measurement (llmspec and the llama-server it started, `own`), and names the busiest other
processes (name and pid only: command lines may hold secrets). Percentages are of one core,
so 100 % is one core fully used and a 2-core machine tops out at 200 %.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil

BUSY_FIELDS = ("user", "nice", "system", "irq", "softirq", "steal")
TOP = 3  # other processes named in a result
NAME_ABOVE_PCT = 5.0  # below this share of a core a process is not worth naming


@dataclass
class Background:
    """The other processes' activity over a measurement (percent of one core)."""

    mean_pct: float = 0.0
    peak_pct: float = 0.0
    steal_pct: float | None = None
    min_available_gb: float | None = None
    swapped_mb: float = 0.0  # swap-ins plus swap-outs during the measurement
    top: list[dict] = field(default_factory=list)  # [{"name", "pid", "cpu_pct", "note"?}]
    seconds: float = 0.0

    def metrics(self) -> dict[str, float | None]:
        return {"background_cpu_pct": self.mean_pct, "background_cpu_peak_pct": self.peak_pct,
                "steal_pct": self.steal_pct, "min_available_gb": self.min_available_gb,
                "swapped_mb": self.swapped_mb}

    def who(self) -> str:
        """"python3 pid 11417, llama-server pid 13226 (not started by this run)"."""
        names = [f"{p['name']} pid {p['pid']}" + (f" ({p['note']})" if p.get("note") else "") for p in self.top]
        return ", ".join(names) or "no single process stands out: short-lived processes or the kernel"

    def busy_reason(self, limit_pct: float) -> str:
        return (f"the machine was busy: {self.what_used()} during the measurement (limit {limit_pct:g}%; "
                f"{self.who()}); measure again on a quiet machine")

    def what_used(self) -> str:
        """"other processes used 41% of a core", with the hypervisor's share (steal: CPU time the host
        gave other virtual machines) said apart when it is worth naming, because no process here is
        to blame for it and quitting programs will not help."""
        said = f"other processes used {self.mean_pct:.0f}% of a core"
        if self.steal_pct is not None and self.steal_pct >= NAME_ABOVE_PCT:
            said += f", {self.steal_pct:.0f}% of it taken by the hypervisor for other virtual machines (steal)"
        return said


def own_tree(*extra: int) -> Callable[[], set[int]]:
    """This process, its children (the llama-server it started) and `extra` pids, looked up live."""
    def pids() -> set[int]:
        me = psutil.Process()
        try:
            kids = {c.pid for c in me.children(recursive=True)}
        except psutil.Error:
            kids = set()
        return {me.pid, *kids, *extra}
    return pids


def listening_pids(port: int) -> set[int]:
    """Processes listening on a loopback port: an endpoint on this machine is part of what is measured."""
    try:
        return {c.pid for c in psutil.net_connections("tcp")
                if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid}
    except (psutil.Error, OSError):
        return set()


class Sampler:
    """Busy CPU seconds of the machine and of `own` between two calls of `step`."""

    def __init__(self, own: Callable[[], set[int]]):
        self.own = own
        self.cores = psutil.cpu_count() or 1
        self._t, self._busy, self._steal = time.perf_counter(), *_system()
        self._own_cpu = self._own_seconds()
        self._procs: dict[int, tuple[str, float]] = {}
        self.by_pid: dict[int, tuple[str, float]] = {}  # other processes' CPU seconds over the window

    def _own_seconds(self) -> float:
        """CPU seconds of the measurement's processes, including children they have already reaped:
        a tool that ran and exited between two samples (llama-perplexity, llama-quantize) is ours too."""
        total = 0.0
        for pid in self.own():
            try:
                t = psutil.Process(pid).cpu_times()
                total += t.user + t.system + getattr(t, "children_user", 0.0) + getattr(t, "children_system", 0.0)
            except psutil.Error:
                pass
        return total

    def step(self) -> tuple[float, float, float | None]:
        """(seconds of the window, other processes' CPU seconds in it, steal seconds or None)."""
        now, (busy, steal), own = time.perf_counter(), _system(), self._own_seconds()
        wall = now - self._t
        other = max(0.0, (busy - self._busy) - (own - self._own_cpu))
        stolen = None if steal is None or self._steal is None else max(0.0, steal - self._steal)
        self._t, self._busy, self._steal, self._own_cpu = now, busy, steal, own
        return wall, other, stolen

    def name_others(self) -> dict[int, tuple[str, float]]:
        """CPU seconds of every other process since the last call (the first call starts the count)."""
        own, seen = self.own(), {}
        for proc in psutil.process_iter(["pid", "name", "cpu_times"]):
            info = proc.info
            if info["pid"] in own or info["cpu_times"] is None:
                continue
            seconds = info["cpu_times"].user + info["cpu_times"].system
            name, before = self._procs.get(info["pid"], (info["name"], None))
            seen[info["pid"]] = (info["name"] or "?", seconds)
            if before is not None and seconds > before:
                used = self.by_pid.get(info["pid"], (name, 0.0))[1] + seconds - before
                self.by_pid[info["pid"]] = (info["name"] or "?", used)
        self._procs = seen
        return self.by_pid


class BackgroundWatch:
    """Samples the background every `interval_s` on its own thread from `start()` to `stop()`.

    With `on_busy`, a background above `limit_pct` in every window for `sustained_s` calls it once, from
    the watch's thread: a long cell need not measure to its end (458 s once) on a machine that has
    already spoilt it. `busy_for_s` then says how long the load had lasted."""

    def __init__(self, own: Callable[[], set[int]], interval_s: float = 1.0, limit_pct: float | None = None,
                 sustained_s: float = 0.0, on_busy: Callable[[], None] | None = None):
        self.own, self.interval_s = own, interval_s
        self.limit_pct, self.sustained_s, self.on_busy = limit_pct, sustained_s, on_busy
        self.busy_for_s: float | None = None  # set when on_busy was called
        self._run_s = 0.0  # how long every window has been above the limit, up to now
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._windows: list[tuple[float, float, float | None]] = []
        self._available: list[float] = []
        self._swap0 = _swapped()
        self._sampler: Sampler | None = None

    def start(self) -> BackgroundWatch:
        self._sampler = Sampler(self.own)
        self._sampler.name_others()
        self._thread = threading.Thread(target=self._loop, name="llmspec-background", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._take()
            if self.on_busy is not None and self.limit_pct is not None and self.busy_for_s is None:
                wall, other, _ = self._windows[-1]
                self._run_s = self._run_s + wall if wall > 0 and other / wall * 100 > self.limit_pct else 0.0
                if self._run_s >= max(self.sustained_s, self.interval_s):
                    self.busy_for_s = self._run_s
                    self.on_busy()

    def _take(self) -> None:
        self._windows.append(self._sampler.step())
        self._sampler.name_others()
        self._available.append(psutil.virtual_memory().available / 2**30)

    def stop(self) -> Background:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._take()  # the last stretch, however short
        return summarize(self._windows, self._sampler.by_pid, self._available, _swapped() - self._swap0, self.own())

    def __enter__(self) -> BackgroundWatch:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.result = self.stop()


def summarize(windows: list[tuple[float, float, float | None]], by_pid: dict[int, tuple[str, float]],
              available: list[float], swapped_mb: float, own: set[int]) -> Background:
    """Mean over the whole time (CPU seconds / wall seconds), peak over windows of at least 0.2 s."""
    wall = sum(w for w, _, _ in windows)
    if wall <= 0:
        return Background()
    other = sum(o for _, o, _ in windows)
    steals = [s for _, _, s in windows if s is not None]
    peak = max((o / w * 100 for w, o, _ in windows if w >= 0.2), default=other / wall * 100)
    named = sorted(((seconds / wall * 100, pid, name) for pid, (name, seconds) in by_pid.items()), reverse=True)
    top = [_named(name, pid, pct) for pct, pid, name in named[:TOP] if pct >= NAME_ABOVE_PCT]
    return Background(other / wall * 100, peak, sum(steals) / wall * 100 if steals else None,
                      min(available) if available else None, swapped_mb, top, wall)


def _named(name: str, pid: int, pct: float) -> dict:
    entry = {"name": name, "pid": pid, "cpu_pct": round(pct, 1)}
    if "llama-server" in name:
        entry["note"] = "not started by this run"
    return entry


def wait_until_quiet(own: Callable[[], set[int]], limit_pct: float, wait_s: float, say=print,
                     window_s: float = 1.0) -> Background:
    """Return once one window of `window_s` shows the background under `limit_pct`, or after
    `wait_s` with the last window's figures; says what it is waiting for (once per 10 s)."""
    deadline, last_said = time.perf_counter() + wait_s, 0.0
    while True:
        watch = BackgroundWatch(own, interval_s=window_s).start()
        time.sleep(window_s)
        found = watch.stop()
        if found.mean_pct <= limit_pct or time.perf_counter() >= deadline:
            return found
        if time.perf_counter() - last_said >= 10:
            left = deadline - time.perf_counter()
            say(f"  waiting for a quiet machine: {found.what_used()} ({found.who()}); up to {left:.0f} s more")
            last_said = time.perf_counter()


def _system() -> tuple[float, float | None]:
    t = psutil.cpu_times()
    return sum(getattr(t, f, 0.0) for f in BUSY_FIELDS), getattr(t, "steal", None)


def _swapped() -> float:
    try:
        s = psutil.swap_memory()
        return (s.sin + s.sout) / 2**20
    except (OSError, RuntimeError):
        return 0.0

