"""How sure a figure is: 95 % intervals from repeated samples, each method named (docs/measuring.md).

- A median (tokens/s, TTFT over requests): distribution-free, from order statistics. The
  interval [x(k), x(n-k+1)] of the sorted samples covers the true median with a probability
  that follows from the binomial distribution alone, whatever the samples' distribution; k is
  the largest rank for which that coverage is still at least 95 %. Below 6 samples no pair of
  ranks reaches 95 %, so min-max is given with its own, lower coverage named in `method`.
- A proportion (a quality category's share of correct items): Wilson's score interval, which
  stays inside 0-100 % and behaves at 0 and n correct, unlike the normal approximation.
- A percentile other than the median (p90 latency) or a mean: a bootstrap with a fixed seed
  (2,000 resamples, percentile method), so the same samples always give the same interval.
- A comparison of two groups of the same run (the first documents of a batch against the last):
  a bootstrap that resamples each group on its own (`bootstrap_two_interval`), so each side keeps
  its size and the statistic's spread is what another draw of such groups would give.
- A figure measured on several server starts (`t_interval`): the mean of the per-start figures
  with Student's t on their spread, df = starts - 1. Requests inside one start share that start's
  luck (thread placement, memory layout), so they are not independent draws of the next run;
  the start means are, and only an interval over them holds a rerun's figure.
- Where a rerun's figure lands (`rerun_interval`): a 95 % interval of the mean of k start figures
  covers the true mean 95 % of the time, but the NEXT run's mean less often, even when exact: the
  rerun has its own error, and the difference of two means of k has sqrt(2) times the standard
  error (about 91 % with 3 starts, 83 % with many). The prediction interval
  mean +- t(k-1) * s * sqrt(1/k + 1/k) holds an independent rerun of the same k starts 95 % of
  the time; it is what a figure that "a rerun lands in" must print (issue #27).

- A ratio of two independent figures that each carry a stored 95 % interval (one host's speed
  over another's, `ratio_interval`): the delta method on the log scale. Each side's half-width
  in logs (ln value - ln low, ln high - ln value) is taken as 1.96 standard errors on that side,
  and the two figures' half-widths add in quadrature: the ratio's low end takes the numerator's
  low side and the denominator's high side. Only the stored intervals are needed, not the samples
  (a report does not read them), and an asymmetric interval (a median's) stays asymmetric.

- A paired comparison of two configurations on the same quality items: the exact McNemar test
  (a two-sided binomial test on the items only one of them got right), so "lost N points" is
  said only when chance alone would rarely produce that many one-sided disagreements.

Every interval function returns an `Interval` or None when there are too few samples to say anything.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95
Z95 = 1.959963984540054
BOOTSTRAP_RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    n: int
    low: float
    high: float
    method: str
    coverage: float = CONFIDENCE  # below 95 % only for a median of fewer than 6 samples (named in `method`)
    # set when the interval is over that many server starts: it holds a rerun's figure (calibrated, issue #27);
    # None: it is over samples of one run, which a rerun on a fresh server can leave
    starts: int | None = None

    def as_dict(self) -> dict:
        found = {"n": self.n, "low": self.low, "high": self.high, "method": self.method}
        return found if self.starts is None else {**found, "starts": self.starts}

    def half_width_pct(self, center: float) -> float | None:
        """Half the interval's width as a percent of `center`: the figure's relative precision."""
        return (self.high - self.low) / 2 / abs(center) * 100 if center else None

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


def bounded(value: float, interval: Interval | None, low: float | None = None,
            high: float | None = None) -> tuple[float, Interval | None]:
    """A figure and its interval kept to the figure's domain by one rule, so they always agree.

    A tool's estimate can fall just outside what the quantity allows (llama-perplexity prints a
    KL divergence of -0.000002 for a reference against its own 16-bit logits; a divergence is never
    negative). Clamping only the interval would leave the figure outside it; clamping only the
    figure would leave the interval below the domain. Both are clamped here, the figure last, and
    the interval widened to hold it; `-0.0` becomes `0.0` so nothing prints as "-0".
    """

    def clamp(x: float) -> float:
        if low is not None and x < low:
            x = low
        if high is not None and x > high:
            x = high
        return x + 0.0  # -0.0 -> 0.0

    value = clamp(value)
    if interval is None:
        return value, None
    lo, hi = clamp(interval.low), clamp(interval.high)
    return value, Interval(interval.n, min(lo, value), max(hi, value), interval.method, interval.coverage,
                           interval.starts)


def _binom_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2)."""
    return sum(math.comb(n, i) for i in range(k + 1)) / 2**n


def median_interval(values: Sequence[float]) -> Interval | None:
    """Distribution-free 95 % interval for the median (see module doc)."""
    xs = sorted(v for v in values if v is not None)
    n = len(xs)
    if n < 2:
        return None
    best, coverage = 1, 1 - 2 * _binom_cdf(0, n)  # 1-based rank of the lower bound; min-max at least
    below, term, total = 0, 1, 2**n  # sum of C(n, i) for i < k; C(n, k - 1)
    for k in range(1, n // 2 + 1):  # coverage falls as k grows: the last k that holds it is the first miss - 1
        below += term
        term = term * (n - k + 1) // k
        if 1 - 2 * (below / total) < CONFIDENCE:
            break
        best, coverage = k, 1 - 2 * (below / total)
    method = "distribution-free median (order statistics)"
    if coverage < CONFIDENCE:
        method += f", {coverage:.0%} coverage with n={n}"
    return Interval(n, xs[best - 1], xs[n - best], method, coverage)


def wilson_interval(successes: int, n: int) -> Interval | None:
    """95 % Wilson score interval for a proportion, in percent."""
    if n <= 0:
        return None
    p, z2 = successes / n, Z95**2
    center = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return Interval(n, max(0.0, center - half) * 100, min(1.0, center + half) * 100, "Wilson score (binomial)")


def bootstrap_interval(values: Sequence[float], statistic: Callable[[list[float]], float],
                       what: str, seed: int = 0) -> Interval | None:
    """95 % percentile-bootstrap interval of `statistic` over `values`, reproducible (fixed seed)."""
    xs = [v for v in values if v is not None]
    if len(xs) < 3:
        return None
    rng = random.Random(seed)
    stats = sorted(statistic([rng.choice(xs) for _ in xs]) for _ in range(BOOTSTRAP_RESAMPLES))
    lo = stats[int(BOOTSTRAP_RESAMPLES * (1 - CONFIDENCE) / 2)]
    hi = stats[int(BOOTSTRAP_RESAMPLES * (1 + CONFIDENCE) / 2) - 1]
    return Interval(len(xs), lo, hi, f"bootstrap ({BOOTSTRAP_RESAMPLES} resamples) of the {what}")


def bootstrap_two_interval(first: Sequence[float], second: Sequence[float],
                           statistic: Callable[[list[float], list[float]], float | None], what: str,
                           seed: int = 0) -> Interval | None:
    """95 % percentile-bootstrap interval of `statistic(first, second)`, each group resampled on its
    own (a stratified bootstrap, fixed seed). Needs two values in each group: with one there is no
    spread to resample. `n` is the smaller group's size; below 5 a side, the method says so (a
    bootstrap of so few values runs narrow)."""
    a, b = [v for v in first if v is not None], [v for v in second if v is not None]
    if min(len(a), len(b)) < 2:
        return None
    rng = random.Random(seed)
    draws = (statistic([rng.choice(a) for _ in a], [rng.choice(b) for _ in b]) for _ in range(BOOTSTRAP_RESAMPLES))
    stats = sorted(x for x in draws if x is not None)
    if len(stats) < BOOTSTRAP_RESAMPLES:
        return None
    n = min(len(a), len(b))
    lo = stats[int(BOOTSTRAP_RESAMPLES * (1 - CONFIDENCE) / 2)]
    hi = stats[int(BOOTSTRAP_RESAMPLES * (1 + CONFIDENCE) / 2) - 1]
    rough = f", only {n} a side: runs narrow" if n < 5 else ""
    return Interval(n, lo, hi, f"bootstrap ({BOOTSTRAP_RESAMPLES} resamples, each group apart) of the {what}{rough}")


# Student's t, two-sided 95 % (the 0.975 quantile), for 1-30 degrees of freedom.
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t_quantile(df: int) -> float:
    """The two-sided 95 % quantile of Student's t; beyond the table, the Cornish-Fisher expansion
    around the normal's (within 0.001 of the exact value at df > 30)."""
    if df < 1:
        raise ValueError("t needs at least one degree of freedom")
    if df <= len(T975):
        return T975[df - 1]
    z = Z95
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def t_interval(means: Sequence[float], what: str = "mean") -> Interval | None:
    """95 % Student's t interval of the mean of `means` (one figure per server start, say): the
    between-start spread is all it reads, so it holds what a fresh start would give."""
    xs = [v for v in means if v is not None]
    if len(xs) < 2:
        return None
    center, half = statistics.fmean(xs), t_quantile(len(xs) - 1) * statistics.stdev(xs) / math.sqrt(len(xs))
    return Interval(len(xs), center - half, center + half, f"Student's t over {len(xs)} {what}")


def rerun_interval(means: Sequence[float], what: str = "values") -> Interval | None:
    """95 % prediction interval for the mean of an independent rerun of as many values as `means`
    (one figure per server start, say): Student's t on their spread, df = k - 1, times
    sqrt(1/k + 1/k), since the rerun's mean carries its own error beside this one's (module doc)."""
    xs = [v for v in means if v is not None]
    if len(xs) < 2:
        return None
    k = len(xs)
    center, half = statistics.fmean(xs), t_quantile(k - 1) * statistics.stdev(xs) * math.sqrt(2 / k)
    return Interval(k, center - half, center + half,
                    f"rerun interval: a rerun over {k} {what} lands here 95 % of the time (Student's t, df {k - 1})")


def variance_components(groups: Sequence[Sequence[float]]) -> tuple[float, float] | None:
    """(within-group variance, between-group variance) of values measured in groups (requests within
    server starts): the one-way random-effects analysis of variance, method of moments, unbalanced
    groups allowed (n0 = (N - sum n_i^2 / N) / (k - 1)). The between part is what the group means
    spread beyond what their own requests' noise explains, floored at 0. None with fewer than two
    groups or no group of two values."""
    gs = [[v for v in g if v is not None] for g in groups]
    gs = [g for g in gs if g]
    total = sum(len(g) for g in gs)
    if len(gs) < 2 or total - len(gs) < 1:
        return None
    grand = sum(sum(g) for g in gs) / total
    within = sum((v - statistics.fmean(g)) ** 2 for g in gs for v in g) / (total - len(gs))
    between_ms = sum(len(g) * (statistics.fmean(g) - grand) ** 2 for g in gs) / (len(gs) - 1)
    n0 = (total - sum(len(g) ** 2 for g in gs) / total) / (len(gs) - 1)
    return within, max(0.0, (between_ms - within) / n0)


def mean_interval(values: Sequence[float]) -> Interval | None:
    return bootstrap_interval(values, statistics.fmean, "mean")


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default), so p50 of [1, 2] is 1.5."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def percentile_interval(values: Sequence[float], pct: float) -> Interval | None:
    """95 % interval of a percentile: distribution-free for the median, bootstrap for the others.

    A bootstrap cannot reach beyond the largest sample, so the interval of a p99 from 20
    requests is at best [p-something, max]: honest about the data, narrower than the truth.
    """
    if pct == 50:
        return median_interval(values)
    return bootstrap_interval(values, lambda xs: percentile(xs, pct), f"p{pct:g}")


def mcnemar_p(only_first: int, only_second: int) -> float:
    """Two-sided exact McNemar p-value for paired right/wrong outcomes on the same items.

    `only_first`: items the first configuration got right and the second wrong; `only_second`
    the reverse. Items both got right or both wrong say nothing about which is better. Under
    "no difference" each discordant item is a fair coin, so the p-value is a binomial tail.
    """
    n = only_first + only_second
    if n == 0:
        return 1.0
    return min(1.0, 2 * _binom_cdf(min(only_first, only_second), n))


def doubling(cap: int) -> list[int]:
    """1, 2, 4, ... below `cap`, then `cap` itself: the ladder both sweeps climb (thread counts up
    to the cores, users up to the most slots), stopping early where the figures say so."""
    steps, n = [], 1
    while n < cap:
        steps.append(n)
        n *= 2
    return [*steps, max(1, cap)]


RATIO_METHOD = "delta method on the log scale, from the two stored 95 % intervals"


def ratio_interval(a: float, a_bounds: tuple[float | None, float | None], b: float,
                   b_bounds: tuple[float | None, float | None]) -> Interval | None:
    """The 95 % interval of a / b from each figure's own interval (see the module's docstring);
    None when either has none, or a figure or bound is not above zero (no logarithm)."""
    values = (a, *a_bounds, b, *b_bounds)
    if any(v is None or v <= 0 for v in values):
        return None
    (a_low, a_high), (b_low, b_high) = a_bounds, b_bounds
    down = math.hypot(max(0.0, math.log(a / a_low)), max(0.0, math.log(b_high / b)))
    up = math.hypot(max(0.0, math.log(a_high / a)), max(0.0, math.log(b / b_low)))
    ratio = a / b
    return Interval(2, ratio * math.exp(-down), ratio * math.exp(up), RATIO_METHOD)


def changed(a: float, a_bounds: tuple[float | None, float | None], b: float,
            b_bounds: tuple[float | None, float | None], reruns: bool) -> bool | None:
    """Whether figure `b` differs from figure `a` beyond the noise. With `reruns` (both intervals are
    rerun intervals, `rerun_interval`: where an independent rerun lands 95 % of the time) each figure
    must lie outside the other's interval, a test at the 5 % level each way; two rerun intervals that
    merely do not overlap would ask for a change of twice that. Otherwise (intervals of a figure's
    own estimate) the two intervals must not overlap (`apart`). None when either has no interval."""
    if not reruns:
        return apart(a_bounds, b_bounds)
    if None in (*a_bounds, *b_bounds):
        return None
    outside = lambda v, lo, hi: v < lo or v > hi  # noqa: E731
    return outside(b, *a_bounds) and outside(a, *b_bounds)  # type: ignore[arg-type]


def apart(a: tuple[float | None, float | None], b: tuple[float | None, float | None]) -> bool | None:
    """Whether two figures' 95 % intervals (low, high) do not overlap: a difference beyond the noise.
    None when either figure has no interval, so nothing can be said either way."""
    if None in (*a, *b):
        return None
    return a[1] < b[0] or b[1] < a[0]  # type: ignore[operator]
