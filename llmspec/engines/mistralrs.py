"""mistral.rs (Rust, candle kernels): a second engine for the same GGUF file, from PyPI's `mistralrs`.

Chosen over llama-cpp-python[server] because it is a different engine, not llama.cpp again behind
another HTTP layer, and because it installs as a prebuilt CPU wheel (26 MB) in seconds where
llama-cpp-python compiles llama.cpp a second time (8-15 minutes on 2 cores). The wheel ships the
engine as a Python library without an HTTP server, so llmspec runs it behind its own minimal
OpenAI-compatible shim (`llmspec.engines.mistralrs_serve`), started and stopped like llama-server.
Every timing figure comes from mistral.rs itself (its `usage` block); what it cannot report
(cached prompt tokens) is left missing, never zero.

Its prefix cache is turned off in the shim, so every measured prompt is processed from scratch as
on llama-server; it has no fixed slots (`--max-seqs` caps concurrent sequences), no quantised KV
cache and no layer offload setting on the CPU build: a variant that sets those is a skip.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from typing import Any, ClassVar

from llmspec.engines.base import (
    ENGINE_CLOCK,
    JSON_SCHEMA,
    PROMPT_CACHE_CONTROL,
    TOKENIZE,
    TOOL_CALLS,
    Engine,
    ServerArgs,
    Timings,
)
from llmspec.errors import UserError


class MistralRs(Engine):
    name: ClassVar[str] = "mistralrs"
    summary: ClassVar[str] = "mistral.rs (Rust, candle kernels) through PyPI's mistralrs wheel"
    program: ClassVar[str] = "python"  # with -m llmspec.engines.mistralrs_serve
    install_hint: ClassVar[str] = "install it with `pip install 'llmspec[engines]'` (PyPI package mistralrs)"
    supports: ClassVar[frozenset[str]] = frozenset({PROMPT_CACHE_CONTROL, TOKENIZE, ENGINE_CLOCK, TOOL_CALLS,
                                                    JSON_SCHEMA})
    overhead_bytes: ClassVar[float] = 300e6  # the Python interpreter and the shim beside the engine

    def find_binary(self, configured: str | None = None) -> Path:
        """The Python that can import mistralrs: this one (the spec's `server.binary` is llama-server's)."""
        if importlib.util.find_spec("mistralrs") is None:
            raise UserError(f"mistralrs is not installed ({self.name} engine): {self.install_hint}")
        return Path(sys.executable)

    def version(self, binary: Path) -> str:
        return _version()

    def flags(self, args: ServerArgs) -> list[str]:
        return ["--ctx-size", str(args.ctx_size), "--threads", str(args.threads), "--max-seqs", str(args.parallel),
                "--prefix-cache-n", "0", *args.extra]

    def command(self, binary: Path, model: Path, host: str, port: int, args: ServerArgs) -> list[str]:
        return [str(binary), "-m", "llmspec.engines.mistralrs_serve", "--model", str(model), "--host", host,
                "--port", str(port), *self.flags(args)]

    def timings(self, event: dict[str, Any]) -> Timings | None:
        """mistral.rs's own clock from the final chunk's usage: prompt and completion seconds."""
        usage = event.get("usage") or {}
        if usage.get("total_completion_time_sec") is None:
            return None
        return Timings(prompt_n=usage.get("prompt_tokens"), prompt_ms=_ms(usage.get("total_prompt_time_sec")),
                       predicted_n=usage.get("completion_tokens"),
                       predicted_ms=_ms(usage.get("total_completion_time_sec")))


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


@functools.cache
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"mistralrs {version('mistralrs')}"
    except PackageNotFoundError:
        raise UserError("mistralrs is not installed (mistralrs engine): pip install 'llmspec[engines]'") from None
