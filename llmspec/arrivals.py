"""When each request of an open-loop load run is sent: at a fixed rate or as a Poisson process.

A closed loop (a fixed number of users, each asking again as soon as answered) measures how the
server copes with N people; real traffic arrives on its own clock whether the server keeps up or
not, and a server that falls behind then builds a queue. `schedule` gives the send times (seconds
from the start) for `count` requests at `rate_per_s`: evenly spaced ("constant"), or with
exponentially distributed gaps ("poisson", seeded so a run can be repeated exactly).
"""

from __future__ import annotations

import random
from typing import Literal

Arrival = Literal["closed", "constant", "poisson"]


def schedule(arrival: Arrival, rate_per_s: float, count: int, seed: int = 42,
             duration_s: float | None = None) -> list[float]:
    """Send times of up to `count` requests, the first at 0; none after `duration_s` when given."""
    if rate_per_s <= 0:
        raise ValueError("rate_per_s must be positive")
    if arrival == "constant":
        times = [i / rate_per_s for i in range(count)]
    elif arrival == "poisson":
        rng, now, times = random.Random(seed), 0.0, []
        for _ in range(count):
            times.append(now)
            now += rng.expovariate(rate_per_s)
    else:
        raise ValueError(f"no schedule for a {arrival} loop")
    return [t for t in times if duration_s is None or t <= duration_s]


def gaps(times: list[float]) -> list[float]:
    """Inter-arrival times of sorted send times."""
    ordered = sorted(times)
    return [b - a for a, b in zip(ordered, ordered[1:])]
