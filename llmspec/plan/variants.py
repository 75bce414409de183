"""Server-setting variants: every combination of a spec's `[server.sweep]` values.

A variant is the spec's `[server]` settings with one value of each swept key applied. Its name is
derived from what it sets (`t2-fa`: 2 threads, flash attention on), one part per key listed in the
sweep, a key with one value included: adding a second value to it later then adds variants
without renaming (and so re-measuring) the ones measured. Names read well in task names
(`<model>@<quant>+t2-fa`) and result paths (`<model>/<quant>+t2-fa/<profile>.json`). A spec
without a sweep has one variant named "" and keeps the names and paths it always had, unless its
[server] names an engine other than llama-server: then its one variant is named after the engine
(`<model>@<quant>+mistralrs`). An engine in the sweep is the first part of every name.

`threads = "sweep"` expands to 1, 2, 4, ... up to this machine's logical cores; the planner stops
measuring more threads past the knee (`knee`), where speed no longer improves beyond the noise.
Pure: the core count comes in as an argument.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

from llmspec.engines import DEFAULT, engine_named
from llmspec.engines.base import ServerArgs
from llmspec.spec import ServerSettings
from llmspec.stats import doubling

# The name part of each sweepable key, in the order names use.
NAME_PARTS = {
    "engine": lambda v: v,
    "threads": lambda v: f"t{v}",
    "batch_size": lambda v: f"b{v}",
    "ubatch_size": lambda v: f"ub{v}",
    "flash_attn": lambda v: {"on": "fa", "off": "nofa", "auto": "faauto"}[v],
    "cache_type_k": lambda v: f"k{v}",
    "cache_type_v": lambda v: f"v{v}",
    "n_gpu_layers": lambda v: f"ngl{v}",
    "mlock": lambda v: "mlock" if v else "nomlock",
    "no_mmap": lambda v: "nommap" if v else "mmap",
    "parallel": lambda v: f"p{v}",
    "reasoning_budget": lambda v: f"think{v}",
}


@dataclass(frozen=True)
class Variant:
    """One combination of swept values (`values`: every swept key, in NAME_PARTS order)."""

    name: str
    values: tuple[tuple[str, Any], ...]
    server: ServerSettings

    @property
    def label(self) -> str:
        """How reports name it: `+t2-fa`, or nothing for a spec without a sweep."""
        return f"+{self.name}" if self.name else ""

    @property
    def engine(self) -> str:
        return self.server.engine

    def flags(self) -> str:
        """The engine's flags that set this variant's swept values, as a user would type them."""
        return flags_of(dict(self.values), self.server)


def flags_of(values: dict[str, Any], server: ServerSettings) -> str:
    args = ServerArgs(server.ctx_size, server.threads or 1, server.parallel, tuple(server.extra_args), server.tuned(),
                      server.engine)
    return engine_named(server.engine).typed(values, args)


def named(server: ServerSettings, name: str) -> Variant | None:
    """The variant of `server` called `name`, on whichever host it ran (for `threads = "sweep"`,
    the thread count in the name says how far that host's steps went)."""
    threads = re.search(r"(?:^|-)t(\d+)(?:-|$)", name)
    cores = int(threads.group(1)) if threads else 1
    return next((v for v in expand(server, cores) if v.name == name), None)


def thread_steps(cores: int) -> list[int]:
    """1, 2, 4, ... below `cores`, then `cores` itself: the counts `threads = "sweep"` tries."""
    return doubling(cores)


def expand(server: ServerSettings, cores: int) -> list[Variant]:
    """Every variant of `server`, in sweep order (thread counts ascending, as the knee needs)."""
    if server.sweep is None:
        if server.engine != DEFAULT:
            return [Variant(server.engine, (("engine", server.engine),), server)]
        return [Variant("", (), server)]
    swept = {key: thread_steps(cores) if value == "sweep" else list(value)
             for key, value in server.sweep.swept().items()}
    base = server.model_dump(exclude={"sweep"})
    variants = []
    for combo in itertools.product(*swept.values()):
        values = tuple(zip(swept, combo))
        name = "-".join(NAME_PARTS[key](value) for key, value in values)
        variants.append(Variant(name, values, ServerSettings.model_validate({**base, **dict(values)})))
    return variants


def differs(variant: Variant, other: Variant, key: str) -> bool:
    return dict(variant.values).get(key) != dict(other.values).get(key)


def same_but_threads(variant: Variant, others: list[Variant]) -> list[Variant]:
    """The variants that differ from `variant` in the thread count alone, `variant` included,
    fewest threads first: one curve of the thread sweep."""
    rest = {k: v for k, v in variant.values if k != "threads"}
    curve = [o for o in others if {k: v for k, v in o.values if k != "threads"} == rest]
    return sorted(curve, key=lambda o: dict(o.values).get("threads", 0))


@dataclass(frozen=True)
class Point:
    """One measured step of a thread curve: the speed's median and its 95 % interval."""

    threads: int
    value: float
    low: float | None = None
    high: float | None = None


def knee(curve: list[Point]) -> Point | None:
    """The first step that was no faster than the one before beyond the noise, or None while
    every step still helped. "Beyond the noise" means the step's interval lies wholly above the
    previous step's; without intervals, above the previous median. More threads than the knee's
    are not measured: on a CPU past that point they fight over memory bandwidth and cores."""
    for before, step in itertools.pairwise(curve):
        low = step.low if step.low is not None else step.value
        high = before.high if before.high is not None else before.value
        if low <= high:
            return step
    return None
