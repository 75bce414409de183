"""Cells: the (model, quant, profile) units of measurement, in the order they should run.

Pure: no files are touched here, so ordering and naming are unit-tested without a server.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmspec.profiles import PROFILES
from llmspec.spec import Spec


@dataclass(frozen=True, order=True)
class Cell:
    """One (model, quant, profile) of a spec. An endpoint's cells have `endpoint` set and
    "remote" in the quant slot of their names and paths (the result-file contract)."""

    spec: str
    model: str
    quant: str
    profile: str
    endpoint: bool = False

    @property
    def task_name(self) -> str:
        return f"{self.spec}:{self.model}@{self.quant}:{self.profile}"

    def result_path(self, results_dir: Path, host_dir: str) -> Path:
        return results_dir.joinpath(host_dir, self.spec, self.model, self.quant, f"{self.profile}.json")

    def as_dict(self) -> dict[str, str]:
        return {"spec": self.spec, "model": self.model, "quant": self.quant, "profile": self.profile}


def quant_rank(spec: Spec, quant: str) -> int:
    """Quant levels in the spec's traversal order (Q4_K_M first by default), others after."""
    order = list(spec.quant_order)
    return order.index(quant) if quant in order else len(order)


REMOTE = "remote"  # the quant slot of an endpoint's cells, in task names and result paths


def expand(spec: Spec) -> list[Cell]:
    """Every cell of the spec, ordered by quant level, then model size, then profile.

    Traversing by quant level first gets the most useful data (the Q4 baseline across sizes)
    earliest; cells of one (model, quant) stay adjacent so they share one server start.
    External endpoints come after the local models, and profiles that run `last` (stress) come
    last of all: which configuration they run on is decided from everyone else's results.
    """
    enabled = [PROFILES[name] for name in spec.profiles.enabled()]
    first, last = [k.name for k in enabled if not k.last], [k.name for k in enabled if k.last]
    pairs = ordered_pairs(spec)
    local = [Cell(spec.name, model, quant, p) for model, quant in pairs for p in first]
    remote = [Cell(spec.name, e.name, REMOTE, p, endpoint=True) for e in spec.endpoints for p in first
              if p in e.profiles]
    return local + remote + [Cell(spec.name, m, q, p) for p in last for m, q in pairs]


def ordered_pairs(spec: Spec) -> list[tuple[str, str]]:
    """(model, quant) in traversal order: quant level, then size (unknown sizes last), then spec order."""
    first_seen: dict[str, int] = {}
    for model in spec.models:
        for quant in model.quants:
            first_seen.setdefault(quant, len(first_seen))

    def key(item):
        index, model, quant = item
        size = model.params_b if model.params_b is not None else float("inf")
        return (quant_rank(spec, quant), first_seen[quant], size, index)

    quick = spec.planner.mode == "quick"
    items = [(i, m, q) for i, m in enumerate(spec.models) for q in m.quants
             if not quick or q in spec.planner.quick_quants]
    return [(m.name, q) for _, m, q in sorted(items, key=key)]
