"""Load (the stress-test plan) and capacity: how many people this server serves at the service level.

At each level, `questions` questions, picked in order from `questions_file` (cycling), are sent
by that many users (workers, each with its own streaming connection; llmspec.run.load is the
engine), or, with `arrival = "constant" | "poisson"`, at `rate_per_s` whatever the server does.
`concurrent` is one level, a list of levels, or "sweep": 1, 2, 4, ... until the service level
(`[thresholds.load]`, llmspec.capacity) breaks, a request fails, or `max_concurrent`. A managed
llama-server gets as many slots as the most users measured, each with ctx_size / slots tokens,
checked against the longest question first. Latency and TTFT are what a user waits, queueing
included. A failed or timed-out request is counted in `error_pct` and the run goes on; every
request that succeeded must be a prompt-cache miss. The answer is `max_users_at_slo`: the most
users at which that level and every smaller one kept the service level; the report re-judges it
from the stored levels whenever the thresholds change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from llmspec.arrivals import Arrival
from llmspec.capacity import ServiceLevel, flat, level_figures, levels_of, max_users, sentence
from llmspec.errors import CellError
from llmspec.profiles.base import (
    REASONING_METRICS,
    Case,
    Figure,
    Outcome,
    ProfileContext,
    ProfileKind,
    Rule,
    clock_check,
    median,
    project_path,
    reasoning_figures,
    require_cache_miss,
)
from llmspec.stats import bootstrap_interval, doubling, median_interval, percentile_interval
from llmspec.strict import Strict

if TYPE_CHECKING:
    from llmspec.run.load import Answer, LoadRun

PERCENTILES = (50, 90, 99)
TEMPLATE_TOKENS = 32  # what a chat template adds around a question (SmolLM2's: 19 with its system line)


class LoadProfile(Strict):
    """The stress-test plan, and capacity: latency percentiles and throughput at one or more levels
    of users in flight, or at a fixed arrival rate."""

    questions_file: str = Field("prompts/questions.json", description="JSON list of questions")
    concurrent: int | list[int] | Literal["sweep"] = Field(
        4, description='users in flight at once; a list measures each level; "sweep" doubles from 1 until the '
                       "service level ([thresholds.load]) breaks, a request fails or max_concurrent is reached")
    max_concurrent: int = Field(8, ge=1, description='the most users "sweep" tries')
    questions: int = Field(20, ge=1, description="how many questions to send at each level")
    arrival: Arrival = Field("closed", description='"closed": each user asks again when answered; "constant" or '
                                                   '"poisson": requests arrive at rate_per_s whatever the server does')
    rate_per_s: float | None = Field(None, gt=0, description="requests per second for constant or poisson arrivals")
    duration_s: float | None = Field(None, gt=0, description="open arrivals: send nothing after this many seconds")
    seed: int = Field(42, description="the Poisson arrivals' random seed (the same run can be repeated)")
    timeout_s: float = Field(120.0, gt=0, description="seconds one request may take in all")
    max_tokens: int = Field(128, ge=1)

    @field_validator("concurrent")
    @classmethod
    def _levels(cls, value):
        if isinstance(value, list) and (not value or any(v < 1 for v in value) or len(set(value)) != len(value)):
            raise PydanticCustomError("levels", "concurrent lists distinct user counts of 1 or more")
        if isinstance(value, int) and value < 1:
            raise PydanticCustomError("levels", "concurrent must be 1 or more")
        return value

    @model_validator(mode="after")
    def _arrival(self) -> LoadProfile:
        if self.arrival != "closed" and self.rate_per_s is None:
            raise PydanticCustomError("rate", 'arrival = "{a}" needs rate_per_s (requests per second)',
                                      {"a": self.arrival})
        if self.arrival != "closed" and not isinstance(self.concurrent, int):
            raise PydanticCustomError("rate", 'arrival = "{a}" runs one level at rate_per_s: concurrent must be one '
                                              "number, the server's slots", {"a": self.arrival})
        return self

    def levels(self) -> list[int]:
        """The user counts that may be measured, fewest first ("sweep" stops early when told to)."""
        if self.concurrent == "sweep":
            return doubling(self.max_concurrent)
        return sorted(self.concurrent) if isinstance(self.concurrent, list) else [self.concurrent]

    @property
    def slots(self) -> int:
        return max(self.levels())


class LoadThresholds(Strict):
    """Read as the service level each user is promised (llmspec.capacity)."""

    max_p90_ttft_s: float | None = Field(2.0, gt=0, description="service level: p90 time to the first token")
    max_p90_latency_s: float = Field(60.0, gt=0, description="service level: p90 time to the whole answer")
    min_tokens_per_s_per_user: float | None = Field(
        5.0, gt=0, description="service level: each user's own generation speed (median)")
    max_error_pct: float = Field(1.0, ge=0, description="service level: failed or timed-out requests")
    min_output_tokens_per_s: float = Field(2.0, gt=0, description="output tokens per second, all requests together")
    min_users_at_slo: int = Field(1, ge=0, description="users served at the service level for a pass")


def server_overrides(settings, base_ctx_size: int) -> tuple[int, int]:
    """As many slots as the most users measured; llama-server splits --ctx-size among them, so each
    slot has ctx_size / slots tokens (checked against the questions before any is sent)."""
    return base_ctx_size, settings.slots


def uses_thresholds(settings) -> bool:
    """A "sweep" stops where the service level breaks: those thresholds shape the measurement."""
    return settings.concurrent == "sweep"


def run(ctx: ProfileContext) -> Outcome:
    # The load engine (and requests) is imported when a load cell runs; planning, which imports
    # every profile module on each `doit`, needs only VERSION, inputs and server_overrides.
    from llmspec.run.load import load_questions, pick_questions

    s = ctx.settings
    questions = pick_questions(load_questions(project_path(ctx.root, s.questions_file)), s.questions)
    slots = _check_fit(ctx, questions)
    ctx.warm_up(questions[0], 8)
    slo = ServiceLevel.of(ctx.thresholds) if ctx.thresholds is not None else ServiceLevel()
    levels: dict[int, tuple[dict, LoadRun]] = {}
    for users in s.levels():
        run_ = _level(ctx, questions, users)
        levels[users] = (level_figures(run_.answers, run_.wall_s, slo), run_)
        figures = levels[users][0]
        ctx.progress(f"{users} user{'s' if users > 1 else ''}: p90 TTFT {_s(figures['p90_ttft_s'])}, "
                     f"{_n(figures['tokens_per_s_per_user'])} t/s each, {_n(figures['requests_per_s'])} requests/s, "
                     f"{figures['error_pct'] or 0:.0f}% errors")
        if s.concurrent == "sweep" and (slo.misses(figures) or figures["error_pct"]):
            break  # broken here: more users would only break it further
    answers = [a for _, r in levels.values() for a in r.answers]
    if not any(a.ok for a in answers):
        raise CellError(f"all {len(answers)} requests failed (first: {answers[0].record.error})")
    for answer in answers:
        if answer.ok:
            require_cache_miss(answer.record)
    return _outcome(ctx, levels, slo, slots)


def _level(ctx: ProfileContext, questions: list[str], users: int) -> LoadRun:
    """One level: `users` in a closed loop, or the open arrivals (one level, the server's slots)."""
    from llmspec.arrivals import schedule
    from llmspec.run.load import run_load, run_open

    s, total = ctx.settings, len(questions)
    progress = lambda a, n: ctx.progress(f"{users} users: request {n}/{total} {'done' if a.ok else 'failed'}")  # noqa: E731
    client = lambda stop: ctx.new_client(s.timeout_s, stop)  # noqa: E731
    if s.arrival == "closed":
        result = run_load(client, questions, users, s.max_tokens, on_done=progress)
    else:
        times = schedule(s.arrival, s.rate_per_s, total, s.seed, s.duration_s)
        result = run_open(client, questions[:len(times)], times, s.max_tokens, on_done=progress)
    if result.interrupted:
        raise KeyboardInterrupt  # the runner's Ctrl+C handling: nothing half-measured is recorded
    return result


def _check_fit(ctx: ProfileContext, questions: list[str]) -> int | None:
    """Every question and its answer must fit one slot's context: llama-server would otherwise
    cut the prompt or stop the answer short, and the figures would be of another request."""
    if ctx.server is None:
        return None
    args = ctx.server.args
    longest = max(set(questions), key=len)
    needed = len(ctx.client.tokenize(longest)) + TEMPLATE_TOKENS + ctx.settings.max_tokens
    if needed > args.ctx_per_slot:
        raise CellError(f"a question needs about {needed} tokens ({TEMPLATE_TOKENS} of chat template and "
                        f"max_tokens {ctx.settings.max_tokens} included), more than the {args.ctx_per_slot} tokens "
                        f"of each of the {args.parallel} slots ([server] ctx_size {args.ctx_size} / "
                        f"{args.parallel}); raise ctx_size or measure fewer users")
    return args.parallel


def _outcome(ctx: ProfileContext, levels: dict[int, tuple[dict, LoadRun]], slo: ServiceLevel,
             slots: int | None) -> Outcome:
    """The figures of the level that answers the capacity question (the most users that kept the
    service level, else the fewest measured) under the familiar names, every level flat beside
    them (`p90_ttft_s_at_4`), and `max_users_at_slo`."""
    figures = {users: f for users, (f, _) in levels.items()}
    capacity = max_users(figures, slo)
    shown = capacity if capacity in levels else min(levels)
    figures_shown, run_ = levels[shown]
    answers, wall_s = run_.answers, run_.wall_s
    ok = [a for a in answers if a.ok]
    failed = len(answers) - len(ok)
    client_tps = median([a.record.decode_tokens_per_s() for a in ok])
    server_tps = median([(a.record.timings or {}).get("predicted_per_second") for a in ok])
    disagreement, flags = clock_check(client_tps, server_tps, "per-request decode speed")
    metrics: dict[str, float | None] = {
        **figures_shown,
        "requests_ok": len(ok),
        "requests_failed": failed,
        "concurrent": shown,
        "tokens_per_s": client_tps,
        "server_tokens_per_s": server_tps,
        "clock_disagreement_pct": disagreement,
        "wall_s": wall_s,
        "peak_rss_gb": ctx.server.peak_rss_bytes() / 2**30 if ctx.server is not None else None,
        "max_users_at_slo": capacity,
        "levels_measured": len(levels),
        "slots": slots,
        "ctx_per_slot": ctx.server.args.ctx_per_slot if ctx.server is not None else None,
        **{k: v for users, f in figures.items() for k, v in flat(users, f).items()},
        **_arrival_figures(ctx, answers),
    }
    samples = [{**_sample(a), "users": users} for users, (_, r) in levels.items() for a in r.answers]
    flags += _flags(ctx, answers, failed) + [f"capacity: {sentence(capacity, slo, figures)}"]
    closed = ctx.settings.arrival == "closed"
    intervals = _intervals([a.latency_s for a in ok], [a.record.ttft_s for a in ok if a.record.ttft_s is not None], ok)
    intervals |= throughput_intervals(ok, figures_shown, closed)
    for users, (level_figs, level_run) in levels.items():  # every level's percentiles and throughput with theirs
        done = [a for a in level_run.answers if a.ok]
        found = _intervals([a.latency_s for a in done], [a.record.ttft_s for a in done if a.record.ttft_s is not None],
                           done) | throughput_intervals(done, level_figs, closed)
        intervals |= {f"{name}_at_{users}": i for name, i in found.items()
                      if name.startswith("p") or name in THROUGHPUT}
    thinking, reasoned = reasoning_figures([a.record for a in ok], intervals, ttft="p50/p90/p99_ttft_s")
    metrics.update(thinking)
    return Outcome(metrics, samples, flags + reasoned, intervals)


def _arrival_figures(ctx: ProfileContext, answers: list[Answer]) -> dict[str, float]:
    """Open arrivals: the rate the requests really went out at, from their send times."""
    if ctx.settings.arrival == "closed" or len(answers) < 2:
        return {}
    from llmspec.arrivals import gaps

    between = gaps([a.start_s for a in answers])
    mean = sum(between) / len(between)
    return {"mean_interarrival_s": mean, "arrival_rate_per_s": 1 / mean if mean > 0 else None}


def _s(value: float | None) -> str:
    return f"{value:.2f} s" if value is not None else "-"


def _n(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "-"


def _intervals(latencies: list[float], ttfts: list[float], ok: list[Answer]) -> dict:
    """95 % intervals of the percentiles (see llmspec.stats) and of the per-request decode speeds."""
    found = {
        **{f"p{p}_latency_s": percentile_interval(latencies, p) for p in PERCENTILES},
        **{f"p{p}_ttft_s": percentile_interval(ttfts, p) for p in PERCENTILES},
        "tokens_per_s": median_interval([a.record.decode_tokens_per_s() for a in ok]),
        "server_tokens_per_s": median_interval([(a.record.timings or {}).get("predicted_per_second") for a in ok]),
    }
    return {name: interval for name, interval in found.items() if interval is not None}


THROUGHPUT = ("requests_per_s", "output_tokens_per_s")


def throughput_intervals(ok: list[Answer], figures: dict, closed: bool) -> dict:
    """95 % intervals of a level's whole-run throughput: a bootstrap over its requests (fixed seed)
    carried through Little's law.

    The figures are counts over the level's wall time, one number per run, so nothing inside the
    run repeats them. But in a closed loop every user asks again as soon as answered, so the wall
    time is the users' summed latencies over the users, and the throughput moves inversely with
    the mean latency (output tokens/s also with the mean answer length). Resampling the requests
    (latency and tokens together) and scaling the measured figure by mean latency / resampled mean
    latency (and resampled / measured mean tokens) gives how far another draw of such requests
    would move it. Open arrivals (constant, poisson) set the throughput by their schedule, not by
    the server's latency, so the latency says nothing of it there: no interval.
    """
    if not closed or len(ok) < 3:
        return {}
    pairs = [(a.latency_s, a.tokens) for a in ok]
    lat, tok = sum(p[0] for p in pairs) / len(pairs), sum(p[1] for p in pairs) / len(pairs)
    if lat <= 0:
        return {}

    def scaled(figure: float | None, with_tokens: bool):
        if figure is None or (with_tokens and tok <= 0):
            return None
        def statistic(draw: list[tuple[float, int]]) -> float:
            ratio = lat / (sum(p[0] for p in draw) / len(draw))
            return figure * ratio * ((sum(p[1] for p in draw) / len(draw) / tok) if with_tokens else 1.0)
        return bootstrap_interval(pairs, statistic, f"{'output tokens' if with_tokens else 'requests'} per second "
                                                    "(requests resampled, scaled by Little's law)")

    found = {"requests_per_s": scaled(figures.get("requests_per_s"), False),
             "output_tokens_per_s": scaled(figures.get("output_tokens_per_s"), True)}
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
    if slots is not None and slots < ctx.settings.slots:
        flags.append(f"the server has {slots} slots for {ctx.settings.slots} concurrent requests: "
                     "the rest queued, and their waiting is in the latencies")
    return flags


def _server_slots(ctx: ProfileContext) -> int | None:
    return ctx.server.args.parallel if ctx.server is not None else None


def rederive(row: dict, thresholds) -> dict[str, float]:
    """`max_users_at_slo` again from the stored levels, against today's service level (the report)."""
    levels = levels_of(row)
    return {"max_users_at_slo": float(max_users(levels, ServiceLevel.of(thresholds)))} if levels else {}


KIND = ProfileKind(
    name="load",
    summary="capacity: users served at the service level, latency percentiles, throughput and errors per level",
    version=2,
    settings=LoadProfile,
    thresholds=LoadThresholds,
    run=run,
    files=lambda s, root: ("question_files", [project_path(root, s.questions_file)]),
    metrics=("max_users_at_slo", "p50_latency_s", "p90_latency_s", "p99_latency_s", "p50_ttft_s", "p90_ttft_s",
             "p99_ttft_s", "error_pct", "requests_ok", "requests_failed", "concurrent", "requests_per_s",
             "output_tokens_per_s", "tokens_per_s_per_user", "goodput_per_s", "tokens_per_s", "server_tokens_per_s",
             "clock_disagreement_pct", "wall_s", "peak_rss_gb", "levels_measured", "slots", "ctx_per_slot",
             "mean_interarrival_s", "arrival_rate_per_s", *REASONING_METRICS),  # the last only where the model reasons
    rules=(
        Rule("max_users_at_slo", "min_users_at_slo", "min", critical=True),
        Rule("p90_latency_s", "max_p90_latency_s", "max", critical=True),
        Rule("error_pct", "max_error_pct", "max", critical=True),
        Rule("output_tokens_per_s", "min_output_tokens_per_s", "min", critical=False),
    ),
    headlines={"max_users_at_slo": "max_users_at_slo", "p90_latency_s": "p90_latency_s", "p90_ttft_s": "p90_ttft_s",
               "tokens_per_s_per_user": "tokens_per_s_per_user"},
    case=Case("Serving several users", "several users", ("max_users_at_slo", "p90_ttft_s", "tokens_per_s_per_user"),
              (("max_users_at_slo", True), ("p90_latency_s", False))),
    figures={"max_users_at_slo": Figure("{}", "capacity", "users at the service level"),
             "p90_latency_s": Figure("{} s", "p90 latency", "p90 latency"),
             "p90_ttft_s": Figure("{} s", "p90 TTFT", "p90 TTFT"),
             "tokens_per_s_per_user": Figure("{} t/s", "speed per user", "each"),
             "error_pct": Figure("{}%", "error rate", "errors"),
             "output_tokens_per_s": Figure("{} t/s", "total output", "total")},
    server_overrides=server_overrides,
    engine_needs=frozenset({"tokenize"}),  # sizes the slots with the server's own /tokenize
    uses_thresholds=uses_thresholds,
    rederive=rederive,
    roles=frozenset({"endpoint_default", "user_levels"}),
    uses=("serving",),
    init_settings=("concurrent", "max_concurrent", "questions"),
    init_values={"concurrent": "sweep"},
)
