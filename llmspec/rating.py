"""Ratings and real-world translations: the opinions laid over measured facts.

Results never store a rating, so this is the one place where thresholds meet metrics. The
rules are implemented once, as polars expressions (`rate_frame`): the report rates its whole
frame with them and the planner its stored results (`rate_many`, `rate`), so a cell the planner
gave up on and the row the report shows can never disagree. Each profile declares its rules
(which metric against which threshold, which way, how critical) in its `KIND`; the method is in
docs/rating.md. polars is imported where it is used: a `doit` with nothing to do rates nothing
and should not pay its half-second import.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import TYPE_CHECKING, Any

from llmspec.profiles import KINDS, PROFILES
from llmspec.profiles.base import Direction, Rule, Translation
from llmspec.results import bound_names

if TYPE_CHECKING:
    import polars as pl

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

    @classmethod
    def from_dict(cls, found: Mapping[str, Any]) -> Check:
        """Back from `as_dict` (results.json, the report's frame): a null margin was infinite."""
        margin = found.get("margin_pct")
        return cls(**{**found, "margin_pct": math.inf if margin is None else margin})

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
        return summary(self.checks)


def summary(checks) -> str:
    """`Rating.summary` of checks given as `Check`s or as the dicts of a `rate_frame` column."""
    return "; ".join(check_line(*(c[f] for f in CHECK_LINE_FIELDS))
                     for c in (c if isinstance(c, dict) else c.__dict__ for c in checks))


CHECK_LINE_FIELDS = ("name", "value", "direction", "threshold", "passed", "margin_pct", "borderline")


def check_line(name: str, value: float, direction: str, threshold: float, passed: bool, margin_pct: float,
               borderline: bool) -> str:
    """One check of `summary`, from its fields (CHECK_LINE_FIELDS): the report reads them as columns."""
    return (f"{name} {value:g} {'>=' if direction == 'min' else '<='} {threshold:g}: "
            f"{'ok' if passed else 'missed'} ({margin_pct:+.0f}%)"
            f"{', borderline: the threshold is inside its 95% interval' if borderline else ''}")


def checks_json(checks: pl.Expr) -> pl.Expr:
    """A `rating_checks` column as JSON text, `Check.as_dict` for every check: an infinite
    margin becomes null, margins are rounded to 0.1, booleans stay booleans."""
    import polars as pl

    finite = pl.element().struct.field("margin_pct")
    shown = pl.element().struct.with_fields(pl.when(finite.is_finite()).then(finite.round(1)).alias("margin_pct"))
    return (pl.struct(checks.list.eval(shown).alias("c")).struct.json_encode()
            .str.strip_prefix('{"c":').str.strip_suffix("}"))


def best_label(labels: list[str | None]) -> str | None:
    """The best rating among a configuration's variants (None when none was rated)."""
    rated = [label for label in labels if label is not None]
    return min(rated, key=LABELS.index) if rated else None


def rate(profile: str, metrics: Mapping[str, Any], thresholds: Any) -> Rating:
    """Rate one profile's metrics against `thresholds` (spec.thresholds or a plain dict).

    `metrics` may carry a figure's 95 % interval as `<metric>:low` and `<metric>:high`
    (`Result.figures()`, the report's frame): a threshold inside it makes the check borderline."""
    rules = PROFILES[profile].rules if profile in PROFILES else ()
    limits = _field(thresholds, profile)
    if not rules or limits is None:
        return Rating(None)
    values = tuple(_number(metrics.get(name)) for name in _names(profile))
    return _rated(profile, values, tuple(_number(_field(limits, r.threshold)) for r in rules))


@lru_cache(maxsize=65536)
def _rated(profile: str, values: tuple, limits: tuple) -> Rating:
    """Cached: the planner asks for the same stored result's rating again and again, and a
    Rating is immutable."""
    thresholds = {profile: {r.threshold: limit for r, limit in zip(PROFILES[profile].rules, limits)}}
    return rate_many([(profile, dict(zip(_names(profile), values)))], thresholds)[0]


def rate_many(items: Sequence[tuple[str, Mapping[str, Any]]], thresholds: Any) -> list[Rating]:
    """`rate` for many (profile, metrics) pairs in one `rate_frame` call: one polars query for a
    whole matrix instead of one per result, which is what makes the rows-at-once code pay."""
    import polars as pl

    if not items:
        return []
    names = sorted({n for profile, _ in items if profile in PROFILES for n in _names(profile)})
    frame = pl.DataFrame([pl.Series("profile", [p for p, _ in items], dtype=pl.String),
                          *(pl.Series(n, [_number(m.get(n)) for _, m in items], dtype=pl.Float64) for n in names)])
    return [Rating(label, tuple(Check(**c) for c in checks)) for label, checks in rate_frame(frame, thresholds).rows()]


@cache
def _names(profile: str) -> tuple[str, ...]:
    """The columns a profile's rules read: each rated metric and its interval's bounds."""
    return tuple(n for r in PROFILES[profile].rules for n in (r.metric, *bound_names(r.metric)))


def rate_frame(frame: pl.DataFrame, thresholds: Any, rated: pl.Expr | None = None) -> pl.DataFrame:
    """`rating` (the label, null when not rated) and `rating_checks` (a list of check structs in
    rule order) for every row of `frame`, by its `profile` column, as polars expressions.

    This is the only implementation of the rules (docs/rating.md): the report rates 10,000
    rows at once with it, and `rate` rates the planner's rows with it. `rated` limits it to
    some rows (finished measurements); the others get no rating. Each profile's rows are rated
    apart, in stages (figures, margins, label), which keeps polars' query small."""
    import polars as pl

    # Lazy, so each profile's query reads only its rules' columns of its rows (not a 240-column
    # frame copied per profile), and the queries run together.
    rows = frame.lazy().with_row_index("_row")
    if rated is not None:
        rows = rows.filter(rated)
    present = set(rows.select(pl.col("profile").unique()).collect().to_series().to_list()) if frame.height else set()
    pieces = [_rate_profile(rows.filter(pl.col("profile") == profile), frame.columns, profile, thresholds)
              for profile in PROFILES if profile in present]
    empty = pl.DataFrame(schema={"_row": pl.UInt32, "rating": pl.String, "rating_checks": pl.List(check_dtype())})
    found = pl.concat([empty, *pl.collect_all([p for p in pieces if p is not None])])
    return (frame.with_row_index("_row").select("_row").join(found, on="_row", how="left", maintain_order="left")
            .select("rating", pl.col("rating_checks").fill_null(pl.lit([], pl.List(check_dtype())))))


@cache
def check_dtype() -> pl.DataType:
    """A check as a polars struct: `Check`'s fields."""
    import polars as pl

    return pl.Struct({"name": pl.String, "value": pl.Float64, "threshold": pl.Float64, "direction": pl.String,
                      "critical": pl.Boolean, "passed": pl.Boolean, "margin_pct": pl.Float64,
                      "borderline": pl.Boolean})


def _rate_profile(rows: pl.LazyFrame, columns: list[str], profile: str, thresholds: Any) -> pl.LazyFrame | None:
    """One profile's rows (`columns`: the frame's): `_row`, `rating`, `rating_checks`; None when
    nothing is judged."""
    import polars as pl

    limits = _field(thresholds, profile)
    rules = [(r, _number(_field(limits, r.threshold))) for r in PROFILES[profile].rules]
    rules = [(r, t) for r, t in rules if t is not None]  # a threshold left unset is not judged
    if not rules:
        return None
    def finite(name: str) -> pl.Expr:  # a metric this machine cannot measure (no sensor) is not judged
        col = pl.col(name).cast(pl.Float64) if name in columns else pl.lit(None, pl.Float64)
        return pl.when(col.is_finite()).then(col)
    figures = rows.select("_row", *(e for i, (r, _) in enumerate(rules) for e in (
        finite(r.metric).alias(f"v{i}"), *(finite(b).alias(f"{s}{i}") for s, b in zip("lh", bound_names(r.metric))))))
    margins = figures.with_columns(_margin_pct(rule, t, pl.col(f"v{i}")).alias(f"m{i}")
                                   for i, (rule, t) in enumerate(rules))
    checks = margins.with_columns(e for i, (_, t) in enumerate(rules) for e in (
        (pl.col(f"m{i}") >= 0).alias(f"p{i}"),
        ((pl.col(f"l{i}") <= t) & (t <= pl.col(f"h{i}"))).fill_null(False).alias(f"b{i}")))
    structs = [pl.when(pl.col(f"v{i}").is_not_null()).then(pl.struct(
        name=pl.lit(r.metric), value=pl.col(f"v{i}"), threshold=pl.lit(t, pl.Float64), direction=pl.lit(r.direction),
        critical=pl.lit(r.critical), passed=pl.col(f"p{i}"), margin_pct=pl.col(f"m{i}"), borderline=pl.col(f"b{i}")))
        for i, (r, t) in enumerate(rules)]
    return checks.select("_row", _label_expr([r.critical for r, _ in rules]).alias("rating"),
                         pl.concat_list(structs).list.drop_nulls().alias("rating_checks"))


def _margin_pct(rule: Rule, threshold: float, value: pl.Expr) -> pl.Expr:
    """How far past the threshold, in percent; negative when it missed."""
    import polars as pl

    if rule.ceiling is not None and rule.direction == "min":  # the gap to the ceiling, at most the allowed gap
        margin = _margin(pl.lit(rule.ceiling - threshold), pl.lit(rule.ceiling) - value)
    elif rule.direction == "min":
        margin = _margin(value, pl.lit(threshold))
    else:  # zero or below (a run that got faster, no drift) beats any positive maximum outright
        margin = pl.when(value <= 0).then(pl.lit(math.inf)).otherwise(_margin(pl.lit(threshold), value))
    # Rounded so that 2.4 t/s against 2.0 counts as the 20% it is, not 19.999999999999996%.
    return pl.when(margin.is_finite()).then((margin * 100).round(6)).otherwise(margin)


def _margin(better: pl.Expr, worse: pl.Expr) -> pl.Expr:
    """better/worse - 1, where a zero denominator means infinitely better (0 s TTFT)."""
    import polars as pl

    zero = pl.when(better > 0).then(pl.lit(math.inf)).otherwise(pl.lit(0.0))
    return pl.when(worse == 0).then(zero).otherwise(better / worse - 1)


def _label_expr(critical: list[bool]) -> pl.Expr:
    """A critical miss fails, unless it misses only within its noise (borderline): then Poor. A
    pass that noise could turn into a miss is at best Acceptable, however large its margin.
    Reads the stage columns v<i> (figure), m<i> (margin), p<i> (passed), b<i> (borderline)."""
    import polars as pl

    n = range(len(critical))
    present = [pl.col(f"v{i}").is_not_null() for i in n]
    def any_of(terms) -> pl.Expr:
        return pl.any_horizontal([pl.lit(False), *terms])
    worst = pl.min_horizontal([pl.when(present[i]).then(pl.col(f"m{i}")) for i in n])
    return (pl.when(~any_of(present)).then(pl.lit(None, pl.String))
            .when(any_of(present[i] & ~pl.col(f"p{i}") & ~pl.col(f"b{i}") for i in n if critical[i]))
            .then(pl.lit("Failed"))
            .when(any_of(present[i] & ~pl.col(f"p{i}") for i in n)).then(pl.lit("Poor"))
            .when(any_of(present[i] & pl.col(f"b{i}") for i in n)).then(pl.lit("Acceptable"))
            .when(worst >= MARGIN_LABELS[0][0]).then(pl.lit(MARGIN_LABELS[0][1]))
            .when(worst >= MARGIN_LABELS[1][0]).then(pl.lit(MARGIN_LABELS[1][1]))
            .otherwise(pl.lit("Acceptable")))


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
    "memory": Translation(False, (6, 8, 12, 14), (
        "Plenty of headroom",
        "Room for other apps",
        "Dedicated inference, some headroom",
        "Most of system RAM",
        "Swapping likely, severe degradation",
    )),
    "temperature": Translation(False, (70, 80, 85, 90), (
        "Cool, no concerns",
        "Warm but safe",
        "Hot, ensure good airflow",
        "Thermal limit approaching",
        "Too hot, reduce load",
    )),
}

# Metric names (units in the name) -> which of the shared translations applies; each profile adds
# the readings of its own figures (`ProfileKind.readings`).
SHARED_METRICS: dict[str, str] = {
    "tokens_per_s": "tokens",
    "server_tokens_per_s": "tokens",
    "ttft_s": "ttft",
    "peak_rss_gb": "memory",
    "rss_peak_gb": "memory",
    "max_temperature_c": "temperature",
    "mean_temperature_c": "temperature",
}
METRIC_TRANSLATION: dict[str, Translation] = {
    **{metric: TRANSLATIONS[name] for metric, name in SHARED_METRICS.items()},
    **{metric: reading for k in KINDS for metric, reading in k.readings.items()},
}


def interpret(metric: str, value: Any) -> str:
    """What a number means to a person; "" for metrics without a translation band."""
    found = METRIC_TRANSLATION.get(metric)
    if found is None or not _is_number(value):
        return ""
    return found.text(float(value))


def interpret_expr(metric: str, value: pl.Expr) -> pl.Expr | None:
    """`interpret` for a whole column (None for metrics without a translation band): the report
    reads the meaning of some 100,000 figures at fleet scale, one Python call each took a visible
    part of its time. The bands are the same `Translation` objects, so both spellings agree:
    a band's index is how many bounds the value has reached (`bisect_right`: on a bound counts as
    reached when higher is better, `bisect_left`: passed only when above it otherwise). Null for
    a null or non-finite value, as `interpret` gives "" for them."""
    import polars as pl

    found = METRIC_TRANSLATION.get(metric)
    if found is None:
        return None
    reached = [(value >= bound) if found.higher_is_better else (value > bound) for bound in found.bounds]
    band = pl.sum_horizontal(reached) if reached else pl.lit(0)
    text = band.replace_strict(list(range(len(found.texts))), list(found.texts), return_dtype=pl.String)
    return pl.when(value.is_finite()).then(text)
