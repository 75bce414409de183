"""A fake llama-server: a real HTTP server on 127.0.0.1 that speaks the part of llama-server's API llmspec uses.

For tests of llmspec's own logic (the load engine, the stress sampler, the long-context
bookkeeping) that need a streaming server but not a model. Nothing of llmspec is patched: its
real client talks HTTP to this server. What the real llama-server does (its tokenizer, its
template, its cache, its memory) is tested against the real one (`make_server` in conftest).

Routes, shaped like llama-server's (tools/server, late 2025):

- `GET /health` -> `{"status": "ok"}`; `GET /v1/models` -> `{"object": "list", "data": [...]}`.
  Both stay public when an API key is set, as llama-server's are.
- `POST /tokenize` `{"content": text}` -> `{"tokens": [...]}`: one token per whitespace-separated
  word, ids derived from the word (deterministic).
- `POST /v1/chat/completions`; with `"stream": true`, Server-Sent Events: a role-only chunk, one
  chunk per generated token (`choices[0].delta.content`), a chunk with `finish_reason`, then (with
  `stream_options.include_usage`, which llmspec sends) a chunk with `"choices": []` and `usage`;
  the last chunk carries llama-server's `timings`; then `data: [DONE]`.
  `timings.prompt_n` = the prompt's words as /tokenize counts them plus a fixed chat-template
  overhead (`template_tokens` + `template_tokens_per_message` per message); `cache_n` is 0;
  `predicted_n` = `max_tokens` with `ignore_eos`, otherwise min(`max_tokens`, `answer_tokens`)
  (the model "stops by itself"); `prompt_ms` and `predicted_ms` are measured on this server's clock.

Differences from llama-server, on purpose:
- The role-only chunk goes out as soon as a slot takes the request, before the prompt delay
  (llama-server sends it with the first token; OpenAI and vLLM send it at once). That is the harder
  case for a client: TTFT timed to the first event would look instant.
- Generated text is a fixed sequence of words (`answer(n)`), so tests can assert it.

Knobs (constructor keywords; all but `slots` are also attributes a test may change while it runs):
`token_delay_s` (between tokens), `prompt_delay_s` (before the first token), `slots` (requests
served at once; others wait, as in llama-server's queue), `api_key` (chat and /tokenize answer 401
without `Authorization: Bearer <key>`), `ctx_size` (per slot: a prompt of that many tokens or more
is refused with llama-server's HTTP 400 `exceed_context_size_error`; generation stops when the
context is full), `fail` (HTTP 500 before any byte of the answer) and `stall` (the answer stops
after `stall_after` tokens and hangs until the client goes away or the server stops). `fail` and
`stall` are a bool or a predicate on the request body, e.g. `fail=lambda body: "Why" in str(body)`.
`reply` (a function of the request body) scripts an answer: a text, or tool calls
`[{"name", "arguments"}]` streamed as `delta.tool_calls` with `finish_reason` "tool_calls".

`requests` holds every chat-completion body received (parsed JSON), `hits` every (method, path,
status); `peak_busy` and `peak_waiting` the most requests served at once and queued at once.

In a test: the `fake_server` fixture (conftest.py), or `with FakeLlamaServer(...) as fake: fake.url`.
As a process (for llmspec's own `Server`, which starts and watches a llama-server binary):
`python tests/fakeserver.py --model M --host 127.0.0.1 --port N --ctx-size C --parallel P
[--api-key K] [--fake-token-delay-s S] [--fake-prompt-delay-s S] [--fake-answer-tokens N]`;
other llama-server flags are accepted and ignored; each request body is logged to stdout.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

WORDS = ("The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "and", "runs", "home")
PUBLIC = ("/health", "/v1/health", "/models", "/v1/models")  # llama-server asks no API key for these
FINGERPRINT = "b0000-fake"
POLL_S = 0.02  # how often a waiting request looks for a client that hung up or a server that stops

Switch = bool | Callable[[dict], bool]


def tokens(text: str) -> list[int]:
    """The fake tokenizer: one id per whitespace-separated word, the same id for the same word."""
    return [zlib.crc32(word.encode()) % 32000 for word in text.split()]


def piece(i: int) -> str:
    """Text of generated token `i` (0-based): words of a fixed sentence, with a leading space after the first."""
    return ("" if i == 0 else " ") + WORDS[i % len(WORDS)]


def answer(n: int) -> str:
    """The whole text of an answer of `n` tokens (what a client joining every chunk must get)."""
    return "".join(piece(i) for i in range(n))


def _text(content: Any) -> str:
    """A message's text: a string, or OpenAI's list of parts."""
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


class _Stop(Exception):
    """The client hung up or the server is stopping: end this request quietly."""


class FakeLlamaServer:
    """`with FakeLlamaServer(token_delay_s=0.01, slots=2) as fake:` then `ChatClient(fake.url)`."""

    def __init__(self, *, token_delay_s: float = 0.0, prompt_delay_s: float = 0.0, slots: int = 1,
                 api_key: str | None = None, answer_tokens: int = 12, ctx_size: int | None = None,
                 template_tokens: int = 3, template_tokens_per_message: int = 4, fail: Switch = False,
                 stall: Switch = False, stall_after: int = 1, model: str = "fake-model.gguf",
                 log: Callable[[str], None] | None = None, reasoning_tokens: int = 0, think_inline: bool = False,
                 reply: Callable[[dict], str | list[dict] | None] | None = None):
        self.token_delay_s, self.prompt_delay_s = token_delay_s, prompt_delay_s
        self.slots, self.api_key, self.answer_tokens, self.ctx_size = slots, api_key, answer_tokens, ctx_size
        self.template_tokens, self.template_tokens_per_message = template_tokens, template_tokens_per_message
        self.fail, self.stall, self.stall_after, self.model, self.log = fail, stall, stall_after, model, log
        # A reasoning model: the first `reasoning_tokens` of each answer stream as `reasoning_content`
        # (llama-server's split with --reasoning-format deepseek), or inline in `<think>...</think>`.
        self.reasoning_tokens, self.think_inline = reasoning_tokens, think_inline
        # A scripted answer per request body: a text, or tool calls [{"name", "arguments" (JSON text)}]
        # streamed as llama-server streams parsed calls (`delta.tool_calls`); None: the usual words.
        self.reply = reply
        self.requests: list[dict] = []
        self.hits: list[tuple[str, str, int]] = []
        self.busy = self.waiting = self.peak_busy = self.peak_waiting = 0
        self._lock = threading.Lock()
        self._free = threading.Semaphore(slots)
        self._closing = threading.Event()
        self._http: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # --- lifecycle ------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, host: str = "127.0.0.1", port: int = 0) -> FakeLlamaServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive and chunked streams, as llama-server
            disable_nagle_algorithm = True  # else each small write waits on the client's delayed ACK (40 ms)

            def do_GET(self) -> None:
                fake._route(self)

            def do_POST(self) -> None:
                fake._route(self)

            def log_message(self, *args) -> None:
                pass

        class Http(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address) -> None:
                if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
                    super().handle_error(request, client_address)  # a bug in the fake: show it

        self._http = Http((host, port), Handler)
        self.port = self._http.server_address[1]
        self._thread = threading.Thread(target=self._http.serve_forever, args=(POLL_S,), name="fake-llama-server",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; answers still streaming (or stalled) end at their next step."""
        self._closing.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def __enter__(self) -> FakeLlamaServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- what a request is worth ---------------------------------------------------------------

    def prompt_tokens(self, body: dict) -> int:
        """`timings.prompt_n` for a chat body: its messages' words plus the template's own tokens."""
        messages = body.get("messages") or []
        return self.template_tokens + sum(self.template_tokens_per_message + len(tokens(_text(m.get("content"))))
                                          for m in messages if isinstance(m, dict))

    def completion_tokens(self, body: dict, prompt_n: int = 0) -> int:
        """How many tokens the answer gets: all of max_tokens with ignore_eos, else the model stops first."""
        limit = body.get("max_tokens", body.get("n_predict"))
        limit = int(limit) if isinstance(limit, (int, float)) and limit >= 0 else None
        n = (limit if limit is not None else self.answer_tokens) if body.get("ignore_eos") else \
            min(self.answer_tokens, limit if limit is not None else self.answer_tokens)
        if self.ctx_size:
            n = min(n, self.ctx_size - prompt_n)  # the context is full: llama-server stops there
        return max(0, n)

    # --- routing ---------------------------------------------------------------------------------

    def _route(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?")[0]
        status = 0
        try:
            raw = h.rfile.read(int(h.headers.get("Content-Length") or 0)) if h.command == "POST" else b""
            if self.api_key and path not in PUBLIC and h.headers.get("Authorization") != f"Bearer {self.api_key}":
                status = self._error(h, 401, "Invalid API Key", "authentication_error")
            elif (h.command, path) in (("GET", "/health"), ("GET", "/v1/health")):
                status = self._json(h, 200, {"status": "ok"})
            elif (h.command, path) in (("GET", "/v1/models"), ("GET", "/models")):
                status = self._json(h, 200, {"object": "list", "data": [
                    {"id": self.model, "object": "model", "created": int(time.time()), "owned_by": "llamacpp",
                     "meta": {"n_ctx_train": 8192}}]})
            elif (h.command, path) == ("POST", "/tokenize"):
                status = self._tokenize(h, raw)
            elif (h.command, path) in (("POST", "/v1/chat/completions"), ("POST", "/chat/completions")):
                status = self._chat(h, raw)
            else:
                status = self._error(h, 404, "File Not Found", "not_found_error")
        except (_Stop, OSError):
            h.close_connection = True  # the client went away (or we stop): nothing more to say
        finally:
            with self._lock:
                self.hits.append((h.command, path, status))

    def _tokenize(self, h, raw: bytes) -> int:
        try:
            content = json.loads(raw or b"{}").get("content", "")
        except (ValueError, AttributeError):
            return self._error(h, 400, "invalid JSON", "invalid_request_error")
        return self._json(h, 200, {"tokens": tokens(_text(content))})

    def _chat(self, h, raw: bytes) -> int:
        try:
            body = json.loads(raw)
            assert isinstance(body, dict)
        except (ValueError, AssertionError):
            return self._error(h, 400, "invalid JSON in the request body", "invalid_request_error")
        with self._lock:
            self.requests.append(body)
        if self.log:
            self.log("request: " + json.dumps(body))
        if self._on(self.fail, body):
            return self._error(h, 500, "fake failure (FakeLlamaServer fail=...)", "server_error")
        prompt_n = self.prompt_tokens(body)
        if self.ctx_size and prompt_n >= self.ctx_size:
            return self._error(h, 400, f"request ({prompt_n} tokens) exceeds the available context size "
                                       f"({self.ctx_size} tokens), try increasing it", "exceed_context_size_error",
                               n_prompt_tokens=prompt_n, n_ctx=self.ctx_size)
        self._take_slot(h)
        try:
            return self._answer(h, body, prompt_n)
        finally:
            with self._lock:
                self.busy -= 1
            self._free.release()

    def _take_slot(self, h) -> None:
        """Wait for a free slot, as llama-server queues a task while every slot is busy."""
        with self._lock:
            self.waiting += 1
            self.peak_waiting = max(self.peak_waiting, self.waiting)
        try:
            while not self._free.acquire(timeout=POLL_S):
                self._check(h)
        finally:
            with self._lock:
                self.waiting -= 1
        with self._lock:
            self.busy += 1
            self.peak_busy = max(self.peak_busy, self.busy)

    def _answer(self, h, body: dict, prompt_n: int) -> int:
        script = self._script(body)
        n = len(script) if script is not None else self.completion_tokens(body, prompt_n)
        stall_at = self.stall_after if self._on(self.stall, body) else None
        stream = bool(body.get("stream"))
        ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

        def chunk(choices: list, **extra) -> dict:
            return {"choices": choices, "created": created, "id": ident, "model": self.model,
                    "system_fingerprint": FINGERPRINT, "object": "chat.completion.chunk", **extra}

        if stream:
            h.send_response(200)
            h.send_header("Content-Type", "text/event-stream")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            self._event(h, chunk([{"finish_reason": None, "index": 0,
                                   "delta": {"role": "assistant", "content": None}}]))
        t0 = time.perf_counter()
        self._sleep(h, self.prompt_delay_s)
        first = last = time.perf_counter()
        for i in range(n):
            if i == stall_at:
                self._sleep(h, None)  # until the client hangs up or the server stops
            if i:
                self._sleep(h, self.token_delay_s)
            last = time.perf_counter()
            if stream:
                delta = script[i] if script is not None else self._delta(i, n)
                self._event(h, chunk([{"finish_reason": None, "index": 0, "delta": delta}]))
        if stall_at is not None and stall_at >= n:
            self._sleep(h, None)
        finish = "length" if body.get("ignore_eos") or n < self.answer_tokens else "stop"
        if script is not None:
            finish = "tool_calls" if any("tool_calls" in d for d in script) else "stop"
        prompt_ms = max(first - t0, 1e-6) * 1000
        predicted_ms = max(last - first, 1e-6) * 1000
        timings = {"cache_n": 0, "prompt_n": prompt_n, "prompt_ms": prompt_ms,
                   "prompt_per_token_ms": prompt_ms / max(prompt_n, 1),
                   "prompt_per_second": prompt_n / prompt_ms * 1000,
                   "predicted_n": n, "predicted_ms": predicted_ms,
                   "predicted_per_token_ms": predicted_ms / max(n, 1),
                   "predicted_per_second": n / predicted_ms * 1000}
        usage = {"completion_tokens": n, "prompt_tokens": prompt_n, "total_tokens": n + prompt_n,
                 "prompt_tokens_details": {"cached_tokens": 0}}
        if not stream:
            return self._json(h, 200, {"choices": [{"finish_reason": finish, "index": 0,
                                                    "message": {"role": "assistant", "content": answer(n)}}],
                                       "created": created, "model": self.model, "system_fingerprint": FINGERPRINT,
                                       "object": "chat.completion", "usage": usage, "id": ident, "timings": timings})
        last_events = [chunk([{"finish_reason": finish, "index": 0, "delta": {}}])]
        if (body.get("stream_options") or {}).get("include_usage"):
            last_events.append(chunk([], usage=usage))
        last_events[-1]["timings"] = timings
        for event in last_events:
            self._event(h, event)
        self._write_chunk(h, b"data: [DONE]\n\n")
        self._write_chunk(h, b"")
        return 200

    # --- helpers -------------------------------------------------------------------------------

    def _delta(self, i: int, n: int) -> dict:
        """Token i of n: reasoning first (split or inline), then the answer."""
        thinking = min(self.reasoning_tokens, n - 1)
        if i >= thinking:
            text = piece(i)
            return {"content": f"</think>{text}" if self.think_inline and i == thinking and thinking else text}
        if self.think_inline:
            return {"content": f"<think>{piece(i)}" if i == 0 else piece(i)}
        return {"reasoning_content": piece(i)}

    def _script(self, body: dict) -> list[dict] | None:
        """`reply`'s answer as deltas: text in pieces of 8 characters, or per tool call a delta naming
        it with the first half of its arguments' JSON text and one with the rest."""
        found = self.reply(body) if self.reply else None
        if found is None:
            return None
        if isinstance(found, str):
            return [{"content": found[i:i + 8]} for i in range(0, len(found), 8)] or [{"content": ""}]
        deltas = []
        for i, call in enumerate(found):
            text = call["arguments"]
            deltas += [{"tool_calls": [{"index": i, "id": f"call_{i}", "type": "function",
                                        "function": {"name": call["name"], "arguments": text[:len(text) // 2]}}]},
                       {"tool_calls": [{"index": i, "function": {"arguments": text[len(text) // 2:]}}]}]
        return deltas

    @staticmethod
    def _on(switch: Switch, body: dict) -> bool:
        return bool(switch(body)) if callable(switch) else bool(switch)

    def _check(self, h) -> None:
        """Raise _Stop if the server is stopping or the client closed its end of the connection."""
        if self._closing.is_set():
            raise _Stop
        sock = h.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable and sock.recv(1, socket.MSG_PEEK) == b"":
                raise _Stop
        except (OSError, ValueError):
            raise _Stop from None

    def _sleep(self, h, seconds: float | None) -> None:
        """Wait `seconds` (None: for ever), ending early with _Stop if the client or the server goes."""
        if seconds is not None and seconds <= 0:
            return
        end = None if seconds is None else time.perf_counter() + seconds
        while True:
            self._check(h)
            left = POLL_S if end is None else end - time.perf_counter()
            if left <= 0:
                return
            self._closing.wait(min(POLL_S, left))

    def _event(self, h, event: dict) -> None:
        self._write_chunk(h, b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n")

    @staticmethod
    def _write_chunk(h, data: bytes) -> None:
        h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        h.wfile.flush()

    @staticmethod
    def _json(h, status: int, payload: dict) -> int:
        data = json.dumps(payload).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json; charset=utf-8")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)
        return status

    def _error(self, h, status: int, message: str, kind: str, **extra) -> int:
        return self._json(h, status, {"error": {"code": status, "message": message, "type": kind, **extra}})


# --- as a process, started with llama-server's command line ------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="a fake llama-server (tests/fakeserver.py)")
    parser.add_argument("--model", "-m", default="fake-model.gguf")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--ctx-size", "-c", type=int, default=4096)
    parser.add_argument("--parallel", "-np", type=int, default=1)
    parser.add_argument("--api-key")
    parser.add_argument("--fake-token-delay-s", type=float, default=0.0)
    parser.add_argument("--fake-prompt-delay-s", type=float, default=0.0)
    parser.add_argument("--fake-answer-tokens", type=int, default=12)
    parser.add_argument("--fake-reasoning-tokens", type=int, default=0)
    args, _ = parser.parse_known_args(argv)  # --threads, --cache-ram, --no-webui, ...: nothing to do here

    def log(line: str) -> None:
        print(line, flush=True)

    fake = FakeLlamaServer(token_delay_s=args.fake_token_delay_s, prompt_delay_s=args.fake_prompt_delay_s,
                           slots=args.parallel, api_key=args.api_key, answer_tokens=args.fake_answer_tokens,
                           ctx_size=args.ctx_size // max(1, args.parallel),  # per slot, as llama-server
                           model=args.model.rsplit("/", 1)[-1], log=log,
                           reasoning_tokens=args.fake_reasoning_tokens)
    fake.start(args.host, args.port)
    log(f"main: fake llama-server listening on {fake.url}, {args.parallel} slots")
    try:
        threading.Event().wait()  # until SIGTERM (the default action ends the process) or Ctrl+C
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
