"""How long the cells still to run will take, from how long cells took before.

A matrix run takes hours; the one thing a person watching it wants is "how much longer". Each
cell's estimate comes from the results already on this host, best basis first:

1. the same cell's earlier result (it is stale, not gone: a changed setting rarely changes the time much);
2. the same profile on the same model at another quant or variant, scaled by file size (a bigger
   file reads more bytes per token);
3. the same profile on any model of the spec, scaled by file size;
4. no basis: the estimate says so rather than guessing.

Bases 2 and 3 are also scaled by threads when a variant sets them: a cell at 1 thread estimated
from one measured at 2 takes about twice as long. Threads beyond the machine's cores run no faster,
so both counts are capped by the cores first.

Only finished measurements count (a skip takes no time; an error stopped early). Pure apart from
reading the stored results, which the plan already caches.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmspec.plan.cells import Cell
from llmspec.profiles import PROFILES


@dataclass(frozen=True)
class Estimate:
    seconds: float | None  # None: no basis
    basis: str  # "this cell before", "same model", "same profile", "no basis"


def estimate(plan, cell: Cell) -> Estimate:
    """One cell's expected duration (see module doc)."""
    own = plan.stored(cell)
    if own is not None and own.ok and own.duration_s > 0:
        return Estimate(own.duration_s, "this cell before")
    size = _size(plan, cell.model, cell.quant)
    same_model, same_profile = [], []
    for other in plan.cells:
        if other == cell or other.profile != cell.profile:
            continue
        found = plan.stored(other)
        if found is None or not found.ok or found.duration_s <= 0:
            continue
        other_size = (found.model_file or {}).get("size")
        scaled = found.duration_s * (size / other_size) if size and other_size else found.duration_s
        scaled *= _workers(plan, other.variant) / _workers(plan, cell.variant)
        (same_model if other.model == cell.model else same_profile).append(scaled)
    for values, basis in ((same_model, "same model"), (same_profile, "same profile")):
        if values:
            return Estimate(sorted(values)[len(values) // 2], basis)
    return Estimate(None, "no basis")


def total(plan, cells: list[Cell]) -> tuple[float, int]:
    """(seconds estimated, cells without a basis) over `cells`; a cell the planner skips takes none,
    nor does a `last` profile's cell on a configuration it did not choose (stress runs on one)."""
    found = [estimate(plan, cell) for cell in cells if not plan.decide(cell).skip
             and not (PROFILES[cell.profile].last and not plan.choice().picks(cell))]
    return sum(e.seconds for e in found if e.seconds is not None), sum(e.seconds is None for e in found)


def duration(seconds: float) -> str:
    """"40 s", "6 min", "2 h 5 min": as precise as an estimate deserves."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours} h {rest // 60} min"


def left(plan, cells: list[Cell], what: str = "left") -> str:
    """"about 6 min left" (or `what` instead of "left"), with how many cells have no basis yet."""
    return words(*total(plan, cells), what)


def words(seconds: float, unknown: int, what: str = "left") -> str:
    """`total`'s answer in words (see `left`)."""
    if unknown and not seconds:
        return "no basis for a time estimate yet (no finished cell of these profiles on this host)"
    text = f"about {duration(seconds)} {what}"
    return text + (f" (+ {unknown} cell{'s' if unknown > 1 else ''} with no basis yet)" if unknown else "")


def _workers(plan, variant: str) -> int:
    """The threads a variant's server computes with at once: its count, capped by the cores."""
    return max(1, min(plan.threads(variant), plan.cores))


def _size(plan, model: str, quant: str) -> int | None:
    return plan.evidence().sizes.get((model, quant))
