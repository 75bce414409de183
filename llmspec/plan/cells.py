"""Cells: the (model, quant, variant, profile) units of measurement, in the order they should run.

Pure: no files are touched here, so ordering and naming are unit-tested without a server.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from llmspec.machine.host import hardware
from llmspec.plan import variants
from llmspec.profiles import PROFILES
from llmspec.results import ResultPath
from llmspec.spec import Spec


@dataclass(frozen=True, order=True)
class Cell:
    """One (model, quant, variant, profile) of a spec. An endpoint's cells have `endpoint` set and
    "remote" in the quant slot of their names and paths (the result-file contract). `variant` is
    the server-setting variant's name (llmspec.plan.variants); "" without a sweep, and then names
    and paths are what they were before sweeps existed."""

    spec: str
    model: str
    quant: str
    profile: str
    endpoint: bool = False
    variant: str = ""

    @property
    def config(self) -> str:
        """`Q4_1` or `Q4_1+t2-fa`: the quant slot of task names and result paths."""
        return f"{self.quant}+{self.variant}" if self.variant else self.quant

    @property
    def task_name(self) -> str:
        return f"{self.spec}:{self.model}@{self.config}:{self.profile}"

    def location(self, host_dir: str) -> ResultPath:
        return ResultPath(host_dir, self.spec, self.model, self.config, self.profile)

    def result_path(self, results_dir: Path, host_dir: str) -> Path:
        return self.location(host_dir).under(results_dir)

    def as_dict(self) -> dict[str, str]:
        found = {"spec": self.spec, "model": self.model, "quant": self.quant, "profile": self.profile}
        return {**found, "variant": self.variant} if self.variant else found


def split_config(config: str) -> tuple[str, str]:
    """`Q4_1+t2-fa` -> (`Q4_1`, `t2-fa`); a quant or model name never holds a `+` (`ResultPath.config`)."""
    quant, _, variant = config.partition("+")
    return quant, variant


def quant_rank(spec: Spec, quant: str) -> int:
    """Quant levels in the spec's traversal order (Q4_K_M first by default), others after."""
    order = list(spec.quant_order)
    return order.index(quant) if quant in order else len(order)


REMOTE = "remote"  # the quant slot of an endpoint's cells, in task names and result paths


def expand(spec: Spec, cores: int | None = None) -> list[Cell]:
    """Every cell of the spec, ordered by quant level, then model size, then variant, then profile.

    Traversing by quant level first gets the most useful data (the Q4 baseline across sizes)
    earliest; cells of one (model, quant, variant) stay adjacent so they share one server start,
    and the variants of one (model, quant) run back to back, fewest threads first (the thread
    knee is decided from the counts before). A profile that starts no server (divergence) does
    not depend on server settings and runs once per (model, quant), with no variant.
    External endpoints come after the local models, and profiles that run `last` (stress) come
    last of all: which configuration they run on is decided from everyone else's results.
    `cores` (for `threads = "sweep"`) defaults to this machine's logical cores.
    """
    enabled = [PROFILES[name] for name in spec.profiles.enabled()]
    first, last = [k for k in enabled if not k.last], [k.name for k in enabled if k.last]
    names = [v.name for v in variants.expand(spec.server, cores or hardware()["cores_logical"])]
    pairs = ordered_pairs(spec)
    local = [Cell(spec.name, model, quant, k.name, variant=v)
             for model, quant in pairs
             for v in names for k in first if k.needs_server or v == names[0]]
    local = [replace(c, variant="") if not PROFILES[c.profile].needs_server else c for c in local]
    remote = [Cell(spec.name, e.name, REMOTE, k.name, endpoint=True) for e in spec.endpoints for k in first
              if k.name in e.profiles]
    return local + remote + [Cell(spec.name, m, q, p, variant=v) for p in last for m, q in pairs for v in names]


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
