"""Interactive storytelling: how long until the story starts, and how fast and steady it streams.

One warm-up request per server start, then `requests` measured story continuations. Every
measured request must be a prompt-cache miss (cache_n == 0).
"""

from __future__ import annotations

from pydantic import Field, model_validator
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
from llmspec.stats import CONFIDENCE, median_interval
from llmspec.strict import Strict

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

    @model_validator(mode="after")
    def _enough(self) -> InteractiveProfile:
        if self.max_requests < self.requests:
            raise PydanticCustomError("requests", "max_requests ({m}) is below requests ({r}): raise max_requests",
                                      {"m": self.max_requests, "r": self.requests})
        return self


class InteractiveThresholds(Strict):
    min_tokens_per_s: float = Field(2.0, gt=0, description="streaming speed at least (client clock)")
    max_ttft_s: float = Field(30.0, gt=0, description="time to the first token at most")
    max_itl_cv_pct: float = Field(20.0, gt=0, description="variation of the gaps between tokens at most")


def run(ctx: ProfileContext) -> Outcome:
    s = ctx.settings
    prompts = prompt_files(ctx.root, s.prompts)
    params = {"temperature": s.temperature, "seed": s.seed, "ignore_eos": s.ignore_eos}
    ctx.warm_up(prompts[0].read_text(), 16, system=SYSTEM, **params)
    records = []
    for i in range(s.max_requests):
        prompt = prompts[i % len(prompts)]
        ctx.progress(f"request {i + 1}/{s.requests}{f'-{s.max_requests}' if s.max_requests > s.requests else ''} "
                     f"({prompt.name})")
        record = ctx.client.chat(prompt.read_text(), prompt_name=prompt.name, max_tokens=s.max_tokens,
                                 system=SYSTEM, **params)
        if record.error:
            raise CellError(f"request {i + 1} failed: {record.error}")
        require_cache_miss(record)
        records.append(record)
        if len(records) >= s.requests and _precise(records, s.target_precision_pct):
            break
    return _outcome(records, s.target_precision_pct)


def _precise(records, target_pct: float) -> bool:
    """Whether the median tokens/s is known to within `target_pct`: half its interval, and a real
    95 % one (fewer than 6 requests give only min-max, at 75-94 % coverage)."""
    speeds = [r.decode_tokens_per_s() for r in records]
    interval, center = median_interval(speeds), median(speeds)
    if interval is None or not center or interval.coverage < CONFIDENCE:
        return False
    return interval.half_width_pct(center) <= target_pct


def _outcome(records, target_pct: float) -> Outcome:
    timings = [r.timings or {} for r in records]
    speeds = [r.decode_tokens_per_s() for r in records]
    client_tps = median(speeds)
    server_tps = median([t.get("predicted_per_second") for t in timings])
    disagreement, flags = clock_check(client_tps, server_tps, "decode speed")
    intervals = {name: found for name, values in (
        ("tokens_per_s", speeds), ("server_tokens_per_s", [t.get("predicted_per_second") for t in timings]),
        ("ttft_s", [r.ttft_s for r in records])) if (found := median_interval(values)) is not None}
    found = intervals.get("tokens_per_s")
    precision = found.half_width_pct(client_tps) if found else None
    if found is not None and found.coverage < CONFIDENCE:
        flags.append(f"tokens_per_s: {len(records)} requests give only a {found.coverage:.0%} interval of the median "
                     f"(6 give 95%): raise requests or max_requests")
    elif precision is None or precision > target_pct:
        flags.append(f"tokens_per_s: the median of {len(records)} requests is known to "
                     f"{'?' if precision is None else f'±{precision:.1f}%'}, short of the ±{target_pct:g}% target "
                     f"(raise max_requests, or measure on a quieter machine)")
    metrics = {
        "ttft_s": median([r.ttft_s for r in records]),
        "first_event_s": median([r.first_event_s for r in records]),
        "tokens_per_s": client_tps,
        "server_tokens_per_s": server_tps,
        "itl_cv_pct": median([r.inter_token_cv_pct() for r in records]),
        "prompt_tokens_per_s": median([t.get("prompt_per_second") for t in timings]),
        "completion_tokens": median([r.completion_tokens for r in records]),
        "clock_disagreement_pct": disagreement,
        "requests": len(records),
        "precision_pct": precision,
    }
    thinking, reasoned = reasoning_figures(records, intervals)
    metrics.update(thinking)
    return Outcome(metrics, [r.as_sample() for r in records], flags + reasoned, intervals)


KIND = ProfileKind(
    name="interactive",
    summary="story continuation: time to first token, streaming speed and its steadiness",
    version=1,
    settings=InteractiveProfile,
    thresholds=InteractiveThresholds,
    run=run,
    files=lambda s, root: ("prompt_files", prompt_files(root, s.prompts)),
    metrics=("ttft_s", "first_event_s", "tokens_per_s", "server_tokens_per_s", "itl_cv_pct", "prompt_tokens_per_s",
             "completion_tokens", "clock_disagreement_pct", "requests", "precision_pct",
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
    uses=("chat",),
    init_settings=("requests", "max_tokens"),
    reading="2-5 t/s: slow but readable; 10-15: comfortable reading; 20-30: fast; 40+: nearly instant",
)
