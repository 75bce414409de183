"""The rating cases pinned in tests/fixtures/rating/pinned.json (tests/test_rating.py).

Every rule of every profile, each metric at, just past and well past its threshold, at zero,
negative, missing and non-finite, with and without a 95 % interval around the threshold, and the
mixes of two rules that decide between labels. The file was recorded from the per-row Python
rating the vectorized one replaced, so the replacement is held to every label, check and summary.
"""

from __future__ import annotations

import itertools
import math

from llmspec.profiles import KINDS
from llmspec.results import bound_names
from llmspec.spec import Spec

THRESHOLDS = Spec.model_validate(
    {"name": "t", "models": [{"name": "m", "quants": ["Q4_1"], "package": "x", "files": {"Q4_1": "x.gguf"}}]}
).thresholds


def _values(threshold: float) -> list:
    t = float(threshold)
    return [t, t * 1.5, t * 1.2, t * 1.19, t * 0.99, t * 0.5, t * 2.0, t * 0.8, t / 1.5, 0.0, -1.0, None,
            math.nan, math.inf, "12"]


# The profiles the pinned file was recorded for; profiles added since are held to the same rules by
# test_rating's agreement tests (`cases(new=True)`), not to a recording.
PINNED_PROFILES = ("interactive", "long_context", "batch", "quality", "divergence", "load", "stress")


def cases(new: bool = False) -> list[tuple[str, dict]]:
    """(profile, metrics) pairs, deterministic: of the pinned profiles, or (`new`) of every profile."""
    found = []
    for kind in (k for k in KINDS if new or k.name in PINNED_PROFILES):
        limits = getattr(THRESHOLDS, kind.name)
        good = {r.metric: float(getattr(limits, r.threshold)) * (2.0 if r.direction == "min" else 0.5)
                for r in kind.rules}
        for rule in kind.rules:
            t = float(getattr(limits, rule.threshold))
            for value in _values(t):
                found.append((kind.name, {**good, rule.metric: value}))
            low, high = bound_names(rule.metric)
            for value, lo, hi in ((t * 1.1, t * 0.9, t * 1.3), (t * 0.95, t * 0.9, t * 1.05),
                                  (t * 3.0, t * 2.0, t * 4.0), (t, t, t), (t * 1.1, None, t * 1.3)):
                found.append((kind.name, {**good, rule.metric: value, low: lo, high: hi}))
        for a, b in itertools.combinations(kind.rules, 2):
            ta, tb = (float(getattr(limits, r.threshold)) for r in (a, b))
            for fa, fb in ((0.99, 1.01), (1.01, 0.99), (1.3, 1.6), (0.5, 0.5)):
                found.append((kind.name, {**good, a.metric: ta * fa, b.metric: tb * fb}))
        found.append((kind.name, {}))
    found.append(("no_such_profile", {"tokens_per_s": 5.0}))
    return found
