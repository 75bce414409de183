"""Use-case profiles. Each module owns one profile and exposes `run(ctx) -> Outcome`.

A profile only measures; it never rates. It returns flat metrics with units in their names,
the raw samples they came from, and flags for anything a reader should distrust.
"""

from __future__ import annotations

import hashlib
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from pydantic import BaseModel

from llmspec.errors import CellError, UserError

if TYPE_CHECKING:  # the planner imports every profile on each `doit`; requests is 0.1 s of that
    from llmspec.client import ChatClient
    from llmspec.server import Server

CLOCK_DISAGREEMENT_PCT = 10.0


@dataclass
class Outcome:
    metrics: dict[str, float | None]
    samples: list[dict[str, Any]]
    flags: list[str] = field(default_factory=list)


@dataclass
class ProfileContext:
    """What a profile gets: a client bound to a ready server, its settings and a progress line.

    `server` is the managed llama-server (for RSS, swap, its pid and context size), or None for
    an external endpoint; `model_meta` is the GGUF metadata (context_length, ...) when known.
    """

    client: ChatClient
    settings: BaseModel
    root: Path
    progress: Callable[[str], None]
    server: Server | None = None
    model_meta: dict[str, Any] | None = None


def prompt_files(root: Path, folder: str, suffix: str = ".txt") -> list[Path]:
    path = Path(folder) if Path(folder).is_absolute() else root / folder
    files = sorted(path.glob(f"*{suffix}"))
    if not files:
        raise UserError(f"profiles: no {suffix} prompt files in {path}")
    return files


def files_digest(files: list[Path]) -> dict[str, str]:
    """Prompt files by name and content hash: editing a prompt re-measures the cells using it."""
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest()[:16] for f in files}


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def clock_check(client_value: float | None, server_value: float | None, what: str) -> tuple[float | None, list[str]]:
    """Percent by which our clock and the server's disagree, and a flag when over 10 percent."""
    if not client_value or not server_value:
        return None, []
    pct = abs(client_value - server_value) / server_value * 100
    flag = [f"{what}: client and server clocks disagree by {pct:.0f}% (over {CLOCK_DISAGREEMENT_PCT:g}%)"]
    return pct, flag if pct > CLOCK_DISAGREEMENT_PCT else []


def require_cache_miss(record) -> None:
    """A measured request that hit the prompt cache would report a fake-fast TTFT."""
    cache_n = (record.timings or {}).get("cache_n", 0)
    if cache_n:
        raise CellError(f"prompt cache hit (cache_n={cache_n}) on a measured request; refusing the number")
