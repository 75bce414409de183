"""Divergence: what a quantization costs, as the KL divergence of its next-token distribution
from a reference quant's, and how often both pick the same top token (llama-perplexity).

The quiz (the quality profile) scores 20 items: it cannot tell a 3-point loss from luck. This
profile compares every scored position of a real text: `llama-perplexity --kl-divergence`
against reference logits written once per model (`llmspec.plan.reference`). It is
deterministic and needs no server: it runs in the cell's slot with llama.cpp's own tool.

The reference is the model's `reference` quant, by default the most precise one listed; a quant
derived from a less precise file is never more precise than that file (`Model.precision`). The
reference's own cell is measured against its own logits once, as a sanity check of the whole
chain: KLD comes out at about 0.00001 (the logits are stored as 16-bit log-probabilities), the
same top token at about 100 %, and a flag says so if it does not.

Metrics (each figure with llama-perplexity's own uncertainty where it prints one, as a 95 %
interval of value ± 1.96 standard errors): `kld_mean`, `kld_median`, `kld_p99`, `kld_max`,
`same_top_pct`, `ppl`, `reference_ppl`, `ppl_ratio`, `delta_p_rms_pct`, `scored_tokens`.
"""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from llmspec.errors import CellError
from llmspec.profiles.base import (
    Figure,
    LogitsNeed,
    Outcome,
    ProfileContext,
    ProfileKind,
    Rule,
    Translation,
    prompt_files,
)
from llmspec.stats import Z95, Interval, bounded
from llmspec.strict import Strict

SCORED_TARGET = 2000  # the default chunks score about this many tokens
MIN_SCORED = 100  # llama-perplexity prints no statistics below this
SELF_CHECK_KLD = 0.001
METHOD = "llama-perplexity's standard error x 1.96 (normal approximation)"


def scored_per_chunk(ctx: int) -> int:
    """llama-perplexity scores the second half of each chunk (positions ctx/2 .. ctx-2)."""
    return ctx - 1 - ctx // 2


class DivergenceProfile(Strict):
    """KL divergence and top-token agreement against the model's reference quant (docs/profiles.md)."""

    text: str = Field("prompts/long_context", description="folder of real prose (.txt) the quants are scored on")
    ctx: int = Field(512, ge=64, description="tokens per chunk; the second half of each is scored")
    chunks: int | None = Field(None, ge=1, description="chunks of ctx tokens (default: about 2,000 scored tokens)")

    @model_validator(mode="after")
    def _enough(self) -> DivergenceProfile:
        if self.chunk_count() * scored_per_chunk(self.ctx) < MIN_SCORED:
            raise PydanticCustomError(
                "scored", "chunks x (ctx/2 - 1) scores {n} tokens; llama-perplexity needs at least {m}: raise chunks",
                {"n": self.chunk_count() * scored_per_chunk(self.ctx), "m": MIN_SCORED})
        return self

    def chunk_count(self) -> int:
        return self.chunks or -(-SCORED_TARGET // scored_per_chunk(self.ctx))


class DivergenceThresholds(Strict):
    max_kld_mean: float = Field(0.05, gt=0, description="mean KL divergence from the reference at most")
    min_same_top_pct: float = Field(90.0, gt=0, le=100, description="same top token as the reference at least")


def run(ctx: ProfileContext) -> Outcome:
    from llmspec.run.perplexity import divergence

    local = ctx.local
    if local is None or local.reference is None:
        raise CellError("the divergence profile runs on a local model file only")
    reference, facts = local.reference()
    ctx.progress(f"KL divergence of {local.quant} against {reference.quant}'s logits "
                 f"({reference.chunks} chunks of {reference.ctx} tokens)")
    log = local.logs / f"{reference.spec}-{reference.model}@{local.quant}-divergence.log"
    found = divergence(reference.path, reference.ctx, reference.chunks, local.model_path,
                       local.tool("llama-perplexity"), local.threads, log, ctx.progress)
    return outcome(found.values, found.errors, found.scored, reference.quant, local.quant, local.less_precise_origin,
                   facts)


def outcome(values: dict[str, float], errors: dict[str, float], scored_chunks: int, reference: str, quant: str,
            less_precise_origin: str | None, facts: dict) -> Outcome:
    """Metrics, 95 % intervals from the tool's standard errors, and what a reader should know.

    Each figure and its interval are kept to the figure's domain together (`DOMAINS`); the sample
    keeps what the tool printed, so a clamped figure can be checked against the raw one."""
    metrics, intervals = {}, {}
    for name, value in values.items():
        figure, found = bounded(value, _interval(value, errors.get(name), facts), *DOMAINS.get(name, (None, None)))
        metrics[name] = figure
        if found is not None:
            intervals[name] = found
    metrics["scored_tokens"] = facts.get("scored_tokens")
    flags = []
    if quant == reference:
        flags.append(f"{quant} is the reference: measured against its own logits as a sanity check")
        if values["kld_mean"] > SELF_CHECK_KLD or values["same_top_pct"] < 99.0:
            flags.append(f"sanity check failed: the reference against itself gave KLD {values['kld_mean']:.5f} and "
                         f"{values['same_top_pct']:.1f}% same top token (expected about 0 and 100%)")
    if less_precise_origin is not None:
        flags.append(f"derived from {less_precise_origin}: no more precise than {less_precise_origin}")
    sample = {"kind": "divergence", "reference": reference, "values": values, "standard_errors": errors,
              "chunks": scored_chunks, "reference_ppl_when_built": facts.get("ppl")}
    return Outcome(metrics, [sample], flags, intervals)


# What each figure can be: a divergence, an RMS and a perplexity are never negative, a share stays in 0-100 %.
DOMAINS = {"kld_mean": (0.0, None), "kld_median": (0.0, None), "kld_p99": (0.0, None), "kld_max": (0.0, None),
           "delta_p_rms_pct": (0.0, None), "same_top_pct": (0.0, 100.0), "ppl": (0.0, None),
           "reference_ppl": (0.0, None), "ppl_ratio": (0.0, None)}


def _interval(value: float, se: float | None, facts: dict) -> Interval | None:
    """value ± 1.96 standard errors; none where the tool printed no error or "± nan" (too few positions)."""
    if se is None or se != se or se < 0:
        return None
    return Interval(facts.get("scored_tokens") or 0, value - Z95 * se, value + Z95 * se, METHOD)


KIND = ProfileKind(
    name="divergence",
    summary="KL divergence and same-top-token rate of each quant against the model's reference quant "
            "(llama-perplexity)",
    version=1,
    settings=DivergenceProfile,
    thresholds=DivergenceThresholds,
    run=run,
    files=lambda s, root: ("text_files", prompt_files(root, s.text)),
    metrics=("kld_mean", "kld_median", "kld_p99", "kld_max", "same_top_pct", "ppl", "reference_ppl", "ppl_ratio",
             "delta_p_rms_pct", "scored_tokens"),
    rules=(
        Rule("kld_mean", "max_kld_mean", "max", critical=True),
        Rule("same_top_pct", "min_same_top_pct", "min", critical=False, ceiling=100.0),
    ),
    headlines={"kld_mean": "kld_mean", "same_top_pct": "same_top_pct", "ppl_ratio": "ppl_ratio"},
    figures={"kld_mean": Figure("{}", "KL divergence from the reference", "KLD"),
             "same_top_pct": Figure("{}%", "same top token as the reference", "same top token"),
             "ppl_ratio": Figure("{}x", "perplexity against the reference", "perplexity ratio")},
    performance=False,
    managed_only=True,
    needs_server=False,
    evidence=("kld_mean",),  # a quant this far from its reference is broken, however fast
    roles=frozenset({"reference_logits", "overall"}),
    reference_logits=lambda s: LogitsNeed(s.ctx, s.chunk_count(), s.text),
    # Bands from the published llama.cpp figures for LLaMA-3-8B against F16 (mean KLD q8_0 0.0014, q6_K 0.0055,
    # q4_K_M 0.031, q3_K_M 0.10, q2_K 0.45; same top token q8_0 97.7 %, q6_K 96.0 %, q4_K_M 91.9 %, q2_K 71.1 %)
    # and what the community reports each of those quants is good for.
    readings={
        "kld_mean": Translation(False, (0.01, 0.05, 0.2), (
            "Indistinguishable from the reference in practice",
            "Small loss, safe for most uses",
            "Noticeable: fine for chat, check accuracy-critical work",
            "Large: creative use only",
        )),
        "same_top_pct": Translation(True, (80, 90, 95), (
            "Often picks a different next word than the reference: large loss",
            "Picks a different next word now and then: noticeable loss",
            "Nearly always picks the reference's next word",
            "Picks the reference's next word almost always",
        )),
    },
    uses=("accuracy",),
    init_settings=("ctx",),
)
