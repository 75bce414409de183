"""A minimal OpenAI-compatible HTTP server around mistral.rs's Python SDK, so llmspec can run it like llama-server.

Why it exists: the PyPI package `mistralrs` ships the inference engine (a prebuilt wheel, CPU
included) but no HTTP server; mistral.rs's own server is a separate Rust binary that would have to
be built from source. llmspec drives every engine the same way (a child process on a loopback
port, polled on /health, stopped with SIGTERM) and talks to it over the OpenAI wire protocol, so
this shim puts that protocol in front of `mistralrs.Runner`.

What it adds: nothing but the wire protocol. Every figure it reports is mistral.rs's own: token
counts and the engine clock (avg_prompt_tok_per_sec, avg_compl_tok_per_sec, total_prompt_time_sec,
total_completion_time_sec, total_time_sec) are copied unchanged from the SDK's `Usage` into the
reply's `usage`, beside the OpenAI names (prompt_tokens, completion_tokens, total_tokens). The shim
keeps no clock of its own.

    python -m llmspec.engines.mistralrs_serve --model PATH.gguf --host 127.0.0.1 --port N [--max-seqs N] [--seed N]

Routes: GET /health, GET /v1/models, POST /tokenize {"content"} -> {"tokens"}, POST
/v1/chat/completions (streamed as `data: {chat.completion.chunk}` events ending in `data: [DONE]`,
or one chat.completion). The model is loaded before the port is opened, so a failing /health means
"not loaded yet"; a model that cannot be loaded ends the process with one `error:` line and exit 1.

Found by trying mistralrs 0.9.5 (CPU wheel, SmolLM2-135M GGUF):
- `Runner` is not safe to call from several threads: its methods borrow it mutably, and a second
  call while one is in progress raises `RuntimeError: Already borrowed`. Each call into the Runner
  (sending a request, tokenizing) holds `Engine.lock`. The call returns at once for a streamed
  request, and the returned stream is read outside the lock, so answers still overlap in time.
  Non-streamed requests are therefore sent streamed and gathered here: a long answer never holds
  the lock. Reading an abandoned stream no further (client gone) cancels it in the engine.
- Concurrent sequences (max_seqs > 1) failed on this CPU build with "input tensor is not
  contiguous" for both requests in flight, so --max-seqs defaults to 1: the engine then queues
  requests itself and answers them one at a time.
- The streamed usage arrives on the last chunk, the one with finish_reason, next to that chunk's
  last token; it is resent here as a final chunk with no choices, as OpenAI does for
  stream_options.include_usage (sent whether or not it was asked for).
- `ChatCompletionRequest` has no `seed` (only `Runner` takes one: --seed) and no
  `response_format`; a response_format is mapped to the SDK's JSON-schema grammar. `tools` are
  accepted as JSON strings (`tool_schemas`), `tool_choice` only as "auto" or "none".
- A message without `content` makes the SDK panic (pyo3's PanicException, a BaseException), so
  messages are checked here first.
- The prefix cache is on by default (`prefix_cache_n=16`): a repeated prompt prefix is reused and
  counted in usage.prompt_tokens_details.cached_tokens. llama.cpp's per-request `cache_prompt` is
  ignored; --prefix-cache-n 0 turns the cache off for the whole server.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# mistral.rs's clock fields, copied into `usage` under their own names.
ENGINE_CLOCK = ("avg_tok_per_sec", "avg_prompt_tok_per_sec", "avg_compl_tok_per_sec", "total_time_sec",
                "total_prompt_time_sec", "total_completion_time_sec")

# OpenAI body key -> ChatCompletionRequest keyword, passed when set. Other keys are ignored,
# among them llama.cpp's `cache_prompt` and `seed` (the SDK takes a seed per Runner only: --seed).
SAMPLING = {"max_tokens": "max_tokens", "max_completion_tokens": "max_tokens", "temperature": "temperature",
            "top_p": "top_p", "top_k": "top_k", "min_p": "min_p", "presence_penalty": "presence_penalty",
            "frequency_penalty": "frequency_penalty", "repetition_penalty": "repetition_penalty",
            "ignore_eos": "ignore_eos"}  # llama.cpp's name, which the SDK shares: exactly max_tokens, so runs compare


class BadRequest(Exception):
    """The client's request cannot be served as sent (HTTP 400)."""


def first_line(exc: BaseException) -> str:
    """The SDK's messages carry a Rust backtrace after the first line; the first line is the reason."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _content(message: dict, index: int) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if content is None and message.get("role") == "assistant":  # an assistant turn that only called tools
        return ""
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return "".join(str(p.get("text", "")) for p in content)
    raise BadRequest(f"messages[{index}].content must be a string or a list of text parts")


def messages_for_sdk(messages: Any) -> list[dict[str, str]]:
    """OpenAI messages as the SDK takes them (string values only), checked first: a message
    without content panics inside the SDK instead of raising a readable error."""
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' is required: a non-empty list of {role, content}")
    out = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise BadRequest(f"messages[{i}] must be an object with a string 'role'")
        extra = {k: v for k, v in message.items() if k not in ("role", "content") and isinstance(v, str)}
        out.append({**extra, "role": message["role"], "content": _content(message, i)})
    return out


def request_kwargs(body: Any, sdk: Any = None) -> dict[str, Any]:
    """ChatCompletionRequest keywords for an OpenAI chat body (without `stream`: always streamed)."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    kwargs: dict[str, Any] = {"model": str(body.get("model") or "default"),
                              "messages": messages_for_sdk(body.get("messages"))}
    for key, name in SAMPLING.items():
        if body.get(key) is not None:
            kwargs[name] = body[key]
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
            raise BadRequest("'stop' must be a string or a list of strings")
        if stops:
            kwargs["stop_seqs"] = stops
    if body.get("tools"):
        if not isinstance(body["tools"], list):
            raise BadRequest("'tools' must be a list")
        kwargs["tool_schemas"] = [json.dumps(tool) for tool in body["tools"]]
    choice = body.get("tool_choice")
    if choice is not None:
        if choice not in ("auto", "none"):
            raise BadRequest("tool_choice: mistral.rs's Python SDK takes only \"auto\" or \"none\"")
        if sdk is not None:
            kwargs["tool_choice"] = sdk.ToolChoice.Auto if choice == "auto" else sdk.ToolChoice.NoTools
    kwargs.update(_grammar(body.get("response_format")))
    return kwargs


def _grammar(response_format: Any) -> dict[str, str]:
    """The SDK has no response_format; its JSON-schema grammar constrains the answer the same way."""
    if response_format is None:
        return {}
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return {}
    if kind == "json_object":
        return {"grammar": json.dumps({"type": "object"}), "grammar_type": "json_schema"}
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if isinstance(schema, dict):
            return {"grammar": json.dumps(schema), "grammar_type": "json_schema"}
    raise BadRequest("response_format must be {type: text | json_object | json_schema with json_schema.schema}")


def usage_json(usage: Any) -> dict[str, Any]:
    """The SDK's Usage under OpenAI's names, plus mistral.rs's own clock, unchanged."""
    out: dict[str, Any] = {"prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                           "total_tokens": usage.total_tokens}
    details = getattr(usage, "prompt_tokens_details", None)
    if details is not None and getattr(details, "cached_tokens", None) is not None:
        out["prompt_tokens_details"] = {"cached_tokens": details.cached_tokens}
    for name in ENGINE_CLOCK:
        out[name] = getattr(usage, name)
    return out


def tool_call_json(call: Any) -> dict[str, Any]:
    return {"index": call.index, "id": call.id, "type": "function",
            "function": {"name": call.function.name, "arguments": call.function.arguments}}


def chunk_json(chunk: Any, model: str, first: bool) -> dict[str, Any]:
    """One SDK chunk as an OpenAI chat.completion.chunk (the role only in the first, as OpenAI does)."""
    choices = []
    for choice in chunk.choices:
        delta: dict[str, Any] = {"role": choice.delta.role or "assistant"} if first else {}
        if choice.delta.content:
            delta["content"] = choice.delta.content
        if getattr(choice.delta, "reasoning_content", None):
            delta["reasoning_content"] = choice.delta.reasoning_content
        if choice.delta.tool_calls:
            delta["tool_calls"] = [tool_call_json(call) for call in choice.delta.tool_calls]
        choices.append({"index": choice.index, "delta": delta, "finish_reason": choice.finish_reason})
    return {"id": f"chatcmpl-{chunk.id}", "object": "chat.completion.chunk", "created": chunk.created,
            "model": model, "choices": choices}


class Engine:
    """The loaded Runner and the lock every call into it takes (it is not safe across threads)."""

    def __init__(self, sdk: Any, runner: Any, model: str):
        self.sdk = sdk
        self.runner = runner
        self.model = model
        self.lock = threading.Lock()

    def tokenize(self, text: str, add_special: bool = False) -> list[int]:
        with self.lock:
            return list(self.runner.tokenize_text(text, add_special_tokens=add_special, enable_thinking=None))

    def request(self, body: Any) -> Any:
        """A ChatCompletionRequest for the body, streamed; BadRequest when the SDK refuses a value."""
        kwargs = request_kwargs(body, self.sdk)
        try:
            return self.sdk.ChatCompletionRequest(**kwargs, stream=True)
        except (TypeError, ValueError) as exc:
            raise BadRequest(first_line(exc)) from exc

    def send(self, request: Any) -> Iterator[Any]:
        with self.lock:  # returns at once; the stream is read outside the lock
            return self.runner.send_chat_completion_request(request)


def _fatal(exc: BaseException) -> bool:
    """Exceptions to let through; anything else from the SDK (pyo3's PanicException is a
    BaseException, not an Exception) is an error reported to the client."""
    return isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; streams use chunked transfer encoding
    server_version = "llmspec-mistralrs"

    @property
    def engine(self) -> Engine:
        return self.server.engine  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        pass  # no access log: one line per request is noise beside a benchmark

    # -- routes -----------------------------------------------------------------------------------

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/health":
            self._json(200, {"status": "ok"})
        elif path == "/v1/models":
            self._json(200, {"object": "list", "data": [
                {"id": self.engine.model, "object": "model", "created": 0, "owned_by": "mistral.rs"}]})
        else:
            self._error(404, f"no route GET {path}", "not_found_error")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            body = self._body()
            if path == "/tokenize":
                self._tokenize(body)
            elif path == "/v1/chat/completions":
                self._chat(body)
            else:
                self._error(404, f"no route POST {path}", "not_found_error")
        except BadRequest as exc:
            self._error(400, str(exc))
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except BaseException as exc:
            if _fatal(exc):
                raise
            self._error(500, first_line(exc), "server_error")

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest(f"the request body is not valid JSON: {exc}") from exc

    def _tokenize(self, body: Any) -> None:
        if not isinstance(body, dict) or not isinstance(body.get("content"), str):
            raise BadRequest("'content' is required: the text to tokenize")
        self._json(200, {"tokens": self.engine.tokenize(body["content"], bool(body.get("add_special", False)))})

    def _chat(self, body: Any) -> None:
        request = self.engine.request(body)
        stream = self.engine.send(request)
        try:
            if body.get("stream"):
                self._stream(stream)
            else:
                self._json(200, self._gather(stream))
        finally:
            del stream  # dropping an unfinished stream cancels the request in the engine

    def _stream(self, stream: Iterator[Any]) -> None:
        """Each SDK chunk as one SSE event, sent as it comes; usage in a last chunk; then [DONE]."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        usage = last = None
        try:
            for chunk in stream:
                event = chunk_json(chunk, self.engine.model, first=last is None)
                last = event
                if chunk.usage is not None:
                    usage = usage_json(chunk.usage)
                self._event(event)
        except (BrokenPipeError, ConnectionResetError):
            raise
        except BaseException as exc:
            if _fatal(exc):
                raise
            self._event({"error": {"message": first_line(exc), "type": "server_error"}})
        else:
            if usage is not None and last is not None:
                self._event({**last, "choices": [], "usage": usage})
        self._write_chunk(b"data: [DONE]\n\n")
        self._write_chunk(b"")  # the end of the chunked body

    def _gather(self, stream: Iterator[Any]) -> dict[str, Any]:
        """A whole chat.completion from the streamed chunks (see the module docstring for why)."""
        head = None
        parts: list[str] = []
        reasoning: list[str] = []
        tool_calls: list[dict[str, Any]] = []
        finish_reason = usage = None
        for chunk in stream:
            head = head or chunk
            for choice in chunk.choices:
                parts.append(choice.delta.content or "")
                reasoning.append(getattr(choice.delta, "reasoning_content", None) or "")
                tool_calls += [tool_call_json(call) for call in choice.delta.tool_calls or []]
                finish_reason = choice.finish_reason or finish_reason
            if chunk.usage is not None:
                usage = usage_json(chunk.usage)
        message: dict[str, Any] = {"role": "assistant", "content": "".join(parts) or None}
        if any(reasoning):
            message["reasoning_content"] = "".join(reasoning)
        if tool_calls:
            message["tool_calls"] = tool_calls
        return {"id": f"chatcmpl-{head.id}" if head else "chatcmpl", "object": "chat.completion",
                "created": head.created if head else 0, "model": self.engine.model,
                "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}], "usage": usage}

    # -- wire -------------------------------------------------------------------------------------

    def _json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        self._json(status, {"error": {"message": message, "type": kind, "code": status}})

    def _event(self, payload: Any) -> None:
        self._write_chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


def load(sdk: Any, model: Path, args: argparse.Namespace) -> Any:
    which = sdk.Which.GGUF(quantized_model_id=str(model.parent), quantized_filename=model.name)
    return sdk.Runner(which=which, token_source="none", max_seqs=args.max_seqs, seed=args.seed,
                      prefix_cache_n=args.prefix_cache_n)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m llmspec.engines.mistralrs_serve",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="the .gguf file to serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--max-seqs", type=int, default=1, help="sequences the engine runs at once (default 1)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads of the engine's pool (RAYON_NUM_THREADS; default: every core)")
    parser.add_argument("--ctx-size", type=int, default=None,
                        help="context of the measurement; recorded, mistral.rs sizes its KV cache itself")
    parser.add_argument("--seed", type=int, default=None, help="the engine's sampling seed")
    parser.add_argument("--prefix-cache-n", type=int, default=16,
                        help="sequences kept in mistral.rs's prefix cache; 0 turns it off (default 16, the SDK's)")
    parser.add_argument("--version", action="store_true", help="print the mistralrs version and exit")
    args = parser.parse_args(argv)
    if not args.version and not args.model:
        parser.error("--model is required")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.version:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"mistralrs {version('mistralrs')}")
        except PackageNotFoundError:
            print("error: the mistralrs package is not installed (pip install mistralrs)", file=sys.stderr)
            return 1
        return 0
    model = Path(args.model).resolve()
    if not model.is_file():
        print(f"error: no model file at {model}", file=sys.stderr)
        return 1
    # Local files only: the SDK would otherwise ask the Hugging Face hub about the model folder.
    os.environ["HF_HUB_OFFLINE"] = "1"
    if args.threads:  # candle's CPU kernels run on rayon's global pool, sized once, at import
        os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    try:
        import mistralrs as sdk
    except ImportError as exc:
        print(f"error: cannot import mistralrs ({exc}); pip install mistralrs", file=sys.stderr)
        return 1
    # Until here SIGTERM/SIGINT keep their default action: a server stopped while loading just ends.
    try:
        runner = load(sdk, model, args)
    except BaseException as exc:
        if isinstance(exc, (KeyboardInterrupt, SystemExit)):
            raise
        print(f"error: mistral.rs cannot load {model}: {first_line(exc)}", file=sys.stderr)
        return 1
    try:
        server = ThreadingHTTPServer((args.host, args.port), Handler)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    server.daemon_threads = True  # an answer in progress does not hold up the exit
    server.engine = Engine(sdk, runner, model.name)  # type: ignore[attr-defined]
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    print(f"mistralrs_serve: {model.name} on http://{args.host}:{args.port}", file=sys.stderr, flush=True)
    while not stop.wait(0.5):  # a timed wait, so the signal handler runs promptly in this thread
        pass
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
