"""Ollama (https://github.com/ollama/ollama): the GGUF file imported into a private store and served by `ollama serve`.

Sources read for this module (ollama/ollama at v0.33.0-rc2 unless said otherwise): envconfig/config.go
(every OLLAMA_* variable below), docs/faq.mdx, docs/api.md (/api/chat, /api/create, /api/version),
cmd/cmd.go (`ollama create`, `ollama --version`), parser/parser.go, server/sched.go, llm/llama_server.go.

How a cell runs: `ollama serve` with OLLAMA_HOST on our port and OLLAMA_MODELS in the cell's work folder
(the user's own models are never read or pruned), then `after_start` writes a Modelfile (`FROM` the
GGUF + PARAMETER lines) and runs `ollama create`, which hashes the file and copies it into that
private store (cmd/cmd.go createBlob -> POST /api/blobs/:digest: a full copy on disk, made once per
start, outside any measurement), then loads the model with an empty chat (docs/api.md "Load a
model") so that the first measured request does not pay the load, as llama-server's /health only
answers once its model is loaded.

The wire is Ollama's native NDJSON `POST /api/chat`, not its OpenAI layer, because only the native
final object (`done: true`) carries Ollama's own clock: prompt_eval_count/_duration and
eval_count/_duration, durations in nanoseconds (docs/api.md, "Durations").

Settings:
- num_ctx is per request: Ollama allocates num_ctx x OLLAMA_NUM_PARALLEL in all (server/sched.go
  effectiveLlamaServerContext; llm/llama_server.go passes `-c NumCtx*numParallel -np numParallel`;
  v0.12.3's llm/server.go `KvSize: opts.NumCtx * numParallel`; faq: "a 2K context with 4 parallel
  requests will result in an 8K context"). So num_ctx = ctx_size // parallel gives the same total
  and per-slot context as llama-server's `--ctx-size ctx_size --parallel parallel`.
- OLLAMA_KV_CACHE_TYPE is one type for both K and V (llm/llama_server.go passes the same value to
  --cache-type-k and --cache-type-v): a variant whose K and V types differ is a skip (`cannot`).
  The faq says a quantised cache needs flash attention, so flash_attn="off" with one is a skip too.
- n_gpu_layers -> PARAMETER num_gpu ("all" -> 999, "auto" -> Ollama's own choice), batch_size ->
  num_batch, no_mmap -> use_mmap false (api/types.go Runner); ubatch_size and mlock have no Ollama
  setting (use_mlock is gone from api/types.go) and are a skip.
- `server.extra_args`: an item `OLLAMA_X=value` is set in the server's environment, any other item
  is a Modelfile line written as given (e.g. "PARAMETER num_batch 256").

What Ollama cannot give: it reports no cached prompt tokens, and its prompt cache cannot be turned
off (llm/llama_server.go sends cache_prompt=true on every request and starts its runner without
--cache-ram 0), so PROMPT_CACHE_CONTROL and CACHED_TOKENS are not claimed; recent versions count
cached tokens in prompt_eval_count (promptEvalCount = cache_n + prompt_n) while prompt_eval_duration
covers only the evaluated ones. It has no `ignore_eos` option (api/types.go Options), so a request
that asks for one may stop before max_tokens.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, ClassVar

from llmspec.engines.base import ENGINE_CLOCK, GPU_LAYERS, KV_CACHE_TYPES, SLOTS, Engine, ServerArgs, Timings
from llmspec.errors import CellError, UserError

# OpenAI sampling fields that are Ollama `options` under the same name (api/types.go Options).
SAME_OPTIONS = ("temperature", "seed", "top_p", "top_k", "min_p", "repeat_penalty", "presence_penalty",
                "frequency_penalty")
# Ollama's done_reason -> OpenAI's finish_reason ("load"/"unload" only answer an empty chat).
FINISH = {"stop": "stop", "length": "length"}
# The Modelfile PARAMETER for each [server] key Ollama can honour, in a fixed order.
PARAMETERS = {"batch_size": "num_batch", "n_gpu_layers": "num_gpu", "no_mmap": "use_mmap"}
UNSUPPORTED = ("ubatch_size", "mlock")
ALL_LAYERS = 999  # Ollama's "every layer" (num_gpu above the block count)
TYPED = {"threads": "num_thread", "parallel": "OLLAMA_NUM_PARALLEL", "batch_size": "num_batch",
         "n_gpu_layers": "num_gpu"}
FLASH = {"on": "1", "off": "0"}  # "auto": leave Ollama to decide, its default
VERSION = re.compile(r"version is\s+(\S+)")
CLIENT_VERSION = re.compile(r"client version is\s+(\S+)")


class Ollama(Engine):
    name: ClassVar[str] = "ollama"
    summary: ClassVar[str] = "Ollama (Go server around llama.cpp) with the file imported into a private store"
    program: ClassVar[str] = "ollama"
    env_var: ClassVar[str | None] = "OLLAMA_BIN"
    install_hint: ClassVar[str] = ("install it with `curl -fsSL https://ollama.com/install.sh | sh` "
                                   "(https://ollama.com/download), or set OLLAMA_BIN or server.binary")
    supports: ClassVar[frozenset[str]] = frozenset({SLOTS, KV_CACHE_TYPES, GPU_LAYERS, ENGINE_CLOCK})
    health_path: ClassVar[str] = "/"  # "Ollama is running"
    chat_path: ClassVar[str] = "/api/chat"
    overhead_bytes: ClassVar[float] = 350e6  # the Go server beside its llama.cpp runner's buffers
    create_timeout_s: ClassVar[float] = 300.0  # plus the time to hash and copy the file (see `after_start`)
    load_timeout_s: ClassVar[float] = 600.0

    # --- the program ---------------------------------------------------------------------------
    def version(self, binary: Path) -> str:
        """`ollama --version` asks the server at OLLAMA_HOST for its version and prints the client's
        only when they differ (cmd/cmd.go versionHandler); it is pointed at a port nothing listens on
        so that a user's own running Ollama is never asked and the line names this binary."""
        env = os.environ | {"OLLAMA_HOST": "127.0.0.1:9"}  # discard: connection refused at once
        try:
            done = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30, env=env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise UserError(f"cannot run {binary} --version: {exc}") from None
        text = done.stdout + done.stderr
        found = CLIENT_VERSION.search(text) or VERSION.search(text)
        if found is None:
            raise UserError(f"{binary} --version printed no version: {text.strip()[-200:]!r}")
        return f"ollama {found.group(1)}"

    # --- settings ------------------------------------------------------------------------------------
    def flags(self, args: ServerArgs) -> list[str]:
        """The Modelfile's PARAMETER lines and the server's settings (`NAME=value`), then the extras."""
        return [*self.parameters(args), *(f"{k}={v}" for k, v in self._settings(args).items()), *args.extra]

    def parameters(self, args: ServerArgs) -> list[str]:
        lines = [f"PARAMETER num_ctx {args.ctx_per_slot}", f"PARAMETER num_thread {args.threads}"]
        for key, parameter in PARAMETERS.items():
            value = args.setting(key)
            if key == "n_gpu_layers":
                value = {"all": ALL_LAYERS, "auto": None}.get(str(value), value)
            elif key == "no_mmap":
                value = "false" if value else None
            if value is not None:
                lines.append(f"PARAMETER {parameter} {value}")
        return lines

    def _settings(self, args: ServerArgs) -> dict[str, str]:
        """What shapes the measurement through the server's environment (envconfig/config.go)."""
        out = {"OLLAMA_NUM_PARALLEL": str(args.parallel)}
        kv = args.setting("cache_type_k") or args.setting("cache_type_v")
        if kv is not None:
            out["OLLAMA_KV_CACHE_TYPE"] = str(kv)
        if (flash := FLASH.get(str(args.setting("flash_attn")))) is not None:
            out["OLLAMA_FLASH_ATTENTION"] = flash
        return out

    def typed(self, values: dict[str, Any], args: ServerArgs) -> str:
        """Swept keys as an Ollama user sets them: Modelfile parameters and server variables."""
        out = []
        for key, value in values.items():
            if key in TYPED:
                out.append(f"{TYPED[key]}={ALL_LAYERS if key == 'n_gpu_layers' and value == 'all' else value}")
            elif key in ("cache_type_k", "cache_type_v") and "OLLAMA_KV_CACHE_TYPE" not in " ".join(out):
                out.append(f"OLLAMA_KV_CACHE_TYPE={value}")
            elif key == "flash_attn" and value in FLASH:
                out.append(f"OLLAMA_FLASH_ATTENTION={FLASH[value]}")
            elif key == "no_mmap":
                out.append(f"use_mmap={str(not value).lower()}")
        return " ".join(out)

    def command(self, binary: Path, model: Path, host: str, port: int, args: ServerArgs) -> list[str]:
        return [str(binary), "serve"]

    def environment(self, host: str, port: int, args: ServerArgs, workdir: Path) -> dict[str, str]:
        return {
            "OLLAMA_HOST": f"{host}:{port}",
            "OLLAMA_MODELS": str(Path(workdir) / "models"),  # private: the user's store is never touched
            "OLLAMA_KEEP_ALIVE": "-1",  # negative: stay loaded for good (envconfig KeepAlive), no reload mid-run
            "OLLAMA_NOPRUNE": "1",  # no pruning of blobs at start
            "OLLAMA_MAX_LOADED_MODELS": "1",  # only the model under measurement
            "OLLAMA_CONTEXT_LENGTH": str(args.ctx_per_slot),  # the same as the Modelfile's num_ctx
            "OLLAMA_NO_CLOUD": "1",  # no cloud models or web calls (docs/faq.mdx)
            "OLLAMA_DEBUG": "0",  # no debug logging slowing the server
            **self._settings(args),
            **_extra_env(args),
        }

    def cache_types(self, args: ServerArgs) -> tuple[str | None, str | None]:
        kv = _extra_env(args).get("OLLAMA_KV_CACHE_TYPE") or self._settings(args).get("OLLAMA_KV_CACHE_TYPE")
        return kv, kv

    def prompt_cache_on(self, args: ServerArgs) -> bool:
        """Always: Ollama sends cache_prompt=true and its runner keeps llama-server's RAM prompt cache."""
        return True

    def cannot(self, args: ServerArgs) -> str | None:
        k, v = (args.setting("cache_type_k") or "f16"), (args.setting("cache_type_v") or "f16")
        if k != v:
            return f"{self.name} has one KV cache type for K and V (OLLAMA_KV_CACHE_TYPE), not {k} and {v}"
        if k != "f16" and args.setting("flash_attn") == "off":
            return f"{self.name} quantises the KV cache only with flash attention on"
        unsupported = [key for key in UNSUPPORTED if args.setting(key)]
        if unsupported:
            return f"{self.name} has no setting for {', '.join(unsupported)}"
        return super().cannot(args)

    def missing(self) -> list[str]:
        return [*super().missing(),
                f"{self.name} counts cached prompt tokens in prompt_eval_count but not in prompt_eval_duration, "
                "so server prompt speed is optimistic when a prefix was cached",
                f"{self.name} has no ignore_eos: a completion may end before max_tokens"]

    # --- start --------------------------------------------------------------------------------------
    def model_name(self, model: Path, args: ServerArgs) -> str:
        key = "\n".join([str(Path(model).resolve()), *self.flags(args)])
        return "llmspec-" + hashlib.sha256(key.encode()).hexdigest()[:12]

    def modelfile(self, model: Path, args: ServerArgs) -> str:
        path = str(Path(model).resolve())
        source = f'"{path}"' if any(c.isspace() for c in path) else path
        lines = [f"FROM {source}", *self.parameters(args), *(x for x in args.extra if not _is_env(x))]
        return "\n".join(lines) + "\n"

    def after_start(self, binary: Path, model: Path, url: str, args: ServerArgs, workdir: Path) -> str:
        """Import the file (`ollama create`) under a name of its path and settings, then load it."""
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        name = self.model_name(model, args)
        modelfile = workdir / "Modelfile"
        modelfile.write_text(self.modelfile(model, args))
        host = url.split("://", 1)[-1].rstrip("/")
        env = os.environ | {"OLLAMA_HOST": host, "OLLAMA_NO_CLOUD": "1"}
        try:
            size = Path(model).stat().st_size
        except OSError:
            size = 0
        timeout = self.create_timeout_s + size / 20e6  # hashing then copying, at 20 MB/s at worst
        try:
            done = subprocess.run([str(binary), "create", name, "-f", str(modelfile)], capture_output=True,
                                  text=True, timeout=timeout, env=env, cwd=workdir)
        except subprocess.TimeoutExpired:
            raise CellError(f"ollama create {name} took more than {timeout:.0f} s") from None
        except OSError as exc:
            raise CellError(f"cannot run {binary} create: {exc}") from None
        if done.returncode != 0:
            raise CellError(f"ollama create {name} failed (exit {done.returncode}): {_tail(done.stderr + done.stdout)}")
        self._load(url, name)
        return name

    def _load(self, url: str, name: str) -> None:
        """An empty chat loads the model (docs/api.md, "Load a model"): done_reason "load"."""
        body = json.dumps({"model": name, "messages": [], "stream": False}).encode()
        request = urllib.request.Request(url.rstrip("/") + self.chat_path, data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.load_timeout_s) as resp:
                reply = json.loads(resp.read() or b"{}")
        except urllib.error.HTTPError as exc:
            said = _tail(exc.read().decode(errors="replace"))
            raise CellError(f"ollama could not load {name}: HTTP {exc.code}: {said}") from None
        except (OSError, ValueError) as exc:
            raise CellError(f"ollama could not load {name}: {exc}") from None
        if reply.get("error"):
            raise CellError(f"ollama could not load {name}: {reply['error']}")

    # --- the wire -------------------------------------------------------------------------------------
    def request(self, body: dict[str, Any]) -> dict[str, Any]:
        """The OpenAI body as /api/chat wants it (docs/api.md): sampling settings go under `options`."""
        options = {key: body[key] for key in SAME_OPTIONS if body.get(key) is not None}
        if body.get("max_tokens") is not None:
            options["num_predict"] = body["max_tokens"]
        stop = body.get("stop")
        if stop:
            options["stop"] = [stop] if isinstance(stop, str) else list(stop)
        native: dict[str, Any] = {"model": body["model"], "messages": body["messages"],
                                  "stream": body.get("stream", True), "options": options}
        if body.get("tools"):
            native["tools"] = body["tools"]
        if (fmt := _format(body.get("response_format"))) is not None:
            native["format"] = fmt
        return native

    def event(self, line: bytes) -> dict[str, Any] | None:
        """One NDJSON object as an OpenAI chat.completion.chunk; the final one keeps its counters under "ollama"."""
        line = line.strip()
        if not line:
            return None
        try:
            raw = json.loads(line)
        except json.JSONDecodeError:
            return None
        if not isinstance(raw, dict):
            return None
        if raw.get("error"):
            return {"object": "chat.completion.chunk", "choices": [], "error": {"message": str(raw["error"])}}
        message = raw.get("message") or {}
        delta: dict[str, Any] = {"role": message.get("role", "assistant")}
        if message.get("content"):
            delta["content"] = message["content"]
        if message.get("thinking"):
            delta["reasoning_content"] = message["thinking"]
        if message.get("tool_calls"):
            delta["tool_calls"] = [_tool_call(i, call) for i, call in enumerate(message["tool_calls"])]
        finish = None
        if raw.get("done"):
            finish = FINISH.get(raw.get("done_reason") or "stop", raw.get("done_reason"))
        chunk: dict[str, Any] = {"object": "chat.completion.chunk", "model": raw.get("model"),
                                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
        if raw.get("done"):
            counters = {k: v for k, v in raw.items() if k.endswith(("_count", "_duration"))}
            prompt, completion = raw.get("prompt_eval_count"), raw.get("eval_count")
            if prompt is not None or completion is not None:
                chunk["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion,
                                  "total_tokens": (prompt or 0) + (completion or 0)}
            chunk["ollama"] = counters
        return chunk

    def timings(self, event: dict[str, Any]) -> Timings | None:
        """Ollama's own clock from the final object, nanoseconds to milliseconds; cached tokens unknown."""
        raw = event.get("ollama")
        if not raw or raw.get("eval_duration") is None:
            return None
        return Timings(prompt_n=raw.get("prompt_eval_count"), prompt_ms=_ms(raw.get("prompt_eval_duration")),
                       predicted_n=raw.get("eval_count"), predicted_ms=_ms(raw.get("eval_duration")), cache_n=None)


def _ms(nanoseconds: int | None) -> float | None:
    return None if nanoseconds is None else nanoseconds / 1e6


def _is_env(item: str) -> bool:
    return item.startswith("OLLAMA_") and "=" in item


def _extra_env(args: ServerArgs) -> dict[str, str]:
    return dict(item.split("=", 1) for item in args.extra if _is_env(item))


def _format(response_format: Any) -> Any:
    """OpenAI's response_format -> Ollama's format: "json" or a JSON schema (docs/api.md, Structured outputs)."""
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        schema = response_format.get("json_schema") or {}
        return schema.get("schema", schema)
    return None


def _tool_call(index: int, call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments")
    return {"index": index, "id": call.get("id", f"call_{index}"), "type": "function",
            "function": {"name": function.get("name"),
                         "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments or {})}}


def _tail(text: str, lines: int = 5) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())[:500]
