"""Interactive storytelling: how long until the story starts, and how fast and steady it streams.

One warm-up request per server start, then `requests` measured story continuations. Every
measured request must be a prompt-cache miss (cache_n == 0).

Server starts (issue #27): requests inside one llama-server start share that start's luck
(where the threads land, how the weights sit in memory), so a rerun's figure can fall outside
an interval drawn from them alone; measured on a quiet 2-core machine, five reruns of the demo
cell spread by 18 % while each printed about +-5 %. With `starts = N` the requests are spread
over N fresh starts of the same server (`ProfileContext.restart`), at least two per start so the
spread inside a start stays measurable apart from the spread between starts. Each start's figure
is the median of its requests and the headline is the mean of the start figures. Its interval is
the rerun interval over them (`llmspec.stats.rerun_interval`): where an independent rerun of the
cell, on fresh starts, lands 95 % of the time. A confidence interval of the mean would not do:
it covers the true mean 95 % of the time, but a rerun's mean, which carries its own error, only
about 91 % with 3 starts and 83 % with many. Repeat-to-precision then adds starts, not requests,
since only starts shrink it.
The default stays 1: each start costs a model load and a warm-up (seconds here, minutes for
large models), and a default above 1 would re-measure every stored result. At 1 the intervals
are over one start's requests and say so in their method ("one server start: a rerun may land
outside"); `llmspec compare` and the history section do not judge them ("not judged").
"""

from __future__ import annotations

import math
import statistics
from dataclasses import replace

from pydantic import Field, model_serializer, model_validator
from pydantic_core import PydanticCustomError

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
    prompt_files,
    reasoning_figures,
    require_cache_miss,
)
from llmspec.stats import CONFIDENCE, Interval, bounded, median_interval, rerun_interval
from llmspec.strict import Strict

# requests per server start at least: with one, the spread inside a start and between starts cannot be told apart
PER_START = 2
# what an interval over one start's requests says of itself: it is not where a rerun lands
ONE_START = "one server start: a rerun may land outside"
SYSTEM = "You are a novelist. Continue the story the user gives you, in the same voice."


class InteractiveProfile(Strict):
    """Interactive storytelling (docs/profiles.md): TTFT, streaming speed and its steadiness."""

    requests: int = Field(5, ge=3, description="measured requests after one warm-up, at least")
    max_requests: int = Field(12, ge=3, description="more requests, up to this many, until the precision target")
    target_precision_pct: float = Field(
        5.0, gt=0, description="repeat until the 95% interval of the median tokens/s is within this percent of it")
    max_tokens: int = Field(128, ge=8, description="tokens generated per request")
    prompts: str = Field("prompts/interactive", description="folder of .txt story openings")
    ignore_eos: bool = Field(True, description="generate exactly max_tokens so runs compare")
    temperature: float = Field(0.8, ge=0)
    seed: int = 42
    starts: int = Field(1, ge=1, le=50, description=(
        "fresh server starts the requests are spread over, at least 2 requests each; above 1 the intervals are "
        "where a rerun lands 95% of the time, from the per-start medians (managed servers only)"))

    @model_serializer(mode="wrap")
    def _fingerprinted(self, handler):
        """`starts` is left out at its default, so results measured before it existed stay current."""
        found = handler(self)
        if isinstance(found, dict) and found.get("starts") == 1:
            found.pop("starts")
        return found

    @model_validator(mode="after")
    def _enough(self) -> InteractiveProfile:
        if self.max_requests < self.requests:
            raise PydanticCustomError("requests", "max_requests ({m}) is below requests ({r}): raise max_requests",
                                      {"m": self.max_requests, "r": self.requests})
        if self.starts > 1 and self.starts * PER_START > self.max_requests:
            raise PydanticCustomError("starts", "starts ({s}) needs max_requests of {n} or more, {per} per server "
                                                "start (max_requests is {m}): raise max_requests or lower starts",
                                      {"s": self.starts, "n": self.starts * PER_START, "per": PER_START,
                                       "m": self.max_requests})
        return self


class InteractiveThresholds(Strict):
    min_tokens_per_s: float = Field(2.0, gt=0, description="streaming speed at least (client clock)")
    max_ttft_s: float = Field(30.0, gt=0, description="time to the first token at most")
    max_itl_cv_pct: float = Field(20.0, gt=0, description="variation of the gaps between tokens at most")


def run(ctx: ProfileContext) -> Outcome:
    s = ctx.settings
    if s.starts > 1 and ctx.restarter is not None:
        return _run_starts(ctx)
    records = []
    _warm_up(ctx)
    for i in range(s.max_requests):
        records.append(_request(ctx, i, f"{s.requests}{f'-{s.max_requests}' if s.max_requests > s.requests else ''}"))
        if len(records) >= s.requests and _precise(records, s.target_precision_pct):
            break
    outcome = _outcome(records, s.target_precision_pct)
    if s.starts > 1:
        outcome.flags.append(f"starts = {s.starts} needs llmspec's own server, which it can start again; this "
                             "server was measured on one start, so the intervals cover its requests only")
    return outcome


def _run_starts(ctx: ProfileContext) -> Outcome:
    """`starts` fresh server starts, `requests / starts` requests each (at least PER_START), then more
    starts while the rerun interval over the start medians is short of the precision target and the
    next start still fits in `max_requests`. Every start sends the same prompts in the same order
    (the folder's first ones): start medians then differ by the start's luck alone, not by which
    prompts it drew, so the spread between starts is the machine's, not the prompt mix's."""
    s = ctx.settings
    per_start = max(PER_START, math.ceil(s.requests / s.starts))
    records: list = []
    groups: list[list] = []
    while True:
        if groups:
            ctx.progress(f"server start {len(groups) + 1}")
            ctx.restart()
        _warm_up(ctx)
        group = [_request(ctx, len(records) + i, f"{len(records) + per_start} (start {len(groups) + 1})", i)
                 for i in range(per_start)]
        records += group
        groups.append(group)
        enough = len(groups) >= s.starts
        if enough and (len(records) + per_start > s.max_requests or _precise_starts(groups, s.target_precision_pct)):
            break
    return _outcome(records, s.target_precision_pct, groups)


def _warm_up(ctx: ProfileContext) -> None:
    s = ctx.settings
    prompt = prompt_files(ctx.root, s.prompts)[0]
    ctx.warm_up(prompt.read_text(), 16, system=SYSTEM, **_params(s))


def _params(s) -> dict:
    return {"temperature": s.temperature, "seed": s.seed, "ignore_eos": s.ignore_eos}


def _request(ctx: ProfileContext, i: int, of: str, prompt_index: int | None = None):
    """Request `i` of the cell; its prompt cycles through the folder by `prompt_index` (default `i`)."""
    s = ctx.settings
    prompts = prompt_files(ctx.root, s.prompts)
    prompt = prompts[(i if prompt_index is None else prompt_index) % len(prompts)]
    ctx.progress(f"request {i + 1}/{of} ({prompt.name})")
    record = ctx.client.chat(prompt.read_text(), prompt_name=prompt.name, max_tokens=s.max_tokens,
                             system=SYSTEM, **_params(s))
    if record.error:
        raise CellError(f"request {i + 1} failed: {record.error}")
    require_cache_miss(record)
    return record


def _precise(records, target_pct: float) -> bool:
    """Whether the median tokens/s is known to within `target_pct`: half its interval, and a real
    95 % one (fewer than 6 requests give only min-max, at 75-94 % coverage)."""
    speeds = [r.decode_tokens_per_s() for r in records]
    interval, center = median_interval(speeds), median(speeds)
    if interval is None or not center or interval.coverage < CONFIDENCE:
        return False
    return interval.half_width_pct(center) <= target_pct


def _precise_starts(groups: list[list], target_pct: float) -> bool:
    """Whether the mean of the start medians of tokens/s is known to within `target_pct`: half its rerun
    interval, the honest one (a rerun lands in it), not the narrower interval of the mean."""
    center, interval = start_figure([[r.decode_tokens_per_s() for r in g] for g in groups])
    return interval is not None and bool(center) and interval.half_width_pct(center) <= target_pct


def start_figure(groups: list[list[float | None]]) -> tuple[float | None, Interval | None]:
    """A figure measured over server starts: the mean of each start's median, and the 95 % rerun
    interval over those medians (where a rerun on as many fresh starts lands; Student's t, df =
    starts - 1). Starts without a value are left out."""
    medians = [m for m in (median(list(g)) for g in groups) if m is not None]
    if not medians:
        return None, None
    found = rerun_interval(medians, "server starts (each start's median)")
    return statistics.fmean(medians), (replace(found, starts=found.n) if found is not None else None)


def _bounded(found: tuple[float | None, Interval | None]) -> tuple[float | None, Interval | None]:
    """A speed or a time is never negative; a t-interval over few starts can reach below zero."""
    return found if found[0] is None else bounded(found[0], found[1], low=0.0)


def _outcome(records, target_pct: float, groups: list[list] | None = None) -> Outcome:
    """The figures; over several starts (`groups`), the speeds and TTFT are `start_figure`s."""
    timings = [r.timings or {} for r in records]
    per_request = {"tokens_per_s": lambda r: r.decode_tokens_per_s(),
                   "server_tokens_per_s": lambda r: (r.timings or {}).get("predicted_per_second"),
                   "ttft_s": lambda r: r.ttft_s}
    if groups and len(groups) > 1:
        by_start = {name: _bounded(start_figure([[get(r) for r in g] for g in groups]))
                    for name, get in per_request.items()}
        headline = {name: value for name, (value, _) in by_start.items()}
        intervals = {name: i for name, (_, i) in by_start.items() if i is not None}
    else:
        headline = {name: median([get(r) for r in records]) for name, get in per_request.items()}
        intervals = {name: replace(found, method=f"{found.method}; {ONE_START}") for name, get in per_request.items()
                     if (found := median_interval([get(r) for r in records])) is not None}
    client_tps, server_tps = headline["tokens_per_s"], headline["server_tokens_per_s"]
    disagreement, flags = clock_check(client_tps, server_tps, "decode speed")
    found = intervals.get("tokens_per_s")
    precision = found.half_width_pct(client_tps) if found else None
    if found is not None and found.coverage < CONFIDENCE:
        flags.append(f"tokens_per_s: {len(records)} requests give only a {found.coverage:.0%} interval of the median "
                     f"(6 give 95%): raise requests or max_requests")
    elif precision is None or precision > target_pct:
        what = f"a rerun over {len(groups)} server starts lands within" if groups and len(groups) > 1 else \
            f"the median of {len(records)} requests is known to"
        flags.append(f"tokens_per_s: {what} "
                     f"{'?' if precision is None else f'±{precision:.1f}%'}, short of the ±{target_pct:g}% target "
                     f"(raise max_requests, or measure on a quieter machine)")
    metrics = {
        "ttft_s": headline["ttft_s"],
        "first_event_s": median([r.first_event_s for r in records]),
        "tokens_per_s": client_tps,
        "server_tokens_per_s": server_tps,
        "itl_cv_pct": median([r.inter_token_cv_pct() for r in records]),
        "prompt_tokens_per_s": median([t.get("prompt_per_second") for t in timings]),
        "completion_tokens": median([r.completion_tokens for r in records]),
        "clock_disagreement_pct": disagreement,
        "requests": len(records),
        "precision_pct": precision,
        "server_starts": len(groups) if groups else 1,
    }
    thinking, reasoned = reasoning_figures(records, intervals)
    metrics.update(thinking)
    starts = {id(r): j + 1 for j, g in enumerate(groups or []) for r in g} if groups and len(groups) > 1 else {}
    samples = [{**r.as_sample(), **({"start": starts[id(r)]} if starts else {})} for r in records]
    return Outcome(metrics, samples, flags + reasoned, intervals)


KIND = ProfileKind(
    name="interactive",
    summary="story continuation: time to first token, streaming speed and its steadiness",
    version=1,
    settings=InteractiveProfile,
    thresholds=InteractiveThresholds,
    run=run,
    files=lambda s, root: ("prompt_files", prompt_files(root, s.prompts)),
    metrics=("ttft_s", "first_event_s", "tokens_per_s", "server_tokens_per_s", "itl_cv_pct", "prompt_tokens_per_s",
             "completion_tokens", "clock_disagreement_pct", "requests", "precision_pct", "server_starts",
             *REASONING_METRICS),  # the last only where the model reasons
    rules=(
        Rule("tokens_per_s", "min_tokens_per_s", "min", critical=True),
        Rule("ttft_s", "max_ttft_s", "max", critical=True),
        Rule("itl_cv_pct", "max_itl_cv_pct", "max", critical=False),
    ),
    headlines={"tokens_per_s": "tokens_per_s", "ttft_s": "ttft_s"},
    case=Case("Interactive chat", "interactive chat", ("tokens_per_s", "ttft_s"), (("tokens_per_s", True),)),
    figures={"tokens_per_s": Figure("{} t/s", "speed"), "ttft_s": Figure("{} s", "TTFT", "TTFT"),
             "itl_cv_pct": Figure("{}%", "token-gap variation", "token-gap variation")},
    roles=frozenset({"default", "skip_judge"}),
    per_start=frozenset({"tokens_per_s", "server_tokens_per_s", "ttft_s"}),
    uses=("chat",),
    init_settings=("requests", "max_tokens"),
    reading="2-5 t/s: slow but readable; 10-15: comfortable reading; 20-30: fast; 40+: nearly instant",
)
