"""Fidelity: are the interactive profile's decode speeds the model's, or the tool's overhead?

For each demo configuration (specs/demo.toml's models at their quants), rounds alternate
`llama-bench -p 0 -n 128 -r 1` and the tool's own measurement: a real llama-server started
with exactly the arguments the runner gives it (CellJob.server_args; threads as the spec
resolves them) and the interactive profile run once on it (its warm-up request, then its
measured requests, with max_tokens = 128 to match llama-bench's -n). Alternating, with the order
flipped each round, spreads drift over both sides. The profile decodes after its prompt (about
150 tokens), and on these tiny models attention over that context alone costs 10-15 % of decode
speed, so llama-bench is also run at that depth (-d), the like-for-like reference. A step during
which other processes took more than 10 % of the CPU is redone (up to 3 tries): on 2 shared cores
a neighbour can slow llama.cpp several-fold. Reported per configuration: medians of llama-bench
(depth 0 and the prompt's depth), the profile's client-clock tokens_per_s and server_tokens_per_s,
each as a percent of llama-bench, the two clocks' agreement, and the same requests sent by curl.
Target: the tool within 5 % of llama-bench, the clocks within 5 % of each other; every
configuration at 95 % or more of llama-bench at the same depth (issue #27), each listed, with
the time per token the server spends beyond llama-bench's at that depth (ms/token, from the
slower of the two clocks).

Where the rest goes (measured on a shared 2-core machine, issue #27): the shortfall at the same
depth is about the same time per token in every configuration, 0.6-1.3 ms (2 rounds: SmolLM2
Q2_K 92 %, Q4_1 93 %, Q8_0 96 %, gemma Q4_K_M 95 %, Q8_0 96 %), so the fastest configurations
fall furthest below 95 %: at 1 ms a token, anything above 50 t/s does. It is not the sampler
chain (SmolLM2 Q8_0, server clock, interleaved: llama-server's default chain at temperature 0.8
59.6 t/s, top_k + temperature only 59.4, greedy 57.4, top_p/min_p off 58.5) nor the context size
(ctx 512 84.3 against 2048 80.7 t/s, Q2_K, within the noise). Streaming is part of it: the same
request not streamed decodes 93.5 t/s against 89.0 streamed (Q2_K, server clock), the server
sending a chunk per token and the client reading it on the same 2 cores. A chat user streams, so
the profile keeps streaming and this benchmark reports the cost rather than hiding it. Flash
attention is on in both llama-server and llama-bench here (llama.cpp's `auto` turns it on for
this CPU; llama-bench's JSON says so), so it does not move the ratio, but it costs what a user
gets: off, SmolLM2 Q8_0 decodes 75.4 against 61.9 t/s (llama-bench, depth 172) and 70.9 against
60.4 through llama-server; Q2_K 116.7 against 84.5 (llama-bench). A spec can measure both with a
server setting variant (`flash_attn`).
Measured again with 5 rounds on a quiet machine (2026-12-05), each configuration's ratio paired per
round with a 95 % interval: gemma Q4_K_M 93.3 % (92.9-93.7: below 95 %), SmolLM2 Q2_K 92.6 % (88.9-96.4),
Q8_0 95.1 % (93.9-96.3), gemma Q8_0 95.2 % (93.9-96.5), Q4_1 95.4 % (93.6-97.3). The one clear miss is the
model with the 262,144-token vocabulary, 1.2-1.6 ms a token beyond llama-bench against 0.6-0.8 for
SmolLM2's 49,152 at Q4_1/Q8_0; neither the sampler chain (gemma Q4_K_M, server clock, 4 interleaved
rounds: default 41.3 t/s, top_k 1 41.4, top_k alone with k = 1 41.5) nor thread polling (SmolLM2 Q2_K,
6 rounds: --poll 50 84.6, --poll 0 83.9 t/s) moves it. What fits is per-token work over the whole
vocabulary in llama-server (it samples from every token's logits; llama-bench never samples), which
a user pays too; that is a reading, not a measurement inside llama.cpp.
Which part of the gap is the tool's: each round also sends the profile's own requests (same prompts,
system prompt, sampling and streaming, after a warm-up) with curl to the same server, before the
profile in half the rounds and after it in the others, and reads the server's decode clock. Measured
on the quiet machine (2026-12-05, 4 rounds, paired at depth, the tool against curl): gemma Q4_K_M
95.2 % against 95.3 %, SmolLM2 Q2_K 95.2 against 95.5, Q4_1 93.8 against 94.3, Q8_0 95.5 against
96.5, gemma Q8_0 94.5 against 94.3. The tool reads what a C client reads within a point; the rest is
llama-server's own work beyond llama-bench's. An
earlier run that always sent curl second put the tool up to 2.6 points behind: that was the order.
The ratio itself moves 3-7 points from one run of this benchmark to the next (SmolLM2 Q4_1: 95.4 %,
88.3 %, 93.8 %), more than one run's interval says. Server settings tried on gemma Q4_K_M, interleaved
over 4-5 rounds each, all within the noise of the default: flash attention on, --swa-full,
--ctx-size 512, --ctx-checkpoints 0, greedy sampling, and backend sampling (-bs, 2-4 % slower).
`--rounds N` (default 3), `--only MODEL@QUANT` (repeatable) and `--smoke` (1 round of the first
configuration) make a short run. Run it after `make demo` (derived quants are made here if missing,
as `doit model` would).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import REPO, ForeignCpu, figure, machine_note, say

from llmspec.engines import argv
from llmspec.engines.base import ServerArgs, parse_sse
from llmspec.models.binaries import find_server, find_tool
from llmspec.models.files import make, metadata
from llmspec.plan.cells import Cell, ordered_pairs
from llmspec.plan.planner import Plan
from llmspec.profiles import ProfileContext, interactive
from llmspec.profiles.base import prompt_files
from llmspec.run.client import ChatClient
from llmspec.run.server import Server
from llmspec.spec import load_spec
from llmspec.stats import t_quantile

ROUNDS = 3
N_GEN = 128
CLEAN = 0.10  # a step during which other processes used more than this share of the CPU is redone
TRIES = 3


def bench_tg(bench: Path, model: Path, threads: int, depth: int = 0) -> float:
    """llama-bench's generation speed (tokens/s) for N_GEN tokens after `depth` tokens of context."""
    cmd = [str(bench), "-m", str(model), "-p", "0", "-n", str(N_GEN), "-d", str(depth), "-t", str(threads),
           "-r", "1", "-o", "json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        sys.exit(f"fidelity: llama-bench failed on {model.name}: {out.stderr.strip()[-500:]}")
    return float(json.loads(out.stdout)[0]["avg_ts"])


def tool_tps(plan: Plan, model: Path, args: ServerArgs, folder: Path, curl_first: bool) -> tuple[
        float, float, int, float]:
    """(client tokens_per_s, server_tokens_per_s, median prompt tokens, curl_tps) of one interactive
    profile run, as the runner runs it, and the same requests by curl on the same server, before or
    after it (alternated by the caller, so neither side always gets the server second). The prompt
    tokens are the context the decode ran at."""
    settings = plan.spec.profiles.interactive.model_copy(update={"max_tokens": N_GEN})
    server = Server(find_server(plan.spec.server.binary), model, args, folder / "server.log", folder / "server.pid",
                    plan.spec.server.load_timeout_s)
    with server:
        client = ChatClient(server.url, timeout_s=plan.spec.server.request_timeout_s)
        bare = curl_tps(server.url, settings, plan.spec.root, settings.requests) if curl_first else None
        try:
            outcome = interactive.run(ProfileContext(client, settings, plan.spec.root, lambda _: None, server,
                                                     metadata(model)))
        finally:
            client.close()
        if bare is None:
            bare = curl_tps(server.url, settings, plan.spec.root, len(outcome.samples))
    depth = statistics.median(s["timings"]["prompt_n"] for s in outcome.samples)
    return outcome.metrics["tokens_per_s"], outcome.metrics["server_tokens_per_s"], int(depth), bare


def curl_tps(url: str, settings, root: Path, requests: int) -> float:
    """The same server decoding the profile's own requests sent by curl instead of the tool: the
    median of llama-server's own decode speed (its `timings`) over `requests` streamed requests,
    the profile's prompts in its order, system prompt and sampling parameters. What the server
    does without the tool's client on the same cores: the tool's share of the gap is the rest."""
    prompts = prompt_files(root, settings.prompts)
    speeds = []
    for i in range(-1, requests):  # -1: a warm-up, as the profile has its own
        body = {"messages": [{"role": "system", "content": interactive.SYSTEM},
                             {"role": "user", "content": prompts[i % len(prompts)].read_text()}],
                "max_tokens": N_GEN if i >= 0 else 16, "stream": True, "stream_options": {"include_usage": True},
                "cache_prompt": False, "temperature": settings.temperature, "seed": settings.seed,
                "ignore_eos": settings.ignore_eos}
        out = subprocess.run(["curl", "-sN", f"{url}/v1/chat/completions", "-H", "Content-Type: application/json",
                              "-d", json.dumps(body)], capture_output=True, check=True).stdout
        events = [e for line in out.splitlines() if (e := parse_sse(line)) is not None]
        if i >= 0:
            speeds.append(next(e["timings"] for e in reversed(events) if "timings" in e)["predicted_per_second"])
    return statistics.median(speeds)


def pct(part: float, whole: float) -> float:
    return 100 * part / whole


def quietly(measure):
    """`measure()` redone (up to TRIES times) while other processes took over CLEAN of the CPU;
    returns (its result, the foreign share of the attempt kept)."""
    for attempt in range(TRIES):
        with ForeignCpu() as foreign:
            result = measure()
        if foreign.share <= CLEAN:
            break
        say(f"    other processes used {foreign.share:.0%} of the CPU meanwhile; "
            f"{'measuring again' if attempt < TRIES - 1 else 'keeping it, marked contended'}")
    return result, foreign.share


def one_round(bench: Path, plan: Plan, config: tuple, threads: int, folder: Path, tool_first: bool,
              depth: int | None, curl_first: bool) -> dict:
    """llama-bench at depth 0 and at the profile's prompt depth, and the profile, in the given order."""
    name, path, args = config
    out: dict = {"foreign": 0.0}
    for step in ("tool", "bench") if tool_first else ("bench", "tool"):
        if step == "tool":
            (out["client"], out["server"], out["depth"], out["curl"]), share = quietly(
                lambda: tool_tps(plan, path, args, folder, curl_first))
        else:
            at = depth if depth is not None else out["depth"]
            (out["bench"], out["bench_depth"]), share = quietly(
                lambda at=at: (bench_tg(bench, path, threads), bench_tg(bench, path, threads, at)))
        out["foreign"] = max(out["foreign"], share)
    return out


def paired_ratio(runs: list[dict], measured=lambda r: min(r["client"], r["server"])) -> tuple[
        float, float | None, float | None]:
    """The tool's speed at the same depth as a percent of llama-bench's, from each round's own pair
    (the slower clock over llama-bench measured beside it): the geometric mean of the rounds'
    ratios and its 95 % interval (Student's t on the log ratios, df = rounds - 1). A single run of
    either side varies by a few percent, so a point figure a point below 95 % says little alone."""
    logs = [math.log(measured(r) / r["bench_depth"]) for r in runs]
    mean = statistics.fmean(logs)
    if len(logs) < 2:
        return 100 * math.exp(mean), None, None
    half = t_quantile(len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    return 100 * math.exp(mean), 100 * math.exp(mean - half), 100 * math.exp(mean + half)


def verdict(low: float | None, high: float | None) -> str:
    """Against the 95 % goal, with the ratio's own interval: met, missed, or not decided by this run."""
    if low is None or high is None:
        return "one round: no interval"
    return "meets 95 %" if low >= 95 else "below 95 %" if high < 95 else "95 % inside its interval"


def summarize(name: str, runs: list[dict]) -> dict:
    med = {key: statistics.median(r[key] for r in runs) for key in ("bench", "bench_depth", "client", "server", "curl")}
    low = min(med["client"], med["server"])
    paired, paired_low, paired_high = paired_ratio(runs)
    bare = paired_ratio(runs, lambda r: r["curl"])
    row = {"config": name, **med, "depth": runs[-1]["depth"], "contended": sum(r["foreign"] > CLEAN for r in runs),
           "paired_pct": paired, "paired_low": paired_low, "paired_high": paired_high,
           "verdict": verdict(paired_low, paired_high), "curl_paired": bare,
           "client_pct": pct(med["client"], med["bench"]),
           "server_pct": pct(med["server"], med["bench"]), "depth_pct": pct(low, med["bench_depth"]),
           "clocks_pct": abs(med["client"] - med["server"]) / med["server"] * 100,
           "overhead_ms": (1 / low - 1 / med["bench_depth"]) * 1000}
    say(f"  {name}: " + "; ".join(f"{key} " + ", ".join(f"{r[key]:.1f}" for r in runs)
                                  for key in ("bench", "bench_depth", "client", "server", "curl")))
    return row


def table(rows: list[dict]) -> str:
    lines = [f"{'configuration':<28} {'bench d=0':>9} {'bench d=N':>11} {'client':>7} {'server':>7} "
             f"{'client %':>8} {'server %':>8} {'at depth %':>10} {'ms/token':>8} {'clocks %':>8} {'contended':>9}"]
    lines += [f"{r['config']:<28} {r['bench']:>9.1f} {r['bench_depth']:>7.1f} d={r['depth']:<3} {r['client']:>5.1f} "
              f"{r['server']:>7.1f} {r['client_pct']:>7.1f}% {r['server_pct']:>7.1f}% {r['depth_pct']:>9.1f}% "
              f"{r['overhead_ms']:>+8.2f} "
              f"{r['clocks_pct']:>7.1f}% {r['contended']:>9}" for r in rows]
    return "\n".join(lines)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="alternated rounds per configuration")
    parser.add_argument("--only", action="append", metavar="MODEL@QUANT", help="measure only this configuration")
    parser.add_argument("--smoke", action="store_true", help="one round of the first configuration")
    return parser.parse_args()


def main() -> None:
    options = arguments()
    rounds = 1 if options.smoke else options.rounds
    plan = Plan(load_spec(REPO / "specs" / "demo.toml"))
    threads = plan.threads()
    bench = find_tool("llama-bench", find_server(plan.spec.server.binary))
    configs = []
    pairs = [(m, q) for m, q in ordered_pairs(plan.spec) if not options.only or f"{m}@{q}" in options.only]
    if not pairs:
        sys.exit(f"fidelity: no demo configuration is named {', '.join(options.only or [])}")
    for model, quant in pairs[:1] if options.smoke else pairs:
        path = make(plan.spec, model, quant, threads)
        job = plan.job(Cell(plan.spec.name, model, quant, "interactive"))
        args = job.server_args((metadata(path) or {}).get("context_length"))
        configs.append((f"{model}@{quant}", path, args))
    say(f"fidelity: {len(configs)} configurations, {rounds} rounds, llama-bench -p 0 -n {N_GEN} -t {threads} "
        f"at depth 0 and at the profile's prompt length; server args {' '.join(argv(configs[0][2]))}")
    machine_note()
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in configs}
    with tempfile.TemporaryDirectory(prefix="llmspec-fidelity-") as tmp:
        for round_ in range(rounds):
            for config in configs:
                name = config[0]
                depth = runs[name][-1]["depth"] if runs[name] else None
                runs[name].append(one_round(bench, plan, config, threads, Path(tmp), round_ % 2 == 0, depth,
                                                curl_first=round_ % 4 in (1, 2)))
                r = runs[name][-1]
                say(f"  round {round_ + 1}/{rounds} {name}: llama-bench {r['bench']:.1f} (at depth {r['depth']}: "
                    f"{r['bench_depth']:.1f}), client {r['client']:.1f}, server {r['server']:.1f} t/s, "
                    f"the same requests by curl {r['curl']:.1f} t/s "
                    f"(others used {r['foreign']:.0%} of the CPU)")
    rows = [summarize(name, runs[name]) for name, _, _ in configs]
    say(table(rows))
    say("  at the same depth (target >= 95 %): " + ", ".join(
        f"{r['config']} {r['depth_pct']:.0f} %{'' if r['depth_pct'] >= 95 else ' (below)'}" for r in rows))
    say("  paired per round (the tool over llama-bench beside it, geometric mean, 95 % interval): " + "; ".join(
        f"{r['config']} {r['paired_pct']:.1f} %"
        + (f" ({r['paired_low']:.1f}-{r['paired_high']:.1f})" if r["paired_low"] is not None else "")
        + f", {r['verdict']}" for r in rows))
    say("  llama-server alone, the same requests sent by curl on the same server (server clock, paired, 95 % "
        "interval): " + "; ".join(
            f"{r['config']} {r['curl_paired'][0]:.1f} %"
            + (f" ({r['curl_paired'][1]:.1f}-{r['curl_paired'][2]:.1f})" if r["curl_paired"][1] is not None else "")
            for r in rows))
    say("  time per token beyond llama-bench's at that depth: " + ", ".join(
        f"{r['config']} {r['overhead_ms']:+.2f} ms" for r in rows))
    worst = min(rows, key=lambda r: min(r["client_pct"], r["server_pct"]))
    worst_depth = min(rows, key=lambda r: r["depth_pct"])
    clocks = max(r["clocks_pct"] for r in rows)
    figure("fidelity", f"worst {min(worst['client_pct'], worst['server_pct']):.0f} % of llama-bench "
                       f"({worst['config']}), "
                       f"worst {worst_depth['depth_pct']:.0f} % at the same context depth ({worst_depth['config']}), "
                       f"clocks within {clocks:.1f} %; paired at depth: "
                       + ", ".join(f"{sum(r['verdict'] == v for r in rows)} {v}" for v in
                                   dict.fromkeys(r["verdict"] for r in rows)), "within 5 %")


if __name__ == "__main__":
    main()
