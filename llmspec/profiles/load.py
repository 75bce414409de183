"""Load (the stress-test plan): how a server holds up with several questions in flight at once.

`questions` questions, picked in order from `questions_file` (cycling), are sent by `concurrent`
workers, each with its own streaming connection; llmspec.loadtest is the engine. A managed
llama-server gets one slot per concurrent request with the usual context per slot (see
`server_overrides`), so requests run side by side rather than queueing. Latency and TTFT are
what a user waits, queueing included. A failed or timed-out request is counted in `error_pct`
and the run goes on; every request that succeeded must be a prompt-cache miss.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from llmspec.errors import CellError
from llmspec.profiles.base import (
    Case,
    Figure,
    Outcome,
    ProfileContext,
    ProfileKind,
    Rule,
    clock_check,
    median,
    project_path,
    require_cache_miss,
)
from llmspec.stats import median_interval, percentile, percentile_interval
from llmspec.strict import Strict

if TYPE_CHECKING:
    from llmspec.run.load import Answer

PERCENTILES = (50, 90, 99)


class LoadProfile(Strict):
    """The stress-test plan: concurrent questions, latency percentiles and throughput."""

    questions_file: str = Field("prompts/questions.json", description="JSON list of questions")
    concurrent: int = Field(4, ge=1, description="requests in flight at once")
    questions: int = Field(20, ge=1, description="how many questions to send in all")
    timeout_s: float = Field(120.0, gt=0, description="seconds one request may take in all")
    max_tokens: int = Field(128, ge=1)


class LoadThresholds(Strict):
    max_p90_latency_s: float = Field(60.0, gt=0)
    max_error_pct: float = Field(1.0, ge=0)
    min_output_tokens_per_s: float = Field(2.0, gt=0, description="output tokens per second, all requests together")


def server_overrides(settings, base_ctx_size: int) -> tuple[int, int]:
    """One slot per concurrent request, each with the context a single-slot server would have."""
    return base_ctx_size * settings.concurrent, settings.concurrent


def run(ctx: ProfileContext) -> Outcome:
    # The load engine (and requests) is imported when a load cell runs; planning, which imports
    # every profile module on each `doit`, needs only VERSION, inputs and server_overrides.
    from llmspec.run.load import load_questions, pick_questions, run_load

    s = ctx.settings
    questions = pick_questions(load_questions(project_path(ctx.root, s.questions_file)), s.questions)
    ctx.warm_up(questions[0], 8)
    total = len(questions)
    result = run_load(lambda stop: ctx.new_client(s.timeout_s, stop), questions, s.concurrent, s.max_tokens,
                      on_done=lambda a, n: ctx.progress(f"request {n}/{total} {'done' if a.ok else 'failed'}"))
    if result.interrupted:
        raise KeyboardInterrupt  # the runner's Ctrl+C handling: nothing half-measured is recorded
    ok = [a for a in result.answers if a.ok]
    if not ok:
        raise CellError(f"all {total} requests failed (first: {result.answers[0].record.error})")
    for answer in ok:
        require_cache_miss(answer.record)
    return _outcome(ctx, result.answers, result.wall_s)


def _outcome(ctx: ProfileContext, answers: list[Answer], wall_s: float) -> Outcome:
    ok = [a for a in answers if a.ok]
    failed = len(answers) - len(ok)
    latencies, ttfts = [a.latency_s for a in ok], [a.record.ttft_s for a in ok if a.record.ttft_s is not None]
    client_tps = median([a.record.decode_tokens_per_s() for a in ok])
    server_tps = median([(a.record.timings or {}).get("predicted_per_second") for a in ok])
    disagreement, flags = clock_check(client_tps, server_tps, "per-request decode speed")
    metrics: dict[str, float | None] = {
        **{f"p{p}_latency_s": percentile(latencies, p) for p in PERCENTILES},
        **{f"p{p}_ttft_s": percentile(ttfts, p) for p in PERCENTILES},
        "error_pct": 100 * failed / len(answers),
        "requests_ok": len(ok),
        "requests_failed": failed,
        "concurrent": ctx.settings.concurrent,
        "requests_per_s": len(ok) / wall_s,
        "output_tokens_per_s": sum(a.tokens for a in ok) / wall_s,
        "tokens_per_s": client_tps,
        "server_tokens_per_s": server_tps,
        "clock_disagreement_pct": disagreement,
        "wall_s": wall_s,
        "peak_rss_gb": ctx.server.peak_rss_bytes() / 2**30 if ctx.server is not None else None,
    }
    return Outcome(metrics, [_sample(a) for a in answers], flags + _flags(ctx, answers, failed),
                   _intervals(latencies, ttfts, ok))


def _intervals(latencies: list[float], ttfts: list[float], ok: list[Answer]) -> dict:
    """95 % intervals of the percentiles (see llmspec.stats) and of the per-request decode speeds."""
    found = {
        **{f"p{p}_latency_s": percentile_interval(latencies, p) for p in PERCENTILES},
        **{f"p{p}_ttft_s": percentile_interval(ttfts, p) for p in PERCENTILES},
        "tokens_per_s": median_interval([a.record.decode_tokens_per_s() for a in ok]),
        "server_tokens_per_s": median_interval([(a.record.timings or {}).get("predicted_per_second") for a in ok]),
    }
    return {name: interval for name, interval in found.items() if interval is not None}


def _sample(answer: Answer) -> dict:
    return {**answer.record.as_sample(), "index": answer.index, "question": answer.question,
            "start_s": answer.start_s, "end_s": answer.end_s, "latency_s": answer.latency_s, "tokens": answer.tokens}


def _flags(ctx: ProfileContext, answers: list[Answer], failed: int) -> list[str]:
    flags = []
    if failed:
        first = next(a.record.error for a in answers if not a.ok)
        flags.append(f"{failed} of {len(answers)} requests failed or timed out (first: {first})")
    slots = _server_slots(ctx)
    if slots is not None and slots < ctx.settings.concurrent:
        flags.append(f"the server has {slots} slots for {ctx.settings.concurrent} concurrent requests: "
                     "the rest queued, and their waiting is in the latencies")
    return flags


def _server_slots(ctx: ProfileContext) -> int | None:
    return ctx.server.args.parallel if ctx.server is not None else None


KIND = ProfileKind(
    name="load",
    summary="the stress-test plan: concurrent questions, latency percentiles, throughput and errors",
    version=1,
    settings=LoadProfile,
    thresholds=LoadThresholds,
    run=run,
    files=lambda s, root: ("question_files", [project_path(root, s.questions_file)]),
    metrics=("p50_latency_s", "p90_latency_s", "p99_latency_s", "p50_ttft_s", "p90_ttft_s", "p99_ttft_s", "error_pct",
             "requests_ok", "requests_failed", "concurrent", "requests_per_s", "output_tokens_per_s", "tokens_per_s",
             "server_tokens_per_s", "clock_disagreement_pct", "wall_s", "peak_rss_gb"),
    rules=(
        Rule("p90_latency_s", "max_p90_latency_s", "max", critical=True),
        Rule("error_pct", "max_error_pct", "max", critical=True),
        Rule("output_tokens_per_s", "min_output_tokens_per_s", "min", critical=False),
    ),
    headlines={"p90_latency_s": "p90_latency_s"},
    case=Case("Serving several users", "several users", ("p90_latency_s", "output_tokens_per_s"),
             (("p90_latency_s", False),)),
    figures={"p90_latency_s": Figure("{} s", "p90 latency", "p90 latency"),
             "error_pct": Figure("{}%", "error rate", "errors"),
             "output_tokens_per_s": Figure("{} t/s", "total output", "total")},
    server_overrides=server_overrides,
)
