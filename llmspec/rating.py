"""Ratings and real-world translations: the opinions laid over measured facts.

Results never store a rating, so this is the one place where thresholds meet metrics. The
planner (smart termination) and the report both call `rate`, so a cell the planner gave up on
and the row the report shows can never disagree. Each profile declares its rules (which metric
against which threshold, which way, how critical) in its `KIND`; the method is in docs/rating.md.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from llmspec.profiles import PROFILES
from llmspec.profiles.base import Direction, Rule
from llmspec.results import bound_names

LABELS = ("Excellent", "Good", "Acceptable", "Poor", "Failed")

# The labels (docs/rating.md): every metric beats its threshold by at least this many percent.
MARGIN_LABELS = ((50.0, "Excellent"), (20.0, "Good"), (0.0, "Acceptable"))


@dataclass(frozen=True)
class Check:
    name: str
    value: float
    threshold: float
    direction: Direction
    critical: bool
    passed: bool
    margin_pct: float  # how far past the threshold, in percent; negative when it missed
    borderline: bool = False  # the threshold lies inside the figure's 95 % interval: noise could flip it

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe: an infinite margin (a zero TTFT, say) becomes null rather than invalid JSON."""
        margin = round(self.margin_pct, 1) if math.isfinite(self.margin_pct) else None
        return {"name": self.name, "value": self.value, "threshold": self.threshold, "direction": self.direction,
                "critical": self.critical, "passed": self.passed, "margin_pct": margin,
                "borderline": self.borderline}  # field order, spelled out: 3x faster


@dataclass(frozen=True)
class Rating:
    label: str | None  # None: not rated (no thresholds for the profile, or metrics missing)
    checks: tuple[Check, ...] = ()

    def summary(self) -> str:
        """One line per check, for tooltips and logs."""
        return "; ".join(
            f"{c.name} {c.value:g} {'>=' if c.direction == 'min' else '<='} {c.threshold:g}: "
            f"{'ok' if c.passed else 'missed'} ({c.margin_pct:+.0f}%)"
            f"{', borderline: the threshold is inside its 95% interval' if c.borderline else ''}"
            for c in self.checks
        )


def rate(profile: str, metrics: Mapping[str, Any], thresholds: Any) -> Rating:
    """Rate one profile's metrics against `thresholds` (spec.thresholds or a plain dict).

    `metrics` may carry a figure's 95 % interval as `<metric>:low` and `<metric>:high`
    (`Result.figures()`, the report's frame): a threshold inside it makes the check borderline."""
    rules = PROFILES[profile].rules if profile in PROFILES else ()
    limits = _field(thresholds, profile)
    if not rules or limits is None:
        return Rating(None)
    values = tuple(_number(metrics.get(r.metric)) for r in rules)
    bounds = tuple(tuple(_number(metrics.get(name)) for name in bound_names(r.metric)) for r in rules)
    return _rated(profile, values, tuple(_number(_field(limits, r.threshold)) for r in rules), bounds)


@lru_cache(maxsize=65536)
def _rated(profile: str, values: tuple, limits: tuple, bounds: tuple = ()) -> Rating:
    """The rating of these figures against these limits. Cached: a report rates each cell for
    its tables and again for the recommendations, and a Rating is immutable."""
    checks = []
    for rule, value, threshold, (low, high) in zip(PROFILES[profile].rules, values, limits,
                                                    bounds or [(None, None)] * len(values)):
        if value is not None and threshold is not None:  # a metric this machine cannot measure
            check = _check(rule, value, threshold)  # (no sensor) is not judged
            if low is not None and high is not None and low <= threshold <= high:
                check = replace(check, borderline=True)
            checks.append(check)
    return Rating(_label(checks), tuple(checks)) if checks else Rating(None)


def _check(rule: Rule, value: float, threshold: float) -> Check:
    if rule.ceiling is not None and rule.direction == "min":  # the gap to the ceiling, at most the allowed gap
        margin = _margin(rule.ceiling - threshold, rule.ceiling - value)
    elif rule.direction == "min":
        margin = _margin(value, threshold)
    else:  # zero or below (a run that got faster, no drift) beats any positive maximum outright
        margin = math.inf if value <= 0 else _margin(threshold, value)
    # Rounded so that 2.4 t/s against 2.0 counts as the 20% it is, not 19.999999999999996%.
    margin_pct = round(margin * 100, 6) if math.isfinite(margin) else margin
    return Check(rule.metric, value, threshold, rule.direction, rule.critical, margin_pct >= 0, margin_pct)


def _margin(better: float, worse: float) -> float:
    """better/worse - 1, where a zero denominator means infinitely better (0 s TTFT)."""
    if worse == 0:
        return math.inf if better > 0 else 0.0
    return better / worse - 1


def _label(checks: list[Check]) -> str:
    """A critical miss fails, unless it misses only within its noise (borderline): then Poor. A
    pass that noise could turn into a miss is at best Acceptable, however large its margin."""
    if any(c.critical and not c.passed and not c.borderline for c in checks):
        return "Failed"
    if not all(c.passed for c in checks):
        return "Poor"
    worst = min(c.margin_pct for c in checks)
    label = next(label for floor, label in MARGIN_LABELS if worst >= floor)
    return "Acceptable" if any(c.borderline for c in checks) else label


def _field(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def _number(value: Any) -> float | None:
    """A finite number as float; anything else (missing, NaN, text in a hand-edited file) as None."""
    return float(value) if _is_number(value) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# --- Real-world translations (docs/rating.md, "What a figure means") -------------------------


@dataclass(frozen=True)
class Translation:
    """Bands of one quantity: `bounds` split the axis, `texts` has one more entry than bounds.

    A value exactly on a bound belongs to the better band (2 t/s meets the 2 t/s minimum,
    30 s TTFT meets the 30 s maximum), so the direction decides which side a bound falls on.
    """

    higher_is_better: bool
    bounds: tuple[float, ...]
    texts: tuple[str, ...]

    def text(self, value: float) -> str:
        find = bisect_right if self.higher_is_better else bisect_left
        return self.texts[find(self.bounds, value)]


TRANSLATIONS: dict[str, Translation] = {
    "tokens": Translation(True, (2, 5, 10, 15, 20, 40), (
        "Too slow to follow as it streams",
        "Slow but readable, like careful dictation",
        "Moderate pace, acceptable for patient users",
        "Comfortable reading speed",
        "Fast reading, feels responsive",
        "Very fast, excellent UX",
        "Nearly instant for most prompts",
    )),
    "ttft": Translation(False, (2, 5, 10, 30), (
        "Feels instant, excellent UX",
        "Barely noticeable pause",
        "Noticeable but acceptable",
        "Significant wait, breaks flow",
        "Frustrating, unusable for interactive",
    )),
    "context_load": Translation(False, (5, 15, 30, 60), (
        "Smooth workflow",
        "Brief pause, manageable",
        "Noticeable delay",
        "Coffee break territory",
        "Too slow for practical use",
    )),
    "memory": Translation(False, (6, 8, 12, 14), (
        "Plenty of headroom",
        "Room for other apps",
        "Dedicated inference, some headroom",
        "Most of system RAM",
        "Swapping likely, severe degradation",
    )),
    "batch": Translation(True, (10, 30, 60, 120), (
        "Only for small batches",
        "Overnight batch jobs",
        "Reasonable for moderate batches",
        "Efficient bulk processing",
        "Excellent throughput",
    )),
    # KL divergence from the reference quant (llama-perplexity). Bands from the published
    # llama.cpp figures for LLaMA-3-8B against F16 (mean KLD q8_0 0.0014, q6_K 0.0055, q4_K_M 0.031,
    # q3_K_M 0.10, q2_K 0.45) and what the community reports each of those quants is good for.
    "divergence": Translation(False, (0.01, 0.05, 0.2), (
        "Indistinguishable from the reference in practice",
        "Small loss, safe for most uses",
        "Noticeable: fine for chat, check accuracy-critical work",
        "Large: creative use only",
    )),
    # Same top token as the reference (same source: q8_0 97.7 %, q6_K 96.0 %, q4_K_M 91.9 %, q2_K 71.1 %).
    "same_top": Translation(True, (80, 90, 95), (
        "Often picks a different next word than the reference: large loss",
        "Picks a different next word now and then: noticeable loss",
        "Nearly always picks the reference's next word",
        "Picks the reference's next word almost always",
    )),
    "temperature": Translation(False, (70, 80, 85, 90), (
        "Cool, no concerns",
        "Warm but safe",
        "Hot, ensure good airflow",
        "Thermal limit approaching",
        "Too hot, reduce load",
    )),
}

# Metric names (units in the name) -> which translation applies.
METRIC_TRANSLATION: dict[str, str] = {
    "tokens_per_s": "tokens",
    "server_tokens_per_s": "tokens",
    "ttft_s": "ttft",
    "target_load_s": "context_load",
    "peak_rss_gb": "memory",
    "rss_peak_gb": "memory",
    "docs_per_hour": "batch",
    "max_temperature_c": "temperature",
    "kld_mean": "divergence",
    "same_top_pct": "same_top",
    "mean_temperature_c": "temperature",
}


def interpret(metric: str, value: Any) -> str:
    """What a number means to a person; "" for metrics without a translation band."""
    kind = METRIC_TRANSLATION.get(metric)
    if kind is None or not _is_number(value):
        return ""
    return TRANSLATIONS[kind].text(float(value))
