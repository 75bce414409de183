"""Cells: the (model, quant, profile) units of measurement, in the order they should run.

Pure: no files are touched here, so ordering and naming are unit-tested without a server.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmspec.spec import Spec


@dataclass(frozen=True, order=True)
class Cell:
    spec: str
    model: str
    quant: str
    profile: str

    @property
    def task_name(self) -> str:
        return f"{self.spec}:{self.model}@{self.quant}:{self.profile}"

    @property
    def group(self) -> tuple[str, str]:
        """Cells of one group share one llama-server process."""
        return (self.model, self.quant)

    def result_path(self, results_dir: Path, host_dir: str) -> Path:
        return results_dir.joinpath(host_dir, self.spec, self.model, self.quant, f"{self.profile}.json")

    def as_dict(self) -> dict[str, str]:
        return {"spec": self.spec, "model": self.model, "quant": self.quant, "profile": self.profile}


def quant_rank(spec: Spec, quant: str) -> int:
    """Quant levels in the spec's traversal order (Q4_K_M first by default), others after."""
    order = list(spec.quant_order)
    return order.index(quant) if quant in order else len(order)


REMOTE = "remote"  # the quant column of an external endpoint's cells


def expand(spec: Spec) -> list[Cell]:
    """Every cell of the spec, ordered by quant level, then model size, then profile.

    Traversing by quant level first gets the most useful data (the Q4 baseline across sizes)
    earliest; cells of one (model, quant) stay adjacent so they share one server start.
    External endpoints come after the local models, and stress cells come last of all: which
    configuration gets stressed is decided from everyone else's results.
    """
    profiles = [p for p in spec.profiles.enabled() if p != "stress"]
    pairs = ordered_pairs(spec)
    local = [Cell(spec.name, model, quant, p) for model, quant in pairs for p in profiles]
    remote = [Cell(spec.name, e.name, REMOTE, p) for e in spec.endpoints for p in profiles if p in e.profiles]
    stress = [Cell(spec.name, m, q, "stress") for m, q in pairs] if spec.profiles.stress is not None else []
    return local + remote + stress


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
