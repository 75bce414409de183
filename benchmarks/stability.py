"""Stability: does the same cell give the same figure twice, does the printed interval hold the next
run's figure, and is a busy machine caught every time?

The demo's interactive cell for SmolLM2-135M-Instruct Q4_1 is measured as `doit` measures it
(`llmspec.run.runner.measure` on the planner's job, the demo's settings, a fresh llama-server
each run) `--runs` times (default 10) with `starts = --starts` (default 3: the requests spread over
that many fresh server starts, at least 2 each, the interval where a rerun lands 95 % of the time,
from the start medians; issue #27), each
run alternated with one llama-bench run on the same file, threads and token count (the order
flipped every run, so drift falls on both). Printed:

- each run's figure with its printed 95 % interval, and the spread of the figures, as
  (largest - smallest) / their median and as a CV, next to llama-bench's alternated CV; the
  ratio of the two CVs (target: at most 1.2);
- the variance decomposition, each part as a CV of the grand mean: request to request within a
  server start, between server starts (one-way random-effects ANOVA over every start of every
  run, llmspec.stats.variance_components), between prompts (what the prompt means spread beyond
  the request noise, after each start's mean is taken out), and llama-bench's own; beside them,
  how much faster (+) or slower (-) the first measured request of a start runs than the start's
  others, on average (a warm-up that leaves the server short of its steady speed shows here);
- coverage: for each run but the last, whether its printed interval holds the next run's figure,
  for the interval the tool stores (over starts) and, from the same requests, the interval over
  requests alone that `starts = 1` prints (target: at least 90 % for the stored one).

Then five more runs with a CPU-bound busy loop on every core (skip them with --no-busy): in the
first two the loops start before the cell (the runner's wait for a quiet machine must give up and
refuse to measure), in the last three at the first measured request (the watch during the
measurement must catch it). The loops are not children of this process, as another program's
would not be, and the busy runs measure only 3 requests of 32 tokens. Printed: how many of the
five were refused as busy, each with its reason. Target: all. The wait for quiet is cut to 10 s.

`--smoke`: 2 runs, 2 starts, 3 requests of 16 tokens, no busy runs: checks the script works in
about a minute; its figures mean nothing. Nothing is written under build/results. Run it after
`make demo` on a machine with nothing else running; the default run takes about 10 minutes.
"""

from __future__ import annotations

import argparse
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
from llmspec.profiles.interactive import PER_START
from llmspec.results import Result
from llmspec.run.runner import measure
from llmspec.run.session import SESSION
from llmspec.spec import load_spec
from llmspec.stats import median_interval, variance_components

MODEL, QUANT = "SmolLM2-135M-Instruct", "Q4_1"
RUNS = 10
STARTS = 3
BUSY_RUNS = 5
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


def one_run(plan: Plan, loops: BusyLoops | None, at_first_request: bool, update: dict | None = None) -> Result:
    """The cell measured once, on a fresh server; the loops (if any) started before it or at request 1.
    `update`: settings of the interactive profile to measure with instead of the spec's."""
    job = plan.job(Cell(plan.spec.name, MODEL, QUANT, "interactive"))
    if loops is not None:
        job = replace(job, settings=job.settings.model_copy(update=BUSY_SETTINGS))
    elif update:
        job = replace(job, settings=job.settings.model_copy(update=update))
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


def bench_once(plan: Plan, max_tokens: int) -> float:
    """llama-bench's decode speed, one run of the same file, threads and token count."""
    path = make(plan.spec, MODEL, QUANT, plan.threads())
    bench = find_tool("llama-bench", find_server(plan.spec.server.binary))
    done = subprocess.run([str(bench), "-m", str(path), "-p", "0", "-n", str(max_tokens), "-r", "1", "-t",
                           str(plan.threads()), "-o", "json"], capture_output=True, text=True, timeout=600, check=True)
    return float(json.loads(done.stdout)[0]["avg_ts"])


def decomposition(results: list[Result], bench: list[float]) -> dict[str, float | None]:
    """Each source of spread as a CV (%) of the grand mean of the per-request speeds (module doc)."""
    starts: dict[tuple[int, int], list[float]] = {}
    rows = []
    for run, result in enumerate(results):
        for sample in result.samples:
            speed = speed_of(sample)
            if speed is not None:
                starts.setdefault((run, sample.get("start", 1)), []).append(speed)
                rows.append(((run, sample.get("start", 1)), sample.get("prompt_name", ""), speed))
    speeds = [v for _, _, v in rows]
    grand = statistics.fmean(speeds) if speeds else None
    if not grand:
        return {}
    cv = lambda var: (var ** 0.5) / grand * 100 if var is not None else None  # noqa: E731
    parts = variance_components(list(starts.values()))
    means = {key: statistics.fmean(vs) for key, vs in starts.items()}
    by_prompt: dict[str, list[float]] = {}
    for key, prompt, speed in rows:  # the start's mean taken out: what the prompt adds on its own
        by_prompt.setdefault(prompt, []).append(speed - means[key] + grand)
    prompts = variance_components(list(by_prompt.values()))
    first = [vs[0] / statistics.fmean(vs[1:]) for vs in starts.values() if len(vs) > 1]
    return {"within a start": cv(parts[0]) if parts else None, "between starts": cv(parts[1]) if parts else None,
            "first request of a start vs the rest": (statistics.fmean(first) - 1) * 100 if first else None,
            "between prompts": cv(prompts[1]) if prompts else None,
            "llama-bench": statistics.stdev(bench) / statistics.fmean(bench) * 100 if len(bench) > 1 else None}


def speed_of(sample: dict) -> float | None:
    """A stored request's client-clock decode speed (RequestRecord.decode_tokens_per_s from its sample)."""
    times, n = sample.get("chunk_times_s") or [], sample.get("completion_tokens")
    if not n or len(times) < 2 or times[-1] <= times[0]:
        return None
    return (n - 1) / (times[-1] - times[0])


def coverage(intervals: list[tuple[float, float] | None], figures: list[float]) -> tuple[int, int]:
    """(how many of runs 1..N-1 printed an interval holding the next run's figure, how many were judged)."""
    pairs = [(i, f) for i, f in zip(intervals, figures[1:]) if i is not None]
    return sum(low <= f <= high for (low, high), f in pairs), len(pairs)


def request_interval(result: Result) -> tuple[float, float, float] | None:
    """(median, low, high) over the run's requests alone: what `starts = 1` prints for the same requests."""
    speeds = [v for s in result.samples if (v := speed_of(s)) is not None]
    found = median_interval(speeds)
    return (statistics.median(speeds), found.low, found.high) if found else None


def describe(result: Result) -> str:
    m, found = result.metrics, (result.intervals or {}).get("tokens_per_s") or {}
    spread = f" ({found['low']:.1f}-{found['high']:.1f}, n={found['n']})" if found else ""
    busy, steal = m.get("background_cpu_pct"), m.get("steal_pct")
    background = f"background {busy:.0f}% of a core" if busy is not None else "background not measured"
    background += f", steal {steal:.1f}%" if steal is not None else ""
    return f"{m.get('tokens_per_s', 0):.1f} t/s{spread}, {m.get('requests', 0):.0f} requests, {background}"


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=RUNS, help="quiet runs (coverage needs at least 2)")
    parser.add_argument("--starts", type=int, default=STARTS, help="server starts per run (the profile's `starts`)")
    parser.add_argument("--requests", type=int, help="measured requests per run (default: the demo's)")
    parser.add_argument("--max-tokens", type=int, help="tokens per request (default: the demo's)")
    parser.add_argument("--no-busy", action="store_true", help="skip the five busy-machine runs")
    parser.add_argument("--smoke", action="store_true", help="2 runs, 2 starts, 3 requests of 16 tokens, no busy")
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.starts, args.requests, args.max_tokens, args.no_busy = 2, 2, 3, 16, True
    if args.runs < 2:
        parser.error("--runs must be 2 or more: coverage compares each run with the next")
    return args


def main() -> None:
    args = arguments()
    spec = load_spec(REPO / "specs" / "demo.toml")
    spec = spec.model_copy(update={"limits": spec.limits.model_copy(update={"quiet_wait_s": QUIET_WAIT_S})})
    plan = Plan(spec)
    demo = spec.profiles.interactive
    requests = args.requests or demo.requests
    update = {"starts": args.starts, "requests": requests,
              "max_requests": max(requests, demo.max_requests, args.starts * PER_START),
              "max_tokens": args.max_tokens or demo.max_tokens}
    say(f"stability: {MODEL}@{QUANT} interactive ({update}), {args.runs} quiet runs alternated with llama-bench"
        f"{'' if args.no_busy else f', then {BUSY_RUNS} with a busy loop on each of {os.cpu_count()} cores'}")
    machine_note()
    results, bench, stored, pooled = [], [], [], []
    for i in range(args.runs):
        for step in (("bench", "cell") if i % 2 == 0 else ("cell", "bench")):
            with ForeignCpu() as foreign:
                if step == "bench":
                    bench.append(bench_once(plan, update["max_tokens"]))
                    say(f"  llama-bench {i + 1}/{args.runs}: {bench[-1]:.1f} t/s; others used {foreign.share:.0%}")
                    continue
                result = one_run(plan, None, False, update)
            if not result.ok:
                sys.exit(f"stability: quiet run {i + 1} was not measured: {result.reason}")
            results.append(result)
            found = (result.intervals or {}).get("tokens_per_s")
            stored.append((found["low"], found["high"]) if found else None)
            pooled.append(request_interval(result))
            say(f"  quiet run {i + 1}/{args.runs}: {describe(result)}, {result.metrics.get('server_starts', 1):.0f} "
                f"starts; others used {foreign.share:.0%} of the CPU")
    figures = [r.metrics["tokens_per_s"] for r in results]
    center = statistics.median(figures)
    tool_range, cv = spread(figures)
    bench_range, bench_cv = spread(bench)
    say(f"  figures {', '.join(f'{v:.1f}' for v in figures)} t/s: range {tool_range:.1f}% of their median, "
        f"CV {cv:.1f}%")
    say(f"  llama-bench alternated: {', '.join(f'{v:.1f}' for v in bench)} t/s: range {bench_range:.1f}%, "
        f"CV {bench_cv:.1f}%; CV ratio {cv / bench_cv:.2f}" if bench_cv else "  llama-bench: no spread")
    parts = decomposition(results, bench)
    say("  variance decomposition (CV % of the mean request speed): " + ", ".join(
        f"{name} {'-' if value is None else f'{value:.1f}%'}" for name, value in parts.items()))
    held, judged = coverage(stored, figures)
    held_req, judged_req = coverage([p[1:] if p else None for p in pooled], [p[0] if p else 0.0 for p in pooled])
    say(f"  coverage: the stored interval held the next run's figure {held} of {judged} times; the interval over "
        f"requests alone (what starts = 1 prints) {held_req} of {judged_req}")
    flagged = busy_runs(plan) if not args.no_busy else None
    ratio = f"{cv / bench_cv:.2f}" if bench_cv else "?"
    figure("stability", f"coverage {held}/{judged} (requests alone {held_req}/{judged_req}); CV {cv:.1f} % vs "
                        f"llama-bench {bench_cv:.1f} % (ratio {ratio}); range {tool_range:.1f} % over {args.runs} runs "
                        f"(median {center:.1f} t/s, {args.starts} starts each)"
                        + (f"; {flagged} of {BUSY_RUNS} busy runs flagged" if flagged is not None else ""),
           ">= 90 % coverage; CV ratio <= 1.2; all busy runs flagged")


def busy_runs(plan: Plan) -> int:
    loops, flagged = BusyLoops(), 0
    for i in range(BUSY_RUNS):
        when = "before the cell" if i < BUSY_BEFORE else "at the first request"
        result = one_run(plan, loops, i >= BUSY_BEFORE)
        busy = result.status == "error" and "busy" in result.reason
        flagged += busy
        say(f"  busy run {i + 1}/{BUSY_RUNS} (loops started {when}): "
            f"{'refused: ' + result.reason if busy else 'NOT flagged: ' + (result.reason or describe(result))}")
    return flagged


if __name__ == "__main__":
    main()
