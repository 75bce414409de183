"""Long context: how long a model takes to read a prompt of 4k, 8k, ... 64k tokens, and whether it can.

Prompts are cut from the bundled real prose (`settings.text`, repeated to reach large sizes) to
an exact token count measured with the server's own `/tokenize`. The chat template adds tokens
of its own; one small calibration request (which is also the warm-up) measures them, so the
prompt the server actually processes (`timings.prompt_n`) equals the target size.

Sizes beyond the model's trained context, or that do not fit the server's context together with
the generation, are not attempted; each gets a sample and a flag saying why. Sizes run smallest
first; the first failure stops the ladder (larger prompts would only fail harder).

Each size is measured `repeats` times (at least 3), every time a proven prompt-cache miss
(`cache_prompt: false`, and `cache_n == 0` checked). Per size, the median over the repeats:
`load_s_<n>` (server prompt_ms / 1000), `prompt_tokens_per_s_<n>` (server), `ttft_s_<n>` (client
clock), `gen_tokens_per_s_<n>` (server decode speed at that context), each with its 95 % interval;
`rss_gb_<n>` and `swap_gb_<n>` are the largest over the repeats (server process right after the
request; None without a managed server). Summary: `max_context_tokens` is the largest size that
completed (0 when none was attempted). `target_load_s` is the load time at the thresholds'
`target_context_tokens` (else at the smallest completed size above it; missing, with a flag saying
why, when no size that large completed, never the figure of a smaller one); the report reads it
again from the per-size figures when the target changes. `prompt_tokens_per_s` (and its interval)
is taken at the largest completed size.

Each measured sample keeps the server's timings plus `text_chars` (the prompt is that many
characters of the prose files joined by blank lines, repeated the same way), `text_tokens` and
`template_tokens`; the calibration request is kept too, marked `calibration: true`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

from pydantic import Field

from llmspec.errors import CellError
from llmspec.profiles.base import (
    Case,
    Figure,
    Outcome,
    ProfileContext,
    ProfileKind,
    Rule,
    Translation,
    clock_check,
    median,
    prompt_files,
    read_prose,
    require_cache_miss,
)
from llmspec.stats import Interval, median_interval
from llmspec.strict import Strict

SYSTEM = "You are a careful reader. In one sentence, say what the text the user gives you is about."
PARAMS = {"temperature": 0.0, "seed": 42, "ignore_eos": True}
CALIBRATION_TOKENS = 16
TOLERANCE_TOKENS = 4  # prompt_n may differ from the target by this much before we flag it
GB = 2**30
PER_SIZE = ("load_s", "prompt_tokens_per_s", "ttft_s", "gen_tokens_per_s", "rss_gb", "swap_gb")  # `<name>_<size>`


class LongContextProfile(Strict):
    """Long context management (docs/profiles.md): prompt processing at growing context sizes."""

    sizes: list[int] = Field([4096, 8192, 16384, 32768, 65536], min_length=1,
                             description="prompt sizes in tokens; beyond the model's trained context: not attempted")
    max_tokens: int = Field(32, ge=1, description="short generation at each size")
    repeats: int = Field(3, ge=3, description="measurements per size, each a prompt-cache miss; the median is kept")
    text: str = Field("prompts/long_context", description="folder of real prose the prompts are cut from")


class LongContextThresholds(Strict):
    max_load_s: float = Field(60.0, gt=0, description="prompt processing time at the target size")
    target_context_tokens: int = Field(8192, ge=256, description="the context size you need")


def server_overrides(settings, base_ctx_size: int) -> tuple[int, int]:
    """One slot with room for the largest prompt plus its generation (and a little slack).

    The model's trained context still caps what `run` attempts; the server only must not be
    the reason a size the model supports is skipped.
    """
    return max(base_ctx_size, max(settings.sizes) + settings.max_tokens + 256), 1


def unmeetable(settings, thresholds) -> str | None:
    """`target_context_tokens` set beyond every size: `max_context_tokens` can never reach it and the
    load time at the target is never measured. The default target is left to the rating (specs that
    measure small sizes only and never name a target keep loading)."""
    largest, target = max(settings.sizes), thresholds.target_context_tokens
    if target <= largest or "target_context_tokens" not in thresholds.model_fields_set:
        return None
    return (f"thresholds.long_context.target_context_tokens = {target} is larger than every size in "
            f"profiles.long_context.sizes (largest {largest}), so no run can meet it: add {target} to sizes "
            f"or lower target_context_tokens")


def plan_sizes(sizes: list[int], trained: int | None, server_ctx: int | None,
               max_tokens: int) -> list[tuple[int, str | None]]:
    """Each distinct size, smallest first, with the reason it is not attempted (None: attempt it)."""
    planned = []
    for size in sorted(set(sizes)):
        reason = None
        if trained and size > trained:
            reason = f"beyond the model's trained context of {trained} tokens"
        elif server_ctx and size + max_tokens > server_ctx:
            reason = (f"the server's context of {server_ctx} tokens has no room for {size} prompt tokens "
                      f"plus {max_tokens} generated")
        planned.append((size, reason))
    return planned


def cut_to_tokens(text: str, tokens: int, count: Callable[[str], int]) -> tuple[str, int]:
    """The longest prefix of `text` with at most `tokens` tokens, and its token count.

    Bisects on characters, so the prefix is exact up to a token that a single character can
    split in two; `count` is the server's tokenizer (a fake one in unit tests).
    """
    total = count(text)
    if total <= tokens:
        return text, total
    lo, hi, found = 0, len(text), 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        n = count(text[:mid])
        if n <= tokens:
            lo, found = mid, n
        else:
            hi = mid - 1
    return text[:lo], found


def run(ctx: ProfileContext) -> Outcome:
    s = ctx.settings
    trained = (ctx.model_meta or {}).get("context_length")
    server_ctx = ctx.server.args.ctx_per_slot if ctx.server is not None else None
    planned = plan_sizes(s.sizes, trained, server_ctx, s.max_tokens)
    samples, flags, done, overhead = [], [], [], 0
    if any(reason is None for _, reason in planned):
        count = token_counter(ctx.client)
        corpus = read_prose(ctx.root, s.text)
        ctx.progress("calibrating the chat template's tokens (warm-up)")
        overhead, calibration = _template_overhead(ctx, corpus, count)
        text = _long_text(corpus, max(size for size, reason in planned if reason is None) - overhead, count)
        samples.append(calibration)
    for i, (size, reason) in enumerate(planned):
        if reason is None and size <= overhead + 1:
            reason = f"smaller than the chat template's own {overhead} tokens"
        if reason is not None:
            samples.append({"size": size, "skipped": reason})
            flags.append(f"{size} tokens not attempted: {reason}")
            continue
        repeats, error = [], None
        for r in range(s.repeats):
            ctx.progress(f"size {i + 1}/{len(planned)}: {size} tokens, {r + 1}/{s.repeats}")
            sample, size_flags = _measure(ctx, text, size, overhead, count)
            samples.append({**sample, "repeat": r + 1})
            flags += [f for f in size_flags if f not in flags]  # the same tokenizer note from every repeat once
            if sample.get("error"):
                error = sample["error"]
                break
            repeats.append(sample)
        if error:
            if not done:
                raise CellError(f"no context size completed: {size} tokens failed: {error}")
            flags.append(f"{size} tokens failed ({error}); larger sizes not attempted")
            break
        done.append(repeats)
    target = getattr(ctx.thresholds, "target_context_tokens", None)
    return summarize(done, samples, flags, target)


def token_counter(client) -> Callable[[str], int]:
    """Token counts from the server's /tokenize, sent again once if a kept-alive connection was closed."""
    import requests  # here, not at the top: planning imports this module and never needs it

    def count(text: str) -> int:
        for attempt in (1, 2):
            try:
                return len(client.tokenize(text))
            except requests.ConnectionError:
                if attempt == 2:
                    raise CellError("the server closed the connection on /tokenize twice") from None
            except (requests.RequestException, KeyError, ValueError) as exc:  # no llama-server /tokenize
                raise CellError(f"cannot count prompt tokens with the server's /tokenize: {exc}") from None
    return count


def _template_overhead(ctx: ProfileContext, corpus: str, count) -> tuple[int, dict]:
    """Tokens the chat template (system message, role markers, BOS) adds to the user's text."""
    text, n = cut_to_tokens(corpus, CALIBRATION_TOKENS, count)
    record = ctx.client.chat(text, prompt_name="calibration", max_tokens=1, system=SYSTEM, **PARAMS)
    if record.error or not (record.timings or {}).get("prompt_n"):
        raise CellError(f"calibration request failed: {record.error or 'no timings.prompt_n in the reply'}")
    overhead = int(record.timings["prompt_n"]) - n
    return overhead, {**record.as_sample(), "calibration": True, "text_tokens": n, "template_tokens": overhead}


def _long_text(corpus: str, tokens: int, count) -> str:
    """The corpus repeated until it holds at least `tokens` tokens (plus one spare copy)."""
    copies = max(1, tokens // max(1, count(corpus)) + 2)
    return "\n\n".join([corpus] * copies)


def _measure(ctx: ProfileContext, text: str, size: int, overhead: int, count) -> tuple[dict, list[str]]:
    """One cache-missing request whose processed prompt is `size` tokens, plus memory after it."""
    prompt, n = cut_to_tokens(text, size - overhead, count)
    record = ctx.client.chat(prompt, prompt_name=f"{size} tokens", max_tokens=ctx.settings.max_tokens,
                             system=SYSTEM, **PARAMS)
    sample = {**record.as_sample(), "size": size, "text_chars": len(prompt), "text_tokens": n,
              "template_tokens": overhead}
    t = record.timings or {}
    if not record.error and "prompt_ms" not in t:
        sample["error"] = "the reply carries no server timings (prompt_ms), so the load time is unknown"
    if sample["error"]:
        return sample, []
    require_cache_miss(record)
    server_ttft = t["prompt_ms"] / 1000  # the first token is sampled from the prompt pass itself
    sample["clock_disagreement_pct"], flags = clock_check(record.ttft_s, server_ttft,
                                                          f"time to first token at {size} tokens")
    if abs(t.get("prompt_n", 0) - size) > TOLERANCE_TOKENS:
        flags.append(f"the prompt at {size} tokens was processed as {t.get('prompt_n')} tokens")
    if ctx.server is not None:
        sample["rss_bytes"], sample["swap_bytes"] = ctx.server.rss_bytes(), ctx.server.swap_bytes()
    return sample, flags


def target_size(completed: list[int], target: int | None) -> tuple[int | None, str | None]:
    """The completed size `target_load_s` is read at, or None and why: the target itself, else the
    smallest completed size above it (loading more tokens takes no less time, so the figure errs
    on the slow side); without a target (no thresholds), the largest completed size."""
    if target is None:
        return (completed[-1], None) if completed else (None, None)
    at = next((size for size in completed if size >= target), None)
    if at is None:
        reached = f"the largest size completed was {completed[-1]}" if completed else "no size completed"
        return None, f"target_load_s is missing: the target of {target} tokens was not reached ({reached})"
    return at, None


def rederive(row: dict, thresholds) -> dict[str, float | None]:
    """`target_load_s` again at today's `target_context_tokens`, from the stored per-size load times."""
    completed = sorted(size for key, value in row.items() if value is not None and (size := _size_of(key)) is not None)
    if not completed:  # no per-size figures to read it from: the stored one stands
        return {}
    at, _ = target_size(completed, thresholds.target_context_tokens)
    return {"target_load_s": row.get(f"load_s_{at}") if at is not None else None}


@functools.cache
def _size_of(key: str) -> int | None:
    """The context size of a per-size load time's name (`load_s_8192`), else None. The report
    re-derives every row's figure, 2,100 rows of ~100 keys at fleet scale, and the names repeat:
    each is matched once."""
    return int(key.removeprefix("load_s_")) if re.fullmatch(r"load_s_\d+", key) else None


def summarize(done: list[list[dict]], samples: list[dict], flags: list[str], target: int | None = None) -> Outcome:
    """Per-size medians (with intervals) and the summary the rating reads, from the completed sizes.

    `done` holds, per completed size (smallest first), the samples of its repeats; `target` is
    the thresholds' `target_context_tokens` (see `target_size`).
    """
    metrics: dict[str, float | None] = {}
    intervals: dict[str, Interval] = {}
    for repeats in done:
        size = repeats[0]["size"]
        per_size = {
            "load_s": [x["timings"]["prompt_ms"] / 1000 for x in repeats],
            "prompt_tokens_per_s": [x["timings"].get("prompt_per_second") for x in repeats],
            "ttft_s": [x["ttft_s"] for x in repeats],
            "gen_tokens_per_s": [x["timings"].get("predicted_per_second") for x in repeats],
        }
        for name, values in per_size.items():
            metrics[f"{name}_{size}"] = median(values)
            if (found := median_interval(values)) is not None:
                intervals[f"{name}_{size}"] = found
        metrics[f"rss_gb_{size}"] = _peak_gb(x.get("rss_bytes") for x in repeats)
        metrics[f"swap_gb_{size}"] = _peak_gb(x.get("swap_bytes") for x in repeats)
    last = done[-1][0]["size"] if done else None
    at, missing = target_size([repeats[0]["size"] for repeats in done], target)
    if missing:
        flags.append(missing)
    disagreements = [x["clock_disagreement_pct"] for repeats in done for x in repeats
                     if x.get("clock_disagreement_pct") is not None]
    metrics.update({
        "max_context_tokens": last or 0,
        "target_load_s": metrics[f"load_s_{at}"] if at else None,
        "prompt_tokens_per_s": metrics[f"prompt_tokens_per_s_{last}"] if last else None,
        "clock_disagreement_pct": max(disagreements) if disagreements else None,
    })
    for summary, per_size, size in (("target_load_s", "load_s", at),
                                    ("prompt_tokens_per_s", "prompt_tokens_per_s", last)):
        if size and f"{per_size}_{size}" in intervals:
            intervals[summary] = intervals[f"{per_size}_{size}"]
    if not done:
        flags.append("no context size was attempted, so max_context_tokens is 0")
    return Outcome(metrics, samples, flags, intervals)


def _peak_gb(values) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) / GB if present else None


KIND = ProfileKind(
    name="long_context",
    summary="exact-length prompts at growing sizes: load time per size and the largest context that works",
    version=2,
    settings=LongContextProfile,
    thresholds=LongContextThresholds,
    run=run,
    files=lambda s, root: ("text_files", prompt_files(root, s.text)),
    metrics=("max_context_tokens", "target_load_s", "prompt_tokens_per_s", "clock_disagreement_pct"),
    rules=(
        Rule("target_load_s", "max_load_s", "max", critical=True),
        Rule("max_context_tokens", "target_context_tokens", "min", critical=True),
    ),
    headlines={"max_context_tokens": "max_context_tokens", "target_load_s": "target_load_s"},
    case=Case("Long context work ({tokens} tokens)", "long context",
             ("target_load_s", "max_context_tokens", "peak_memory_gb"),
             (("max_context_tokens", True), ("target_load_s", False))),
    figures={"target_load_s": Figure("{} s", "context load", "load"),
             "max_context_tokens": Figure("{} tokens", "context")},
    server_overrides=server_overrides,
    unmeetable=unmeetable,
    rederive=rederive,
    managed_only=True,  # cuts prompts with the server's own /tokenize
    engine_needs=frozenset({"tokenize"}),
    roles=frozenset({"context_sizes"}),
    readings={"target_load_s": Translation(False, (5, 15, 30, 60), (
        "Smooth workflow",
        "Brief pause, manageable",
        "Noticeable delay",
        "Coffee break territory",
        "Too slow for practical use",
    ))},
    uses=("long-context",),
    init_settings=("sizes", "max_tokens"),
    reading="8k tokens in under 5 s: smooth; 16k in 10-30 s: a pause; over 60 s: too slow for interactive work",
    init_sizes=("sizes", "target_context_tokens"),
)
