"""What an inference engine is to llmspec: one small interface, one module per engine.

An engine owns everything that differs between servers: how its settings become a command line,
where its program is (looked up once), how it says it is ready and which version it is, how much
memory it needs for a file, and how its own account of a request (`Timings`) is read from its
replies. It also says what it supports, so the planner can skip a cell it cannot honour with a
reason instead of failing (`Engine.cannot`). The rest of the tree asks the engine and never
writes one of its flags.

Planning imports this package on every `doit`, so nothing here imports `requests` or the run side.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from llmspec.errors import UserError
from llmspec.models.memory import OVERHEAD_BYTES, Estimate, estimate_memory

# What an engine may support (`Engine.supports`); a setting or profile that needs one it lacks is a skip.
PROMPT_CACHE_CONTROL = "prompt_cache_control"  # honours cache_prompt=false per request
SLOTS = "slots"  # a fixed number of parallel sequences (llama-server --parallel)
KV_CACHE_TYPES = "kv_cache_types"  # quantised K/V cache
GPU_LAYERS = "gpu_layers"  # a chosen number of layers offloaded
TOKENIZE = "tokenize"  # POST /tokenize {"content"} -> {"tokens"}
ENGINE_CLOCK = "engine_clock"  # reports its own prompt and decode times per request
CACHED_TOKENS = "cached_tokens"  # reports how many prompt tokens came from its cache
TOOL_CALLS = "tool_calls"  # parses the model's tool calls into OpenAI `tool_calls` (llama-server: --jinja)
JSON_SCHEMA = "json_schema"  # constrains answers to a `response_format` JSON schema (a grammar)
REASONING_SPLIT = "reasoning_split"  # streams a reasoning model's thinking as `reasoning_content`
REASONING_BUDGET = "reasoning_budget"  # caps the tokens a reasoning model thinks before it must answer
# The OpenAI wire's field for a model's tool calls (a delta's, a message's); owned here with the wire.
TOOL_CALLS_FIELD = "tool_calls"


@dataclass(frozen=True)
class ServerArgs:
    """Everything that shapes a measurement (fingerprinted); model path and port are added at start.

    Engine-neutral data: the engine turns it into its command line (`Engine.flags`, or the cached
    `llmspec.engines.argv`). `tuned` holds
    the spec's first-class [server] keys that are set, as (key, value) pairs in a fixed order;
    `extra` is the spec's `server.extra_args`, passed to the engine as they are, after ours.
    """

    ctx_size: int
    threads: int
    parallel: int = 1
    extra: tuple[str, ...] = field(default_factory=tuple)
    tuned: tuple[tuple[str, Any], ...] = field(default_factory=tuple)
    engine: str = "llama-server"
    # What the cell's profile needs the server started with (`ProfileKind.server_features`, e.g.
    # TOOL_CALLS); empty for every profile that needs nothing, so their arguments stay as they were.
    features: tuple[str, ...] = field(default_factory=tuple)

    def setting(self, key: str) -> Any:
        return dict(self.tuned).get(key)

    @property
    def ctx_per_slot(self) -> int:
        """A server with slots divides its context among them."""
        return self.ctx_size // max(1, self.parallel)


@dataclass(frozen=True)
class Timings:
    """An engine's own account of one request, in the result contract's names (llama-server's).

    None means the engine did not say, never zero: a result must not claim a cache miss or a
    decode speed the engine never reported. `raw` keeps what the engine sent when its names are
    already the contract's (llama-server), so stored samples stay byte-for-byte what it said.
    """

    prompt_n: int | None = None
    prompt_ms: float | None = None
    predicted_n: int | None = None
    predicted_ms: float | None = None
    cache_n: int | None = None
    raw: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.raw is not None:
            return self.raw
        found: dict[str, Any] = {k: v for k, v in (("prompt_n", self.prompt_n), ("prompt_ms", self.prompt_ms),
                                                   ("predicted_n", self.predicted_n),
                                                   ("predicted_ms", self.predicted_ms), ("cache_n", self.cache_n))
                                 if v is not None}
        if self.prompt_n and self.prompt_ms:
            found["prompt_per_second"] = self.prompt_n / self.prompt_ms * 1000
        if self.predicted_n and self.predicted_ms:
            found["predicted_per_second"] = self.predicted_n / self.predicted_ms * 1000
        return found


class Engine:
    """One inference engine. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str]
    summary: ClassVar[str]
    program: ClassVar[str]  # the executable's name on PATH
    env_var: ClassVar[str | None] = None  # an environment variable naming the executable
    install_hint: ClassVar[str] = ""
    supports: ClassVar[frozenset[str]] = frozenset()
    health_path: ClassVar[str] = "/health"
    overhead_bytes: ClassVar[float] = OVERHEAD_BYTES  # runtime beside weights and KV cache
    managed: ClassVar[bool] = True

    # --- the program ---------------------------------------------------------------------------
    def find_binary(self, configured: str | None = None) -> Path:
        """The spec's `server.binary`, then `env_var`, then PATH, then `packaged()`; looked up once."""
        return _find(type(self), configured, os.environ.get(self.env_var) if self.env_var else None)

    def packaged(self) -> Path | None:
        """Where a Python package installed the program, if it did."""
        return None

    def version(self, binary: Path) -> str:
        """One line naming the build; part of every fingerprint."""
        raise NotImplementedError

    # --- settings -> command line ------------------------------------------------------------------
    def flags(self, args: ServerArgs) -> list[str]:
        """The command-line flags for `args` (no model, host or port): fingerprinted and stored."""
        raise NotImplementedError

    def command(self, binary: Path, model: Path, host: str, port: int, args: ServerArgs) -> list[str]:
        raise NotImplementedError

    def environment(self, host: str, port: int, args: ServerArgs, workdir: Path) -> dict[str, str]:
        """Extra environment for the engine's process (`workdir`: a private folder for its files)."""
        return {}

    def after_start(self, binary: Path, model: Path, url: str, args: ServerArgs, workdir: Path) -> str:
        """Once healthy: whatever the engine needs before it can answer (Ollama imports the file);
        returns the model name requests carry."""
        return "default"

    def cache_types(self, args: ServerArgs) -> tuple[str | None, str | None]:
        return args.setting("cache_type_k"), args.setting("cache_type_v")

    def prompt_cache_on(self, args: ServerArgs) -> bool:
        return False

    def typed(self, values: dict[str, Any], args: ServerArgs) -> str:
        """The settings `values` (a variant's swept keys) as a user would type them for this engine."""
        return " ".join(f"{key}={value}" for key, value in values.items() if key != "engine")

    def cannot(self, args: ServerArgs) -> str | None:
        """Why this engine cannot run with `args` (a skip reason), or None."""
        unsupported = [key for key, needs in (("cache_type_k", KV_CACHE_TYPES), ("cache_type_v", KV_CACHE_TYPES),
                                              ("n_gpu_layers", GPU_LAYERS), ("reasoning_budget", REASONING_BUDGET))
                       if args.setting(key) is not None
                       and needs not in self.supports]
        if unsupported:
            return f"{self.name} has no setting for {', '.join(unsupported)}"
        return None

    # --- memory --------------------------------------------------------------------------------------
    def estimate(self, size_bytes: int, meta: dict[str, Any] | None, args: ServerArgs) -> Estimate:
        """Weights + KV cache at the context + this engine's overhead (`llmspec.models.memory`)."""
        return estimate_memory(size_bytes, meta, args.ctx_size, self.cache_types(args), self.overhead_bytes)

    # --- the wire -------------------------------------------------------------------------------------
    chat_path: ClassVar[str] = "/v1/chat/completions"

    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        """The OpenAI chat body as this engine wants it on `chat_path`."""
        return body

    def event(self, line: bytes) -> dict[str, Any] | None:
        """One streamed line as an OpenAI chat.completion.chunk dict (None: not an event)."""
        return parse_sse(line)

    # --- replies ----------------------------------------------------------------------------------
    def timings(self, event: dict[str, Any]) -> Timings | None:
        """The engine's own account of a request, from one streamed event (usually the last)."""
        return None

    def missing(self) -> list[str]:
        """What results of this engine cannot know, in words, for their flags."""
        said = []
        if ENGINE_CLOCK not in self.supports:
            said.append(f"{self.name} reports no per-request timings of its own: prompt and decode speeds are on "
                        "the client's clock only (server_tokens_per_s missing)")
        if CACHED_TOKENS not in self.supports:
            said.append(f"{self.name} does not report cached prompt tokens, so a prompt-cache hit cannot be ruled "
                        "out from its replies")
        return said


@functools.cache
def _find(kind: type[Engine], configured: str | None, from_env: str | None) -> Path:
    self = kind()
    for candidate in (configured, from_env):
        if candidate:
            path = Path(candidate).expanduser()
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise UserError(f"{self.program} at {path} does not exist or is not executable")
            return path
    on_path = shutil.which(self.program)
    found = Path(on_path) if on_path else self.packaged()
    if found is None:
        raise UserError(f"{self.program} not found ({self.name} engine): {self.install_hint}")
    return found


def parse_sse(line: bytes) -> dict | None:
    """One server-sent-events line (`data: {...}`) as a dict; None for other lines (comments, `event:`,
    blank) and `[DONE]`. A data line that is not JSON (or not UTF-8) raises ValueError: the client
    makes it the request's error instead of silently dropping part of an answer."""
    line = line.strip()
    if not line.startswith(b"data:"):
        return None
    payload = line[5:].strip()
    if payload == b"[DONE]":
        return None
    found = json.loads(payload)  # JSONDecodeError and UnicodeDecodeError are ValueErrors
    if not isinstance(found, dict):
        raise ValueError(f"an event that is not a JSON object: {payload[:80]!r}")
    return found
