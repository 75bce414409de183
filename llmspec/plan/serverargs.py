"""The arguments a cell's llama-server runs with, as data: the planner decides them, the server
turns them into argv, and profiles read fields (slots, context per slot) instead of parsing argv."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServerArgs:
    """Everything that shapes a measurement (fingerprinted); model path and port are added at start.

    One slot per request in flight, and no prompt cache reuse between requests (each request
    also sends cache_prompt=false), so every measured prompt is processed from scratch. The RAM
    prompt cache is off too: by default llama-server keeps every finished prompt's KV state in
    RAM (up to 8 GiB), which grew RSS by ~8.5 MB per request here and would pass for a leak.
    `extra` is the spec's `server.extra_args`, passed as they are, after ours (so they win).
    """

    ctx_size: int
    threads: int
    parallel: int = 1
    extra: tuple[str, ...] = field(default_factory=tuple)
    tuned: tuple[str, ...] = field(default_factory=tuple)  # the spec's first-class [server] keys, as flags

    def argv(self) -> list[str]:
        return list(self._argv)

    @functools.cached_property
    def _argv(self) -> tuple[str, ...]:
        """Built once: every cell's fingerprint asks for it."""
        return ("--ctx-size", str(self.ctx_size), "--threads", str(self.threads), "--parallel", str(self.parallel),
                "--cache-ram", "0", "--no-webui", *self.tuned, *self.extra)

    def flag(self, *names: str) -> str | None:
        """The value given for a flag (by any of its names), the user's extra arguments winning."""
        args = (*self.tuned, *self.extra)
        pairs = dict(zip(args, args[1:]))
        return next((pairs[n] for n in reversed(names) if n in pairs), None)

    @property
    def cache_types(self) -> tuple[str | None, str | None]:
        """The KV cache types of K and V when set (None: llama-server's f16), for the memory estimate."""
        return self.flag("--cache-type-k", "-ctk"), self.flag("--cache-type-v", "-ctv")

    @property
    def ctx_per_slot(self) -> int:
        """llama-server divides --ctx-size among its --parallel slots."""
        return self.ctx_size // max(1, self.parallel)

    @property
    def prompt_cache_on(self) -> bool:
        """Whether the user's extra arguments turned llama-server's RAM prompt cache back on."""
        pairs = dict(zip(self.extra, self.extra[1:]))
        value = pairs.get("--cache-ram", pairs.get("-cram"))
        return value is not None and value != "0"
