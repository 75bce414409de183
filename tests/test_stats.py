"""The interval methods against distributions whose answer is known."""

import math
import random
import statistics

import pytest

from llmspec.stats import (
    Interval,
    bootstrap_interval,
    bootstrap_two_interval,
    bounded,
    changed,
    mcnemar_p,
    mean_interval,
    median_interval,
    percentile,
    percentile_interval,
    ratio_interval,
    rerun_interval,
    t_interval,
    t_quantile,
    variance_components,
    wilson_interval,
)


def coverage(make_interval, draw, truth, trials: int, seed: int = 1) -> float:
    rng = random.Random(seed)
    hits = 0
    for _ in range(trials):
        interval = make_interval(draw(rng))
        hits += interval.low <= truth <= interval.high
    return hits / trials


def test_median_interval_covers_the_true_median_95_percent_of_the_time_whatever_the_distribution():
    # Exponential (skewed, like request times): true median ln 2.
    found = coverage(median_interval, lambda rng: [rng.expovariate(1.0) for _ in range(20)], math.log(2), 2000)
    assert 0.94 <= found <= 0.98  # order statistics 6 and 15 of 20 give 95.9 %


def test_median_interval_uses_order_statistics_and_names_lower_coverage_for_few_samples():
    got = median_interval([5.0, 1.0, 4.0, 2.0, 3.0])
    assert (got.n, got.low, got.high) == (5, 1.0, 5.0)
    assert "94% coverage with n=5" in got.method  # no pair of ranks reaches 95 % below n = 6
    got = median_interval(list(range(1, 21)))
    assert (got.low, got.high) == (6, 15) and "coverage" not in got.method
    assert median_interval([1.0]) is None


def test_wilson_interval_matches_published_values():
    zero = wilson_interval(0, 10)
    assert zero.low == 0 and zero.high == pytest.approx(27.75, abs=0.01)
    half = wilson_interval(5, 10)
    assert (half.low, half.high) == (pytest.approx(23.66, abs=0.01), pytest.approx(76.34, abs=0.01))
    assert wilson_interval(20, 20).high == 100 and wilson_interval(0, 0) is None


def test_bootstrap_is_reproducible_and_covers_a_normal_mean():
    rng = random.Random(3)
    values = [rng.gauss(10, 2) for _ in range(30)]
    assert mean_interval(values) == mean_interval(values)
    found = coverage(mean_interval, lambda r: [r.gauss(10, 2) for _ in range(30)], 10.0, 100)
    assert 0.85 <= found <= 1.0  # the percentile bootstrap runs a little narrow at n = 30
    p90 = bootstrap_interval(values, lambda xs: statistics.quantiles(xs, n=10)[-1], "p90")
    assert p90.low < statistics.quantiles(values, n=10)[-1] < p90.high and "p90" in p90.method


def test_percentile_interval_covers_an_exponential_p90():
    # p90 of Exp(1) is ln 10; the percentile bootstrap of 60 latencies covers it about 90-95 % of the time.
    found = coverage(lambda xs: percentile_interval(xs, 90), lambda r: [r.expovariate(1.0) for _ in range(60)],
                     math.log(10), 100)  # 2,000 resamples each: 100 trials keep the suite fast
    assert 0.85 <= found <= 0.98
    values = [float(v) for v in range(1, 21)]
    assert percentile_interval(values, 50) == median_interval(values)  # the median: order statistics
    assert percentile_interval(values, 99).high == 20.0  # a bootstrap never reaches past the largest sample
    assert percentile_interval([1.0, 2.0], 90) is None  # too few to resample


def test_mcnemar_exact_p_values():
    # Two-sided binomial tails, B(n, 1/2): published exact McNemar values.
    assert mcnemar_p(0, 0) == 1.0  # no item told them apart
    assert mcnemar_p(5, 0) == pytest.approx(2 / 32)  # 0.0625: five one-sided items are not yet significant
    assert mcnemar_p(6, 0) == pytest.approx(2 / 64)  # 0.031
    assert mcnemar_p(0, 6) == mcnemar_p(6, 0)
    assert mcnemar_p(10, 2) == pytest.approx(2 * (1 + 12 + 66) / 4096)  # 0.0386
    assert mcnemar_p(3, 3) == 1.0
    assert percentile([4, 1, 3, 2], 50) == 2.5


def test_bounded_keeps_a_figure_inside_its_interval_and_both_inside_the_domain():
    below = Interval(10, -5e-6, -4e-8, "t")
    value, found = bounded(-2e-6, below, low=0.0)
    assert value == 0.0 and found.low == 0.0 and found.high == 0.0 and found.low <= value <= found.high
    value, found = bounded(99.9, Interval(10, 99.0, 100.4, "t"), 0.0, 100.0)
    assert (value, found.low, found.high) == (99.9, 99.0, 100.0)
    value, found = bounded(-0.0, None, low=0.0)
    assert found is None and math.copysign(1, value) == 1.0  # never printed as "-0"
    value, found = bounded(0.5, Interval(10, 0.2, 0.8, "t"), low=0.0)
    assert (value, found.low, found.high) == (0.5, 0.2, 0.8)  # inside the domain: untouched


def test_t_interval_covers_the_mean_of_few_starts_95_percent_of_the_time():
    """Three server starts of a normal figure: df = 2, t = 4.303; the normal's 1.96 would cover far less."""
    found = coverage(t_interval, lambda rng: [rng.gauss(100, 8) for _ in range(3)], 100.0, 2000)
    assert 0.935 <= found <= 0.965
    got = t_interval([1.0, 2.0, 3.0], "server starts")
    half = 4.303 / math.sqrt(3)  # stdev 1 over root 3, times t
    assert (got.n, got.low, got.high) == (3, pytest.approx(2 - half), pytest.approx(2 + half))
    assert got.method == "Student's t over 3 server starts" and t_interval([5.0]) is None


def test_t_quantile_matches_the_table_and_the_expansion_beyond_it():
    assert t_quantile(1) == 12.706 and t_quantile(30) == 2.042
    assert t_quantile(40) == pytest.approx(2.0211, abs=0.001) and t_quantile(120) == pytest.approx(1.9799, abs=0.001)
    with pytest.raises(ValueError):
        t_quantile(0)


def test_two_group_bootstrap_resamples_each_group_apart():
    """The difference of two normal means (truth 1.0) with 10 values a side, each group resampled on its own."""
    diff = lambda a, b: statistics.fmean(b) - statistics.fmean(a)  # noqa: E731
    found = coverage(lambda ab: bootstrap_two_interval(*ab, diff, "difference"),
                     lambda r: ([r.gauss(5, 1) for _ in range(10)], [r.gauss(6, 1) for _ in range(10)]), 1.0, 200)
    assert 0.85 <= found <= 1.0  # the percentile bootstrap runs a little narrow at n = 10
    assert bootstrap_two_interval([1.0], [2.0, 3.0], diff, "difference") is None


def test_variance_components_recover_known_within_and_between_start_spreads():
    """Starts whose means spread with sd 3 around 100, requests with sd 2 inside each: the method of
    moments recovers 9 and 4 on average; identical starts give no between part."""
    rng = random.Random(7)
    found = [variance_components([[m + rng.gauss(0, 2) for _ in range(rng.choice((3, 4, 5)))]
                                  for m in (rng.gauss(100, 3) for _ in range(8))]) for _ in range(400)]
    assert statistics.fmean(w for w, _ in found) == pytest.approx(4.0, rel=0.05)
    assert statistics.fmean(b for _, b in found) == pytest.approx(9.0, rel=0.15)
    assert variance_components([[1.0, 3.0], [1.0, 3.0]]) == (2.0, 0.0)
    assert variance_components([[1.0, 2.0]]) is None and variance_components([[1.0], [2.0]]) is None


def test_ratio_interval_covers_the_true_ratio_of_two_hosts_medians():
    """Two hosts' decode speeds (medians 100 and 50 t/s, different spreads), each with its own median
    interval: the ratio's interval from the two covers 2.0 about 95 % of the time."""
    def one(rng):
        a = [100 * math.exp(rng.gauss(0, 0.1)) for _ in range(30)]
        b = [50 * math.exp(rng.gauss(0, 0.2)) for _ in range(30)]
        ia, ib = median_interval(a), median_interval(b)
        return ratio_interval(statistics.median(a), (ia.low, ia.high), statistics.median(b), (ib.low, ib.high))

    assert 0.93 <= coverage(lambda r: r, one, 2.0, trials=1000, seed=7) <= 0.975


def test_ratio_interval_keeps_each_sides_width_and_needs_both_intervals():
    found = ratio_interval(100.0, (90.0, 120.0), 50.0, (50.0, 50.0))  # the denominator known exactly
    assert (found.low, found.high) == pytest.approx((1.8, 2.4)) and "delta method" in found.method
    swapped = ratio_interval(50.0, (50.0, 50.0), 100.0, (90.0, 120.0))
    assert (swapped.low, swapped.high) == pytest.approx((50 / 120, 50 / 90))  # the low end takes the high side
    assert ratio_interval(100.0, (None, None), 50.0, (45.0, 55.0)) is None
    assert ratio_interval(100.0, (0.0, 120.0), 50.0, (45.0, 55.0)) is None  # no logarithm of zero


def test_rerun_interval_holds_the_next_runs_mean_95_percent_of_the_time():
    """Issue #27: three starts of a normal figure, and a rerun of three more. The interval of the mean
    holds the rerun's mean only about 91 % of the time (83 % with many starts); the rerun interval
    (sqrt 2 wider) 95 %."""
    rng = random.Random(11)
    held = {t_interval: 0, rerun_interval: 0}
    trials = 2000
    for _ in range(trials):
        first, rerun = [rng.gauss(100, 8) for _ in range(3)], [rng.gauss(100, 8) for _ in range(3)]
        for method in held:
            held[method] += method(first).contains(statistics.fmean(rerun))
    assert 0.935 <= held[rerun_interval] / trials <= 0.965
    assert held[t_interval] / trials < 0.93
    got = rerun_interval([1.0, 2.0, 3.0], "server starts")
    half = 4.303 * math.sqrt(2 / 3)
    assert (got.n, got.low, got.high) == (3, pytest.approx(2 - half), pytest.approx(2 + half))
    assert "a rerun over 3 server starts lands here 95 % of the time" in got.method and rerun_interval([5.0]) is None


def test_a_change_between_rerun_intervals_is_each_figure_outside_the_others():
    """Two reruns of one normal figure over 3 starts each: `changed` on their rerun intervals calls a
    change at most 5 % of the time (the false alarms of a test at 95 %; about 1 % here), and a real
    shift of 3 sd of a start's figure more often than non-overlap of the same intervals would (about
    30 % against 8 %: three starts, df 2, know little)."""
    rng = random.Random(5)

    def called(shift: float, reruns: bool) -> float:
        hits = 0
        for _ in range(1000):
            a, b = [rng.gauss(100, 5) for _ in range(3)], [rng.gauss(100 + shift, 5) for _ in range(3)]
            ia, ib = rerun_interval(a), rerun_interval(b)
            hits += bool(changed(statistics.fmean(a), (ia.low, ia.high), statistics.fmean(b), (ib.low, ib.high),
                                 reruns))
        return hits / 1000

    assert called(0, True) <= 0.05
    assert called(15, True) > called(15, False)
    assert changed(1.0, (None, None), 2.0, (1.5, 2.5), True) is None
