"""Load (the stress-test plan): how a server holds up with several questions in flight at once.

`questions` questions, picked in order from `questions_file` (cycling), are sent by `concurrent`
workers, each with its own streaming connection; llmspec.loadtest is the engine. A managed
llama-server gets one slot per concurrent request with the usual context per slot (see
`server_overrides`), so requests run side by side rather than queueing. Latency and TTFT are
what a user waits, queueing included. A failed or timed-out request is counted in `error_pct`
and the run goes on; every request that succeeded must be a prompt-cache miss.
"""

from __future__ import annotations

from pathlib import Path

from typing import TYPE_CHECKING

from llmspec.errors import CellError
from llmspec.profiles import Outcome, ProfileContext, clock_check, files_digest, median, require_cache_miss

if TYPE_CHECKING:
    from llmspec.client import ChatClient
    from llmspec.loadtest import Answer

VERSION = 1
PERCENTILES = (50, 90, 99)


def questions_path(root: Path, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else root / path


def inputs(settings, root: Path) -> dict:
    return {**settings.model_dump(), "question_files": files_digest([questions_path(root, settings.questions_file)])}


def server_overrides(settings, base_ctx_size: int) -> tuple[int, int]:
    """One slot per concurrent request, each with the context a single-slot server would have."""
    return base_ctx_size * settings.concurrent, settings.concurrent


def run(ctx: ProfileContext) -> Outcome:
    # The load engine (and requests) is imported when a load cell runs; planning, which imports
    # every profile module on each `doit`, needs only VERSION, inputs and server_overrides.
    from llmspec.loadtest import load_questions, pick_questions, run_load

    s = ctx.settings
    questions = pick_questions(load_questions(questions_path(ctx.root, s.questions_file)), s.questions)
    ctx.progress("warm-up request")
    warm = ctx.client.chat(questions[0], prompt_name="warm-up", max_tokens=8)
    if warm.error:
        raise CellError(f"warm-up request failed: {warm.error}")
    total = len(questions)
    result = run_load(_client_factory(ctx.client, s.timeout_s), questions, s.concurrent, s.max_tokens,
                      on_done=lambda a, n: ctx.progress(f"request {n}/{total} {'done' if a.ok else 'failed'}"))
    if result.interrupted:
        raise KeyboardInterrupt  # the runner's Ctrl+C handling: nothing half-measured is recorded
    ok = [a for a in result.answers if a.ok]
    if not ok:
        raise CellError(f"all {total} requests failed (first: {result.answers[0].record.error})")
    for answer in ok:
        require_cache_miss(answer.record)
    return _outcome(ctx, result.answers, result.wall_s)


def _client_factory(base: ChatClient, timeout_s: float):
    """Clients like the runner's (same URL, model, key) but one per worker and with the plan's timeout."""
    from llmspec.client import ChatClient

    key = base.session.headers.get("Authorization", "").removeprefix("Bearer ") or None
    return lambda stop: ChatClient(base.base_url, base.model, key, timeout_s, deadline_s=timeout_s, stop=stop)


def _outcome(ctx: ProfileContext, answers: list[Answer], wall_s: float) -> Outcome:
    from llmspec.loadtest import percentile

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
    return Outcome(metrics, [_sample(a) for a in answers], flags + _flags(ctx, answers, failed))


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
    if ctx.server is None:
        return None
    args = dict(zip(ctx.server.args, ctx.server.args[1:]))
    return int(args.get("--parallel", 1))
