"""Interactive storytelling: how long until the story starts, and how fast and steady it streams.

One warm-up request per server start, then `requests` measured story continuations. Every
measured request must be a prompt-cache miss (cache_n == 0).
"""

from __future__ import annotations

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
    prompt_files,
    require_cache_miss,
)
from llmspec.strict import Strict

SYSTEM = "You are a novelist. Continue the story the user gives you, in the same voice."


class InteractiveProfile(Strict):
    """Interactive storytelling (docs/profiles.md): TTFT, streaming speed and its steadiness."""

    requests: int = Field(3, ge=3, description="measured requests after one warm-up")
    max_tokens: int = Field(128, ge=8)
    prompts: str = Field("prompts/interactive", description="folder of .txt story openings")
    ignore_eos: bool = Field(True, description="generate exactly max_tokens so runs compare")
    temperature: float = Field(0.8, ge=0)
    seed: int = 42


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
    for i in range(s.requests):
        prompt = prompts[i % len(prompts)]
        ctx.progress(f"request {i + 1}/{s.requests} ({prompt.name})")
        record = ctx.client.chat(prompt.read_text(), prompt_name=prompt.name, max_tokens=s.max_tokens,
                                 system=SYSTEM, **params)
        if record.error:
            raise CellError(f"request {i + 1} failed: {record.error}")
        require_cache_miss(record)
        records.append(record)
    return _outcome(records)


def _outcome(records) -> Outcome:
    timings = [r.timings or {} for r in records]
    client_tps = median([r.decode_tokens_per_s() for r in records])
    server_tps = median([t.get("predicted_per_second") for t in timings])
    disagreement, flags = clock_check(client_tps, server_tps, "decode speed")
    metrics = {
        "ttft_s": median([r.ttft_s for r in records]),
        "first_event_s": median([r.first_event_s for r in records]),
        "tokens_per_s": client_tps,
        "server_tokens_per_s": server_tps,
        "itl_cv_pct": median([r.inter_token_cv_pct() for r in records]),
        "prompt_tokens_per_s": median([t.get("prompt_per_second") for t in timings]),
        "completion_tokens": median([r.completion_tokens for r in records]),
        "clock_disagreement_pct": disagreement,
    }
    return Outcome(metrics, [r.as_sample() for r in records], flags)


KIND = ProfileKind(
    name="interactive",
    summary="story continuation: time to first token, streaming speed and its steadiness",
    version=1,
    settings=InteractiveProfile,
    thresholds=InteractiveThresholds,
    run=run,
    files=lambda s, root: ("prompt_files", prompt_files(root, s.prompts)),
    metrics=("ttft_s", "first_event_s", "tokens_per_s", "server_tokens_per_s", "itl_cv_pct", "prompt_tokens_per_s",
             "completion_tokens", "clock_disagreement_pct"),
    rules=(
        Rule("tokens_per_s", "min_tokens_per_s", "min", critical=True),
        Rule("ttft_s", "max_ttft_s", "max", critical=True),
        Rule("itl_cv_pct", "max_itl_cv_pct", "max", critical=False),
    ),
    headlines={"tokens_per_s": "tokens_per_s", "ttft_s": "ttft_s"},
    case=Case("Interactive chat", "interactive chat", ("tokens_per_s", "ttft_s"), (("tokens_per_s", True),)),
    figures={"tokens_per_s": Figure("{} t/s", "speed"), "ttft_s": Figure("{} s", "TTFT", "TTFT"),
             "itl_cv_pct": Figure("{}%", "token-gap variation", "token-gap variation")},
)
