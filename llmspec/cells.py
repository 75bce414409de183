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
        return results_dir / host_dir / self.spec / self.model / self.quant / f"{self.profile}.json"

    def as_dict(self) -> dict[str, str]:
        return {"spec": self.spec, "model": self.model, "quant": self.quant, "profile": self.profile}


def quant_rank(spec: Spec, quant: str) -> int:
    """Quant levels in the spec's traversal order (Q4_K_M first by default), others after."""
    order = list(spec.quant_order)
    return order.index(quant) if quant in order else len(order)


def expand(spec: Spec) -> list[Cell]:
    """Every cell of the spec, ordered by quant level, then model size, then profile.

    Traversing by quant level first gets the most useful data (the Q4 baseline across sizes)
    earliest; cells of one (model, quant) stay adjacent so they share one server start.
    """
    profiles = list(spec.profiles.enabled())
    pairs = [(m, q) for m in spec.models for q in m.quants]
    spec_index = {id(m): i for i, m in enumerate(spec.models)}

    def pair_key(pair):
        model, quant = pair
        size = model.params_b if model.params_b is not None else float("inf")
        return (quant_rank(spec, quant), _spec_quant_index(spec, quant), size, spec_index[id(model)])

    return [Cell(spec.name, m.name, q, p) for m, q in sorted(pairs, key=pair_key) for p in profiles]


def _spec_quant_index(spec: Spec, quant: str) -> int:
    """Quants not in quant_order keep the order they first appear in the spec."""
    seen: list[str] = []
    for model in spec.models:
        seen += [q for q in model.quants if q not in seen]
    return seen.index(quant)
