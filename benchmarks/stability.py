"""Stability: does the same cell give the same figure twice, and is a busy machine caught every time?

The demo's interactive cell for SmolLM2-135M-Instruct Q4_1 is measured as `doit` measures it
(`llmspec.run.runner.measure` on the planner's job, the demo's settings, a fresh llama-server
each time), five times in a row on a quiet machine. Printed: each run's median tokens/s with its
95 % interval, and how far the five medians spread, as (largest - smallest) / median of the
medians (the coefficient of variation on stderr too). Target: at most 3 %. For scale, llama-bench
runs five times on the same file with the same threads and token count: the machine's own
run-to-run spread, which no measuring tool can get below.

Then five more runs with a CPU-bound busy loop on every core: in the first two the loops start
before the cell (the runner's wait for a quiet machine must give up and refuse to measure), in
the last three they start at the first measured request (the watch during the measurement must
catch it). The loops are not children of this process, as another program's would not be (the
runner counts its own children as part of the measurement), and the busy runs measure only 3
requests of 32 tokens (on a saturated machine llama.cpp runs up to 50x slower). Printed: how many
of the five were refused as busy, each with its reason. Target: all.
The wait for quiet is cut from the spec's 60 s to 10 s here, so the busy half takes about a minute.

Nothing is written under build/results: the measurements go to stdout, not to the project.
Run it after `make demo` on a machine with nothing else running; about 3 minutes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
from dataclasses import replace

from _common import REPO, ForeignCpu, figure, machine_note, say

from llmspec.models.binaries import find_server, find_tool
from llmspec.models.files import make
from llmspec.plan.cells import Cell
from llmspec.plan.planner import Plan
from llmspec.results import Result
from llmspec.run.runner import measure
from llmspec.run.session import SESSION
from llmspec.spec import load_spec

MODEL, QUANT = "SmolLM2-135M-Instruct", "Q4_1"
RUNS = 5
BUSY_BEFORE = 2  # of the busy runs, how many start the loops before the cell; the rest at its first request
QUIET_WAIT_S = 10.0
LOOP_LIFETIME_S = 600
# Under a busy loop on every core llama.cpp runs up to 50x slower, so the busy runs measure the
# minimum the statistics allow (3 requests of 32 tokens): what is tested is that they are refused.
BUSY_SETTINGS = {"requests": 3, "max_requests": 3, "max_tokens": 32}


class BusyLoops:
    """One CPU-bound loop per core, as another program would be: not a child of this process (the
    runner counts its own children as part of the measurement), and ending by itself after
    LOOP_LIFETIME_S should this script die before stopping them."""

    def __init__(self) -> None:
        self.pids: list[int] = []

    def start(self) -> None:
        if self.pids:
            return
        loop = f"import time; end = time.time() + {LOOP_LIFETIME_S}\nwhile time.time() < end: pass"
        for _ in range(os.cpu_count() or 1):  # `sh` starts it in the background and exits: init adopts it
            out = subprocess.run(["sh", "-c", '"$0" -c "$1" >/dev/null 2>&1 & echo $!', sys.executable, loop],
                                 capture_output=True, text=True, check=True)
            self.pids.append(int(out.stdout.strip()))

    def stop(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.pids = []


def one_run(plan: Plan, loops: BusyLoops | None, at_first_request: bool) -> Result:
    """The cell measured once, on a fresh server; the loops (if any) started before it or at request 1."""
    job = plan.job(Cell(plan.spec.name, MODEL, QUANT, "interactive"))
    if loops is not None:
        job = replace(job, settings=job.settings.model_copy(update=BUSY_SETTINGS))
    if job.skip:
        sys.exit(f"stability: the planner skips {MODEL}@{QUANT} interactive: {job.skip}")

    def progress(line: str) -> None:
        if loops is not None and at_first_request and "request 1/" in line:
            loops.start()
        say(f"    {line.strip()}")

    if loops is not None and not at_first_request:
        loops.start()
    try:
        return measure(job, progress)
    finally:
        if loops is not None:
            loops.stop()
        SESSION.close()  # the next run starts its own server, as the next `doit` would


def spread(values: list[float]) -> tuple[float, float]:
    """(range as % of the median, coefficient of variation in %)."""
    center = statistics.median(values)
    return (max(values) - min(values)) / center * 100, statistics.stdev(values) / statistics.fmean(values) * 100


def bench_runs(plan: Plan) -> list[float]:
    """llama-bench's decode speed, RUNS single runs of the same file, threads and token count: the
    machine's own run-to-run spread, which no measuring tool can get below."""
    path = make(plan.spec, MODEL, QUANT, plan.threads())
    bench = find_tool("llama-bench", find_server(plan.spec.server.binary))
    n = str(plan.spec.profiles.interactive.max_tokens)
    out = []
    for _ in range(RUNS):
        done = subprocess.run([str(bench), "-m", str(path), "-p", "0", "-n", n, "-r", "1", "-t", str(plan.threads()),
                               "-o", "json"], capture_output=True, text=True, timeout=600, check=True)
        out.append(float(json.loads(done.stdout)[0]["avg_ts"]))
    return out


def describe(result: Result) -> str:
    m, found = result.metrics, (result.intervals or {}).get("tokens_per_s") or {}
    spread = f" ({found['low']:.1f}-{found['high']:.1f}, n={found['n']})" if found else ""
    busy, steal = m.get("background_cpu_pct"), m.get("steal_pct")
    background = f"background {busy:.0f}% of a core" if busy is not None else "background not measured"
    background += f", steal {steal:.1f}%" if steal is not None else ""
    return f"{m.get('tokens_per_s', 0):.1f} t/s{spread}, {m.get('requests', 0):.0f} requests, {background}"


def main() -> None:
    spec = load_spec(REPO / "specs" / "demo.toml")
    spec = spec.model_copy(update={"limits": spec.limits.model_copy(update={"quiet_wait_s": QUIET_WAIT_S})})
    plan = Plan(spec)
    say(f"stability: {MODEL}@{QUANT} interactive (demo settings), {RUNS} quiet runs, then {RUNS} with a busy "
        f"loop on each of {os.cpu_count()} cores")
    machine_note()
    medians = []
    for i in range(RUNS):
        with ForeignCpu() as foreign:
            result = one_run(plan, None, False)
        if not result.ok:
            sys.exit(f"stability: quiet run {i + 1} was not measured: {result.reason}")
        medians.append(result.metrics["tokens_per_s"])
        say(f"  quiet run {i + 1}/{RUNS}: {describe(result)}; others used {foreign.share:.0%} of the CPU")
    center = statistics.median(medians)
    tool_range, cv = spread(medians)
    say(f"  medians {', '.join(f'{v:.1f}' for v in medians)} t/s: range {tool_range:.1f}% of their median, "
        f"CV {cv:.1f}%")
    speeds = bench_runs(plan)
    bench_range, bench_cv = spread(speeds)
    say(f"  llama-bench, {RUNS} single runs: {', '.join(f'{v:.1f}' for v in speeds)} t/s: range {bench_range:.1f}%, "
        f"CV {bench_cv:.1f}% (the machine's own spread)")
    loops, flagged = BusyLoops(), 0
    for i in range(RUNS):
        when = "before the cell" if i < BUSY_BEFORE else "at the first request"
        result = one_run(plan, loops, i >= BUSY_BEFORE)
        busy = result.status == "error" and "busy" in result.reason
        flagged += busy
        say(f"  busy run {i + 1}/{RUNS} (loops started {when}): "
            f"{'refused: ' + result.reason if busy else 'NOT flagged: ' + (result.reason or describe(result))}")
    figure("stability", f"tokens_per_s varies {tool_range:.1f} % across {RUNS} runs (CV {cv:.1f} %, median "
                        f"{center:.1f} t/s; llama-bench {bench_range:.1f} %, CV {bench_cv:.1f} %); "
                        f"{flagged} of {RUNS} busy runs flagged", "<= 3 %; all flagged")


if __name__ == "__main__":
    main()
