"""Use-case profiles: the registry. One module per profile, each declaring its `KIND`.

A new profile is one module (settings, thresholds, rating rules, headline figures, `run`) plus
one entry in `KINDS`; the spec, the planner, the rating and the report read everything else
from here. The order of `KINDS` is the order cells of one model file run in.
"""

from __future__ import annotations

from llmspec.profiles import batch, divergence, interactive, load, long_context, quality, stress
from llmspec.profiles.base import (
    Outcome,
    ProfileContext,
    ProfileKind,
    Rule,
    clock_check,
    files_digest,
    median,
    prompt_files,
    require_cache_miss,
)

KINDS: tuple[ProfileKind, ...] = (interactive.KIND, long_context.KIND, batch.KIND, quality.KIND, divergence.KIND,
                                  load.KIND, stress.KIND)
PROFILES: dict[str, ProfileKind] = {kind.name: kind for kind in KINDS}
ORDER: tuple[str, ...] = tuple(PROFILES)


def kind(name: str) -> ProfileKind:
    return PROFILES[name]


__all__ = ["KINDS", "ORDER", "PROFILES", "Outcome", "ProfileContext", "ProfileKind", "Rule", "kind", "clock_check",
           "files_digest", "median", "prompt_files", "require_cache_miss", "batch", "divergence", "interactive", "load",
           "long_context", "quality", "stress"]
