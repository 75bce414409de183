"""Interactive storytelling: how long until the story starts, and how fast and steady it streams.

One warm-up request per server start, then `requests` measured story continuations. Every
measured request must be a prompt-cache miss (cache_n == 0).
"""

from __future__ import annotations

from llmspec.errors import CellError
from llmspec.profiles import Outcome, ProfileContext, clock_check, median, prompt_files, require_cache_miss

VERSION = 1
SYSTEM = "You are a novelist. Continue the story the user gives you, in the same voice."


def inputs(settings, root) -> dict:
    from llmspec.profiles import files_digest

    return {**settings.model_dump(), "prompt_files": files_digest(prompt_files(root, settings.prompts))}


def run(ctx: ProfileContext) -> Outcome:
    s = ctx.settings
    prompts = prompt_files(ctx.root, s.prompts)
    params = {"temperature": s.temperature, "seed": s.seed, "ignore_eos": s.ignore_eos}
    ctx.progress("warm-up request")
    warm = ctx.client.chat(prompts[0].read_text(), prompt_name="warm-up", max_tokens=16, system=SYSTEM, **params)
    if warm.error:
        raise CellError(f"warm-up request failed: {warm.error}")
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
