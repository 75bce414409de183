"""Batch document processing: many documents summarised one after another, as an overnight job would.

Batch document processing (docs/profiles.md): throughput (documents per hour), consistency
(spread of the per-document time), degradation (last ten documents against the first ten) and
server memory over the run (leaks). Every document is one cache-missing request: a summary
instruction plus the document, `max_tokens` generated with `ignore_eos` so every document
produces the same number of tokens and a slower document means a slower machine, not a
chattier answer.

The per-document time is the client's wall time for the whole request. Documents differ in
length (200-500 tokens), so `doc_time_cv_pct` mixes those length differences with genuine
instability; `server_tokens_per_s_cv_pct` (the spread of the server's decode speed per document)
is the steadiness figure that length does not touch. Each sample keeps its `prompt_n` and
`predicted_n` so either can be recomputed. The bundled documents are ordered so that any ten
consecutive ones hold about the same number of tokens (within 1 percent), which keeps
`degradation_pct` a comparison of like with like at the default 30 documents.

Server RSS is read after every document; its least-squares slope is the leak signal. llama-server's
RAM prompt cache (--cache-ram) grows RSS by one prompt's KV state per document on its own, which
a flag points out when the server runs with that cache on.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from llmspec.engines import engine_named
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
    require_cache_miss,
)
from llmspec.stats import bootstrap_interval, bootstrap_two_interval, mean_interval, median_interval
from llmspec.strict import Strict

if TYPE_CHECKING:
    from llmspec.engines.base import ServerArgs

SYSTEM = "You are a careful assistant who writes short, accurate summaries."
INSTRUCTION = ("Summarise the following document in three or four sentences. Keep the names, numbers "
               "and decisions that matter.\n\nDocument:\n")
PARAMS = {"temperature": 0.0, "seed": 42, "ignore_eos": True}
WINDOW = 10  # "first 10 vs last 10" (docs/profiles.md)
LENGTH_IMBALANCE_PCT = 10.0
RSS_SLOPE_NOISE_MB = 1.0  # allocator noise; below this RSS is flat for the purpose of the cache flag
# Prompt room a bundled document needs: up to 500 document tokens plus instruction and chat template.
PROMPT_ROOM_TOKENS = 640


class BatchProfile(Strict):
    """Batch document processing (docs/profiles.md): sequential summaries, steadiness, leaks."""

    documents: int = Field(30, ge=3, description="documents summarised one after another")
    max_tokens: int = Field(128, ge=8, description="longest summary, in tokens")
    prompts: str = Field("prompts/batch", description="folder of .txt documents")


class BatchThresholds(Strict):
    min_docs_per_hour: float = Field(30.0, gt=0, description="documents summarised per hour at least")
    max_doc_time_cv_pct: float = Field(20.0, gt=0, description="variation of the per-document time at most")
    max_degradation_pct: float = Field(10.0, gt=0, description="last documents slower than the first by at most")


def server_overrides(settings, base_ctx_size: int) -> tuple[int, int]:
    """One slot with room for the longest bundled document plus its summary; never smaller than asked."""
    return max(base_ctx_size, PROMPT_ROOM_TOKENS + settings.max_tokens), 1


def run(ctx: ProfileContext) -> Outcome:
    s = ctx.settings
    files = prompt_files(ctx.root, s.prompts)
    texts = [f.read_text(encoding="utf-8") for f in files]
    _warm_up(ctx, files, texts, s.max_tokens)
    records, samples = [], []
    for i in range(s.documents):
        k = i % len(files)  # more documents than bundled: cycle through them again
        ctx.progress(f"document {i + 1}/{s.documents} ({files[k].name})")
        record = _summarise(ctx, texts[k], files[k].name, s.max_tokens)
        if record.error:
            raise CellError(f"document {i + 1} ({files[k].name}) failed: {record.error}")
        require_cache_miss(record)
        # Read right after the document finished: the memory the server kept, sample by sample.
        rss = ctx.server.rss_bytes() if ctx.server is not None else None
        records.append(record)
        samples.append(_sample(record, i + 1, rss))
    return _outcome(records, samples, s.max_tokens, ctx.server.args if ctx.server is not None else None)


def _summarise(ctx: ProfileContext, text: str, name: str, max_tokens: int):
    return ctx.client.chat(INSTRUCTION + text, prompt_name=name, max_tokens=max_tokens, system=SYSTEM, **PARAMS)


def _warm_up(ctx: ProfileContext, files: list[Path], texts: list[str], max_tokens: int) -> None:
    """One unmeasured summary of the longest document at full length.

    It pays the cold start (first request after loading) and touches the KV cache and compute
    buffers up to the largest size the run will use, so their first-touch growth in RSS is not
    later mistaken for a leak.
    """
    k = max(range(len(texts)), key=lambda j: len(texts[j]))
    ctx.warm_up(INSTRUCTION + texts[k], max_tokens, label=files[k].name, system=SYSTEM, **PARAMS)


def _sample(record, document: int, rss: int | None) -> dict:
    timings = record.timings or {}
    return {**record.as_sample(), "document": document, "doc_time_s": record.total_s,
            "prompt_n": timings.get("prompt_n"), "predicted_n": timings.get("predicted_n", record.completion_tokens),
            "rss_bytes": rss}


def _outcome(records, samples: list[dict], max_tokens: int, server_args: ServerArgs | None) -> Outcome:
    times = [s["doc_time_s"] for s in samples]
    mean = statistics.fmean(times)
    degradation, window, flags = degradation_pct(times)
    flags += _length_flags(samples, window, max_tokens)
    client_tps = median([r.decode_tokens_per_s() for r in records])
    server_speeds = [(r.timings or {}).get("predicted_per_second") for r in records]
    server_tps = median(server_speeds)
    disagreement, clock_flags = clock_check(client_tps, server_tps, "decode speed")
    rss = [s["rss_bytes"] for s in samples]
    rss_slope = slope([v / 2**20 for v in rss]) if None not in rss else None
    metrics = {
        "docs_per_hour": 3600 / mean if mean > 0 else None,
        "doc_time_s": mean,
        "doc_time_cv_pct": cv_pct(times),
        "degradation_pct": degradation,
        "server_tokens_per_s": server_tps,
        "tokens_per_s": client_tps,
        "clock_disagreement_pct": disagreement,
        "server_tokens_per_s_cv_pct": cv_pct([v for v in server_speeds if v]),
        "prompt_tokens_per_s": median([(r.timings or {}).get("prompt_per_second") for r in records]),
        "prompt_tokens_mean": _mean([s["prompt_n"] for s in samples]),
        "completion_tokens": median([s["predicted_n"] for s in samples]),
        "rss_peak_gb": max(rss) / 2**30 if None not in rss else None,
        "rss_slope_mb_per_doc": rss_slope,
    }
    return Outcome(metrics, samples, flags + clock_flags + prompt_cache_flags(server_args, rss_slope),
                   _intervals(times, records, server_speeds, window))


def _intervals(times: list[float], records, server_speeds: list, window: int) -> dict:
    """95 % intervals: throughput and mean time by bootstrap over the documents, speeds by the median's,
    the slowdown by `degradation_interval`.

    The documents differ in length, so the throughput's interval holds this document mix's spread
    as well as the machine's: it says how far another draw of such documents could move it.
    """
    found = {
        "degradation_pct": degradation_interval(times, window),
        "docs_per_hour": bootstrap_interval(times, lambda xs: 3600 / statistics.fmean(xs), "documents per hour"),
        "doc_time_s": mean_interval(times),
        "tokens_per_s": median_interval([r.decode_tokens_per_s() for r in records]),
        "server_tokens_per_s": median_interval(server_speeds),
    }
    return {name: interval for name, interval in found.items() if interval is not None}


def degradation_pct(times: list[float]) -> tuple[float | None, int, list[str]]:
    """Percent by which the last documents were slower than the first (negative: faster).

    Ten against ten (docs/profiles.md); with fewer than 20 documents the windows
    would overlap, so the first and last third are compared instead, and a flag says so.
    """
    n = len(times)
    window = WINDOW if n >= 2 * WINDOW else n // 3
    if window < 1:
        return None, 0, [f"only {n} documents: too few to compare early and late documents"]
    first, last = statistics.fmean(times[:window]), statistics.fmean(times[-window:])
    flags = [] if window == WINDOW else [
        f"only {n} documents (fewer than {2 * WINDOW}): degradation_pct compares the first and last "
        f"third ({window} document{'s' if window > 1 else ''} each) instead of the first and last {WINDOW}"]
    return ((last - first) / first * 100 if first > 0 else None), window, flags


def degradation_interval(times: list[float], window: int):
    """95 % interval of `degradation_pct`: a bootstrap over the documents, the first and the last
    window each resampled on its own (fixed seed), the statistic recomputed on every draw.

    Why a bootstrap over documents and not the least-squares slope's own interval: the figure is
    a comparison of two windows, and its noise is the document-to-document spread inside them
    (lengths, the machine's hiccups), which a resample of each window carries as it is; the slope
    answers another question (a steady trend over all documents) and would interval another
    figure. A window of one document has no spread to resample: no interval then.
    """
    if window < 2:
        return None

    def pct(first: list[float], last: list[float]) -> float | None:
        before = statistics.fmean(first)
        return (statistics.fmean(last) - before) / before * 100 if before > 0 else None

    return bootstrap_two_interval(times[:window], times[-window:], pct, "last window's slowdown against the first")


def _length_flags(samples: list[dict], window: int, max_tokens: int) -> list[str]:
    """Say when the compared windows or the outputs differ in length, which moves the times by itself."""
    flags = []
    prompts = [s["prompt_n"] for s in samples]
    if window and None not in prompts:
        first, last = sum(prompts[:window]), sum(prompts[-window:])
        diff = (last - first) / first * 100 if first else 0.0
        if abs(diff) > LENGTH_IMBALANCE_PCT:
            docs = f"{window} document{'s' if window > 1 else ''}"
            flags.append(f"the last {docs} {'have' if window > 1 else 'has'} {diff:+.0f}% prompt tokens "
                         f"against the first {docs}: "
                         f"degradation_pct partly reflects document length, not slowdown")
    short = sum(1 for s in samples if s["predicted_n"] is not None and s["predicted_n"] < max_tokens)
    if short:
        flags.append(f"{short} of {len(samples)} summaries stopped before max_tokens ({max_tokens}) although "
                     f"ignore_eos was sent: document times mix different output lengths")
    return flags


def prompt_cache_flags(server_args: ServerArgs | None, rss_slope_mb: float | None) -> list[str]:
    """RSS growth is not a leak when llama-server's RAM prompt cache is on.

    llama-server (--cache-ram, default 8 GiB) keeps the KV state of every finished prompt in
    host memory even for requests sent with cache_prompt=false, so RSS climbs by one prompt's
    KV state per document (measured: about 8.5 MB per document of 280-480 tokens on SmolLM2-135M;
    flat, 0.1 MB per document, with --cache-ram 0).
    """
    if server_args is None or rss_slope_mb is None or rss_slope_mb <= RSS_SLOPE_NOISE_MB:
        return []
    if not engine_named(server_args.engine).prompt_cache_on(server_args):
        return []
    return [f"server RSS grew {rss_slope_mb:.1f} MB per document, but llama-server's RAM prompt cache "
            f"(--cache-ram, on by default) keeps every finished prompt, so rss_slope_mb_per_doc "
            f"measures that cache as well as any leak"]


def cv_pct(values: list[float]) -> float | None:
    """Sample standard deviation over the mean, in percent."""
    if len(values) < 2 or statistics.fmean(values) <= 0:
        return None
    return statistics.stdev(values) / statistics.fmean(values) * 100


def slope(values: list[float]) -> float | None:
    """Least-squares change per document; a steady rise in RSS across documents suggests a leak."""
    if len(values) < 2:
        return None
    return statistics.linear_regression(range(len(values)), values).slope


def _mean(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


KIND = ProfileKind(
    name="batch",
    summary="documents summarised one after another: throughput, steadiness, slowdown and memory growth",
    version=1,
    settings=BatchProfile,
    thresholds=BatchThresholds,
    run=run,
    files=lambda s, root: ("prompt_files", prompt_files(root, s.prompts)),
    metrics=("docs_per_hour", "doc_time_s", "doc_time_cv_pct", "degradation_pct", "server_tokens_per_s",
             "tokens_per_s", "clock_disagreement_pct", "server_tokens_per_s_cv_pct", "prompt_tokens_per_s",
             "prompt_tokens_mean", "completion_tokens", "rss_peak_gb", "rss_slope_mb_per_doc"),
    rules=(
        Rule("docs_per_hour", "min_docs_per_hour", "min", critical=True),
        Rule("doc_time_cv_pct", "max_doc_time_cv_pct", "max", critical=False),
        Rule("degradation_pct", "max_degradation_pct", "max", critical=False),
    ),
    headlines={"docs_per_hour": "docs_per_hour"},
    case=Case("Document processing (batch)", "batch", ("docs_per_hour", "doc_time_cv_pct"),
             (("docs_per_hour", True),)),
    figures={"docs_per_hour": Figure("{} docs/hour", "throughput"),
             "doc_time_cv_pct": Figure("{}%", "document time variation", "time variation"),
             "degradation_pct": Figure("{}%", "slowdown over the batch", "slowdown")},
    server_overrides=server_overrides,
    readings={"docs_per_hour": Translation(True, (10, 30, 60, 120), (
        "Only for small batches",
        "Overnight batch jobs",
        "Reasonable for moderate batches",
        "Efficient bulk processing",
        "Excellent throughput",
    ))},
    uses=("batch",),
    init_settings=("documents", "max_tokens"),
    reading="10 documents/hour: overnight jobs only; 30: moderate batches; 60+: efficient bulk processing",
)
