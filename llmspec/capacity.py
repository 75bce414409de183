"""Capacity: how many people one server can serve at the user's service level.

A *service level* is the spec's `[thresholds.load]` read as a promise to each user: p90 time to
first token, p90 latency, each user's own generation speed, and the share of failed requests. A
*level* is one load run at a fixed number of users in flight (or a fixed arrival rate); its
figures come from `level_figures`. The answer, `max_users`, is the largest number of users at
which this level and every smaller one kept the promise: a box that copes with 4 but not 2
(noise, a hiccup) is not trusted with 4.

Pure functions: the load profile uses them to decide when a "sweep" stops and what to store, and
the report uses the same ones to re-judge stored levels against today's thresholds.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from llmspec.stats import percentile

PERCENTILES = (50, 90, 99)
# The per-level figures, stored flat as `<name>_at_<users>` (like long_context's `load_s_<size>`).
LEVEL_FIGURES = ("requests_per_s", "output_tokens_per_s", "tokens_per_s_per_user", "error_pct", "goodput_per_s",
                 *(f"p{p}_{what}_s" for what in ("ttft", "latency") for p in PERCENTILES))


@dataclass(frozen=True)
class ServiceLevel:
    """What each user is promised; a None limit is no promise."""

    max_p90_ttft_s: float | None = None
    max_p90_latency_s: float | None = None
    min_tokens_per_s_per_user: float | None = None
    max_error_pct: float | None = None

    @classmethod
    def of(cls, thresholds: Any) -> ServiceLevel:
        """From `[thresholds.load]` (its fields of the same names)."""
        return cls(*(getattr(thresholds, name, None) for name in cls.__dataclass_fields__))

    def misses(self, figures: Mapping[str, float | None]) -> list[str]:
        """The promises a level's figures broke, in words; [] when it kept every one."""
        out = []
        for name, limit, figure, below in (
                ("p90 TTFT", self.max_p90_ttft_s, figures.get("p90_ttft_s"), False),
                ("p90 latency", self.max_p90_latency_s, figures.get("p90_latency_s"), False),
                ("tokens/s per user", self.min_tokens_per_s_per_user, figures.get("tokens_per_s_per_user"), True),
                ("errors", self.max_error_pct, figures.get("error_pct"), False)):
            if limit is None:
                continue
            if figure is None:
                out.append(f"{name} not measured")
            elif (figure < limit) if below else (figure > limit):
                unit = "%" if name == "errors" else "" if "tokens" in name else " s"
                out.append(f"{name} {figure:.3g}{unit} {'<' if below else '>'} {limit:g}{unit}")
        return out

    def request_ok(self, ttft_s: float | None, latency_s: float, tokens_per_s: float | None) -> bool:
        """Whether one answer met the promise on its own (what goodput counts)."""
        if self.max_p90_ttft_s is not None and (ttft_s is None or ttft_s > self.max_p90_ttft_s):
            return False
        if self.max_p90_latency_s is not None and latency_s > self.max_p90_latency_s:
            return False
        limit = self.min_tokens_per_s_per_user
        return limit is None or (tokens_per_s is not None and tokens_per_s >= limit)

    def text(self) -> str:
        """"p90 TTFT <= 2 s and >= 10 tokens/s each"."""
        parts = [f"p90 TTFT <= {self.max_p90_ttft_s:g} s" if self.max_p90_ttft_s is not None else "",
                 f"p90 latency <= {self.max_p90_latency_s:g} s" if self.max_p90_latency_s is not None else "",
                 f">= {self.min_tokens_per_s_per_user:g} tokens/s each" if self.min_tokens_per_s_per_user else "",
                 f"<= {self.max_error_pct:g}% errors" if self.max_error_pct is not None else ""]
        parts = [p for p in parts if p]
        return " and ".join([", ".join(parts[:-1]), parts[-1]] if len(parts) > 1 else parts)


def level_figures(answers: Iterable[Any], wall_s: float, slo: ServiceLevel) -> dict[str, float | None]:
    """One level's figures from its answers (llmspec.run.load.Answer): throughput over the run's
    wall time, percentiles of what each user waited, each user's decode speed (median), errors, and
    goodput (answers that met the service level on their own, per second)."""
    answers = list(answers)
    ok = [a for a in answers if a.ok]
    latencies = [a.latency_s for a in ok]
    ttfts = [a.record.ttft_s for a in ok if a.record.ttft_s is not None]
    speeds = sorted(s for a in ok if (s := a.record.decode_tokens_per_s()) is not None)
    good = sum(slo.request_ok(a.record.ttft_s, a.latency_s, a.record.decode_tokens_per_s()) for a in ok)
    per_s = (lambda n: n / wall_s) if wall_s > 0 else (lambda n: None)
    return {
        "requests_per_s": per_s(len(ok)),
        "output_tokens_per_s": per_s(sum(a.tokens for a in ok)),
        "tokens_per_s_per_user": percentile(speeds, 50),
        "error_pct": 100 * (len(answers) - len(ok)) / len(answers) if answers else None,
        "goodput_per_s": per_s(good),
        **{f"p{p}_latency_s": percentile(latencies, p) for p in PERCENTILES},
        **{f"p{p}_ttft_s": percentile(ttfts, p) for p in PERCENTILES},
    }


def flat(users: int, figures: Mapping[str, float | None]) -> dict[str, float]:
    """A level's figures as result metrics: `p90_ttft_s_at_4`, ... (None left out)."""
    return {f"{name}_at_{users}": value for name, value in figures.items() if value is not None}


def levels_of(metrics: Mapping[str, Any]) -> dict[int, dict[str, float | None]]:
    """The levels back from flat metrics (a result's, or a report row's), fewest users first."""
    found: dict[int, dict[str, float | None]] = {}
    for key, users, name in _level_keys(tuple(metrics)):
        if (value := metrics[key]) is not None:
            found.setdefault(users, {})[name] = value
    return dict(sorted(found.items()))


def level_columns(names: Iterable[str]) -> list[str]:
    """The names among `names` that hold a level's figure (`p90_ttft_s_at_4`): all `levels_of` reads
    of a frame's row, so a report need not turn the other hundred metrics of a row into Python."""
    return [name for name in names if level_key(name) is not None]


@functools.lru_cache(maxsize=64)
def _level_keys(keys: tuple[str, ...]) -> tuple[tuple[str, int, str], ...]:
    """The level metrics among `keys` as (name, users, figure), in their order. A report reads the
    levels of 6,300 load rows at fleet scale, and the rows of one frame share their keys (~100, a
    tenth of them levels'): each key set is scanned once, each row reads only its level keys."""
    return tuple((key, *level) for key in keys if (level := level_key(key)) is not None)


@functools.cache
def level_key(key: str) -> tuple[int, str] | None:
    """(users, figure) of a flat level metric's name, else None. A report reads the levels of every
    load row three times (re-rating, capacity words, chart): 6,300 rows of ~100 keys at fleet scale,
    where splitting each name again was half a second; the names repeat, so each is split once."""
    name, sep, users = key.rpartition("_at_")
    return (int(users), name) if sep and users.isdigit() and name in LEVEL_FIGURES else None


def max_users(levels: Mapping[int, Mapping[str, float | None]], slo: ServiceLevel) -> int:
    """The largest number of users at which that level and every smaller one kept the service level
    (0: not even the fewest measured)."""
    best = 0
    for users in sorted(levels):
        if slo.misses(levels[users]):
            break
        best = users
    return best


def sentence(users: int, slo: ServiceLevel, levels: Mapping[int, Mapping[str, float | None]]) -> str:
    """"up to 4 concurrent users with p90 TTFT <= 2 s and >= 10 tokens/s each (2 of 3 levels kept it)"."""
    if not levels:
        return "no load level measured"
    if users == 0:
        fewest = min(levels)
        return (f"not even {fewest} concurrent user{'s' if fewest > 1 else ''} with {slo.text()} "
                f"({'; '.join(slo.misses(levels[fewest]))})")
    broken = next((u for u in sorted(levels) if u > users), None)
    tail = f"; at {broken}: {'; '.join(slo.misses(levels[broken]))}" if broken is not None else \
        f"; {max(levels)} was the most measured"
    return f"up to {users} concurrent user{'s' if users > 1 else ''} with {slo.text()}{tail}"
