"""The engines llmspec can start and measure (`base.Engine`), declared in this one registry.

A new engine is one module and one line in `ENGINES`; a spec picks one with `[server] engine`
or measures several with `[server.sweep] engine = [...]` (docs in README, "Engines").
"""

from __future__ import annotations

import functools

from llmspec.engines.base import Engine, ServerArgs, Timings
from llmspec.engines.llama_server import LlamaServer
from llmspec.engines.mistralrs import MistralRs
from llmspec.engines.ollama import Ollama

DEFAULT = "llama-server"
ENGINES: dict[str, Engine] = {e.name: e for e in (LlamaServer(), MistralRs(), Ollama())}

__all__ = ["DEFAULT", "ENGINES", "Engine", "ServerArgs", "Timings", "argv", "engine_named", "register"]


def engine_named(name: str) -> Engine:
    try:
        return ENGINES[name]
    except KeyError:
        raise KeyError(f"unknown engine {name!r} (known: {', '.join(ENGINES)})") from None


def register(found: Engine) -> Engine:
    """Add an engine at run time (tests, plugins); the spec validates against this registry."""
    ENGINES[found.name] = found
    return found


@functools.cache
def argv(args: ServerArgs) -> tuple[str, ...]:
    """The engine's flags for `args` (no model, host or port): what fingerprints and results store.
    Cached: every cell's fingerprint asks for it, 10,000 times in a large spec."""
    return tuple(engine_named(args.engine).flags(args))
