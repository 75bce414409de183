"""Use-case profiles: the registry. One module per profile, each declaring its `KIND`.

A new profile is one module (settings, thresholds, rating rules, headline figures, `run`) plus
one entry in `KINDS`; the spec, the planner, the rating and the report read everything else
from here. The order of `KINDS` is the order cells of one model file run in. Other parts find a
profile by what it declares (`role`: the profile whose ratings drive the skips, the quiz, the one
measured against reference logits, ...), never by its name (tests/test_layout.py checks it).
"""

from __future__ import annotations

from llmspec.profiles import (
    batch,
    coding,
    divergence,
    interactive,
    load,
    long_context,
    quality,
    session,
    stress,
    structured,
    tool_calls,
)
from llmspec.profiles.base import (
    ROLES,
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
                                  load.KIND, stress.KIND, structured.KIND, session.KIND,
                                  tool_calls.KIND, coding.KIND)
PROFILES: dict[str, ProfileKind] = {kind.name: kind for kind in KINDS}
ORDER: tuple[str, ...] = tuple(PROFILES)


def kind(name: str) -> ProfileKind:
    return PROFILES[name]


def role(name: str) -> ProfileKind | None:
    """The profile holding role `name` (`base.ROLES`: what a part looks a profile up by instead of
    naming it), or None when no registered profile holds it."""
    assert name in ROLES, f"unknown profile role {name!r} (known: {sorted(ROLES)})"
    return next((k for k in KINDS if name in k.roles), None)


def role_name(name: str) -> str | None:
    """The name of the profile holding role `name`, or None (`role`)."""
    found = role(name)
    return None if found is None else found.name


def higher_is_better(profile: str, metric: str) -> bool | None:
    """Which way a profile's figure is better (`ProfileKind.higher_is_better`); None for a profile
    this version does not know (an old result file's)."""
    found = PROFILES.get(profile)
    return None if found is None else found.higher_is_better(metric)


__all__ = ["KINDS", "ORDER", "PROFILES", "Outcome", "ProfileContext", "ProfileKind", "Rule", "kind", "role",
           "role_name", "higher_is_better", "clock_check", "files_digest", "median", "prompt_files",
           "require_cache_miss", "batch", "divergence", "interactive", "load", "long_context", "quality", "stress"]
