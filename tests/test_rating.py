"""The rating bands and translations a user reads in every report."""

import json
import math
from pathlib import Path

import polars as pl
import pytest

from llmspec.profiles import KINDS, PROFILES
from llmspec.rating import (
    METRIC_TRANSLATION,
    Check,
    checks_json,
    interpret,
    interpret_expr,
    rate,
    rate_frame,
    rate_many,
    summary,
)
from llmspec.spec import Spec
from tests import rating_cases

# Defaults: min_tokens_per_s 2.0, max_ttft_s 30.0, max_itl_cv_pct 20.0
THRESHOLDS = Spec.model_validate(
    {"name": "t", "models": [{"name": "m", "quants": ["Q4_1"], "package": "x", "files": {"Q4_1": "x.gguf"}}]}
).thresholds


def metrics(tps=100.0, ttft=1.0, cv=5.0):
    return {"tokens_per_s": tps, "ttft_s": ttft, "itl_cv_pct": cv}


@pytest.mark.parametrize(
    ("values", "label"),
    [
        (metrics(), "Excellent"),
        (metrics(tps=3.0), "Excellent"),  # exactly +50%
        (metrics(tps=2.99), "Good"),
        (metrics(ttft=20.0), "Excellent"),  # 30/20 - 1 = +50%
        (metrics(ttft=25.0), "Good"),  # +20%
        (metrics(tps=2.4), "Good"),  # exactly +20%
        (metrics(tps=2.39), "Acceptable"),
        (metrics(tps=2.0), "Acceptable"),  # meets the minimum exactly
        (metrics(ttft=30.0), "Acceptable"),  # meets the maximum exactly
        (metrics(cv=25.0), "Poor"),  # only the non-critical metric misses
        (metrics(tps=1.9), "Failed"),  # critical: too slow
        (metrics(ttft=31.0), "Failed"),  # critical: first token too late
        (metrics(tps=1.0, cv=50.0), "Failed"),
    ],
)
def test_label_boundaries(values, label):
    assert rate("interactive", values, THRESHOLDS).label == label


def test_not_rated_without_thresholds_or_metrics():
    assert rate("no_such_profile", metrics(), THRESHOLDS).label is None
    assert rate("interactive", {}, THRESHOLDS).label is None
    assert rate("interactive", metrics(), {}).label is None


def test_unmeasurable_metric_is_left_unjudged_not_fatal():
    """No temperature sensor, say: the other metrics still decide the rating."""
    partial = rate("interactive", {"tokens_per_s": 50.0, "ttft_s": 1.0}, THRESHOLDS)
    assert partial.label == "Excellent"
    assert [c.name for c in partial.checks] == ["tokens_per_s", "ttft_s"]
    assert rate("interactive", {**metrics(tps=1.0), "ttft_s": None}, THRESHOLDS).label == "Failed"


def test_checks_carry_margins_and_directions():
    rating = rate("interactive", metrics(tps=4.0, ttft=10.0, cv=25.0), THRESHOLDS)
    by_name = {c.name: c for c in rating.checks}
    assert by_name["tokens_per_s"].direction == "min"
    assert by_name["tokens_per_s"].margin_pct == pytest.approx(100.0)
    assert by_name["ttft_s"].margin_pct == pytest.approx(200.0)
    assert by_name["itl_cv_pct"].margin_pct == pytest.approx(-20.0)
    assert not by_name["itl_cv_pct"].passed and not by_name["itl_cv_pct"].critical
    assert rating.label == "Poor"


def test_zero_value_under_a_max_threshold_is_infinitely_good_and_json_safe():
    rating = rate("interactive", metrics(cv=0.0), THRESHOLDS)
    check = next(c for c in rating.checks if c.name == "itl_cv_pct")
    assert math.isinf(check.margin_pct) and check.passed
    assert check.as_dict()["margin_pct"] is None
    assert rating.label == "Excellent"


def test_thresholds_may_be_a_plain_dict():
    limits = {"interactive": {"min_tokens_per_s": 50.0, "max_ttft_s": 30.0, "max_itl_cv_pct": 20.0}}
    assert rate("interactive", metrics(tps=40.0), limits).label == "Failed"


def test_rule_table_names_real_threshold_fields():
    """A typo in the table would silently turn every rating into "not rated"."""
    for kind in KINDS:
        fields = type(getattr(THRESHOLDS, kind.name)).model_fields
        assert {r.threshold for r in kind.rules} <= set(fields)
        assert {r.metric for r in kind.rules} <= set(kind.metrics)  # a rule on a metric the profile never writes
    assert PROFILES["interactive"].rated_metrics == ("tokens_per_s", "ttft_s", "itl_cv_pct")


@pytest.mark.parametrize(
    ("metric", "value", "text"),
    [
        ("tokens_per_s", 3, "Slow but readable, like careful dictation"),
        ("tokens_per_s", 2, "Slow but readable, like careful dictation"),
        ("tokens_per_s", 7, "Moderate pace, acceptable for patient users"),
        ("tokens_per_s", 12, "Comfortable reading speed"),
        ("server_tokens_per_s", 25, "Very fast, excellent UX"),
        ("tokens_per_s", 118.2, "Nearly instant for most prompts"),
        ("ttft_s", 0.05, "Feels instant, excellent UX"),
        ("ttft_s", 3, "Barely noticeable pause"),
        ("ttft_s", 30, "Significant wait, breaks flow"),
        ("ttft_s", 45, "Frustrating, unusable for interactive"),
        ("target_load_s", 45, "Coffee break territory"),
        ("peak_rss_gb", 7, "Room for other apps"),
        ("peak_rss_gb", 16, "Swapping likely, severe degradation"),
        ("docs_per_hour", 45, "Reasonable for moderate batches"),
        ("docs_per_hour", 200, "Excellent throughput"),
        ("max_temperature_c", 82, "Hot, ensure good airflow"),
        ("max_temperature_c", 95, "Too hot, reduce load"),
    ],
)
def test_interpret_follows_the_design_table(metric, value, text):
    assert interpret(metric, value) == text


def test_interpret_unknown_metric_or_missing_value_is_empty():
    assert interpret("itl_cv_pct", 10.0) == ""
    assert interpret("tokens_per_s", None) == ""


@pytest.mark.parametrize("metric", sorted(METRIC_TRANSLATION))
def test_the_reports_column_reading_says_what_interpret_says(metric):
    """The report reads whole columns (`interpret_expr`), the console and the charts one figure at a
    time: on every band bound, just either side of it, outside the bands and without a figure,
    both give the same words (none for a missing or non-finite figure)."""
    bands = METRIC_TRANSLATION[metric]
    values = [b + d for b in bands.bounds for d in (-1.0, -1e-9, 0.0, 1e-9, 1.0)]
    values += [-1e9, 0.0, 1e9, None, math.nan, math.inf, -math.inf]
    column = pl.DataFrame({"v": values}, schema={"v": pl.Float64})
    read = column.select(interpret_expr(metric, pl.col("v")).fill_null("")).to_series().to_list()
    assert read == [interpret(metric, v) for v in values]
    assert interpret_expr("itl_cv_pct", pl.col("v")) is None  # no bands: no reading


def test_negative_value_under_a_maximum_passes():
    """A batch that got faster (negative degradation) must not read as missing its maximum."""
    thresholds = {"batch": {"min_docs_per_hour": 600, "max_doc_time_cv_pct": 20, "max_degradation_pct": 10}}
    rating = rate("batch", {"docs_per_hour": 1059.0, "doc_time_cv_pct": 10.3, "degradation_pct": -0.06}, thresholds)
    assert rating.label == "Excellent"  # the worst margin is docs_per_hour's +76%, not the negative value
    assert all(c.passed for c in rating.checks)
    assert rate("batch", {"docs_per_hour": 1059.0, "doc_time_cv_pct": 10.3, "degradation_pct": 12.0},
                thresholds).label == "Poor"


def test_a_threshold_inside_the_interval_is_borderline_never_failed_nor_excellent():
    """min_tokens_per_s is 2.0: a median of 1.9 t/s whose interval reaches 2.3 misses only within
    its noise; 3.5 t/s whose interval reaches down to 1.8 may be below it on another run."""
    missed = rate("interactive", {**metrics(tps=1.9), "tokens_per_s:low": 1.6, "tokens_per_s:high": 2.3}, THRESHOLDS)
    assert missed.label == "Poor" and missed.checks[0].borderline and not missed.checks[0].passed
    assert "borderline: the threshold is inside its 95% interval" in missed.summary()
    passed = rate("interactive", {**metrics(tps=3.5), "tokens_per_s:low": 1.8, "tokens_per_s:high": 4.0}, THRESHOLDS)
    assert passed.label == "Acceptable" and passed.checks[0].as_dict()["borderline"] is True
    clear = rate("interactive", {**metrics(tps=3.5), "tokens_per_s:low": 3.2, "tokens_per_s:high": 4.0}, THRESHOLDS)
    assert clear.label == "Excellent" and not any(c.borderline for c in clear.checks)
    far = rate("interactive", {**metrics(tps=1.0), "tokens_per_s:low": 0.9, "tokens_per_s:high": 1.1}, THRESHOLDS)
    assert far.label == "Failed"  # missed beyond its noise


def test_a_share_with_a_ceiling_is_judged_on_what_is_missing_from_it():
    """92 % same top token against a 90 % minimum: 8 points missing of 10 allowed (+25 %), not +2 %."""
    found = rate("divergence", {"kld_mean": 0.03, "same_top_pct": 92.0},
                 {"divergence": {"max_kld_mean": 0.05, "min_same_top_pct": 90.0}})
    same = next(c for c in found.checks if c.name == "same_top_pct")
    assert same.margin_pct == 25.0 and found.label == "Good"
    assert rate("divergence", {"kld_mean": 0.0, "same_top_pct": 100.0},
                {"divergence": {"max_kld_mean": 0.05, "min_same_top_pct": 90.0}}).label == "Excellent"
    missed = rate("divergence", {"kld_mean": 0.01, "same_top_pct": 85.0},
                  {"divergence": {"max_kld_mean": 0.05, "min_same_top_pct": 90.0}})
    assert missed.label == "Poor" and not next(c for c in missed.checks if c.name == "same_top_pct").passed


PINNED = json.loads((Path(__file__).parent / "fixtures" / "rating" / "pinned.json").read_text())


def _as_pinned(label, checks) -> dict:
    return {"label": label, "checks": [(c if isinstance(c, Check) else Check(**c)).as_dict() for c in checks],
            "summary": summary(checks)}


def test_one_row_ratings_are_the_pinned_ones():
    """The planner's path (`rate`, one result at a time) gives, case for case, the labels, checks and
    summaries recorded from the per-row rating the vectorized one replaced (tests/rating_cases.py)."""
    got = [_as_pinned(r.label, r.checks) for r in (rate(p, m, THRESHOLDS) for p, m in rating_cases.cases())]
    assert len(got) == len(PINNED) == 520
    assert [g["label"] for g in got] == [p["label"] for p in PINNED]
    assert got == PINNED


def test_frame_ratings_are_the_pinned_ones_and_the_same_as_one_by_one():
    """The report's path (`rate_frame` over the whole frame, checks as JSON text for results.json)
    agrees with the pinned cases and with `rate_many`, so a report and the planner cannot disagree."""
    items = rating_cases.cases()
    names = sorted({n for p, m in items for n in m})
    frame = pl.DataFrame([pl.Series("profile", [p for p, _ in items]),
                          *(pl.Series(n, [m.get(n) if isinstance(m.get(n), float) else None for _, m in items],
                                      dtype=pl.Float64) for n in names)])
    rated = rate_frame(frame, THRESHOLDS)
    texts = rated.select(checks_json(pl.col("rating_checks"))).to_series().to_list()
    got = [_as_pinned(label, checks) for label, checks in rated.rows()]
    assert got == PINNED
    assert [json.loads(t) for t in texts] == [p["checks"] for p in PINNED]
    assert [_as_pinned(r.label, r.checks) for r in rate_many(items, THRESHOLDS)] == PINNED


def test_every_profile_is_rated_the_same_by_the_report_and_the_planner():
    """Profiles added after the recording (tool calls, structured answers, ...) have no pinned labels;
    what holds for them is that the report's vectorized rating and the planner's agree case for case."""
    items = rating_cases.cases(new=True)
    assert len(items) > len(PINNED)
    names = sorted({n for p, m in items for n in m})
    frame = pl.DataFrame([pl.Series("profile", [p for p, _ in items]),
                          *(pl.Series(n, [m.get(n) if isinstance(m.get(n), float) else None for _, m in items],
                                      dtype=pl.Float64) for n in names)])
    rated = rate_frame(frame, THRESHOLDS)
    one_by_one = [_as_pinned(r.label, r.checks) for r in rate_many(items, THRESHOLDS)]
    assert [_as_pinned(label, checks) for label, checks in rated.rows()] == one_by_one


def test_rows_that_are_not_finished_measurements_are_not_rated():
    frame = pl.DataFrame({"profile": ["interactive", "interactive"], "status": ["ok", "error"],
                          "tokens_per_s": [50.0, 50.0], "ttft_s": [1.0, 1.0]})
    rated = rate_frame(frame, THRESHOLDS, pl.col("status") == "ok")
    assert rated["rating"].to_list() == ["Excellent", None]
    assert rated["rating_checks"].list.len().to_list() == [2, 0]
