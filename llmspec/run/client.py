"""Streaming chat completions against an OpenAI-compatible server, timed on the client's clock.

Reasoning models: `reasoning_content` deltas (or a leading `<think>...</think>` block where the
engine does not split them) are the reasoning, timed apart (`ttft_reasoning_s`); `ttft_s` stays
the first token of the answer, which is what a user waits for. Tool calls streamed as
`delta.tool_calls` are assembled per index (name, arguments as the JSON text sent).

Each request keeps both clocks: our own arrival timestamps for every content chunk, and the
engine's own account of it (`Timings`: llama-server's `timings` block, mistral.rs's usage,
Ollama's eval durations), read by the engine (`llmspec.engines`), which also owns the wire:
the path, the body and how a streamed line becomes an OpenAI chunk. TTFT is measured to the
first chunk with non-empty content, not to the first SSE event (some servers send a role-only
chunk first, which would make TTFT look instant).
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import requests

from llmspec.engines import DEFAULT, Engine, engine_named
from llmspec.engines.base import TOOL_CALLS_FIELD


@dataclass
class RequestRecord:
    prompt_name: str
    send_unix: float
    ttfb_s: float | None = None  # headers / first bytes of the body
    first_event_s: float | None = None  # first SSE event, possibly role-only
    ttft_s: float | None = None  # first non-empty content token of the answer (not of reasoning)
    total_s: float | None = None
    chunk_times_s: list[float] = field(default_factory=list)  # every generated-token event: answer, reasoning, calls
    content: str = ""  # the answer, without a <think> block
    reasoning: str = ""  # reasoning_content deltas, or the <think> block
    ttft_reasoning_s: float | None = None  # first reasoning token
    reasoning_chunks: int = 0  # streamed reasoning events (llama-server sends one per token)
    tool_calls: list[dict[str, Any]] = field(default_factory=list)  # assembled: {"id", "name", "arguments"}
    first_tool_call_s: float | None = None
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    timings: dict[str, Any] | None = None
    error: str | None = None
    retried: bool = False  # the pooled connection was closed under us; resent on a new one

    @property
    def completion_tokens(self) -> int | None:
        if self.timings and "predicted_n" in self.timings:
            return int(self.timings["predicted_n"])
        if self.usage and "completion_tokens" in self.usage:
            return int(self.usage["completion_tokens"])
        return None

    def decode_tokens_per_s(self) -> float | None:
        """Tokens after the first over the time between first and last content chunk (client clock)."""
        n = self.completion_tokens
        if n is None or n < 2 or len(self.chunk_times_s) < 2:
            return None
        span = self.chunk_times_s[-1] - self.chunk_times_s[0]
        return (n - 1) / span if span > 0 else None

    def inter_token_cv_pct(self) -> float | None:
        gaps = [b - a for a, b in zip(self.chunk_times_s, self.chunk_times_s[1:])]
        if len(gaps) < 2 or statistics.fmean(gaps) <= 0:
            return None
        return statistics.pstdev(gaps) / statistics.fmean(gaps) * 100

    @property
    def ttft_answer_s(self) -> float | None:
        return self.ttft_s

    @property
    def answer_tokens(self) -> int | None:
        """Generated tokens that are not reasoning (the engine counts both as completion tokens;
        llama-server streams one reasoning event per token)."""
        n = self.completion_tokens
        return None if n is None else max(n - self.reasoning_chunks, 0)

    def as_sample(self) -> dict[str, Any]:
        sample = {k: v for k, v in asdict(self).items() if k not in _ONLY_WHEN_SET or v}
        sample["completion_tokens"] = self.completion_tokens
        if self.reasoning or self.ttft_reasoning_s is not None:
            sample["ttft_answer_s"] = self.ttft_s
            sample["reasoning_tokens"] = self.reasoning_chunks
            sample["answer_tokens"] = self.answer_tokens
        return sample


# Sample keys written only when the request had them: results of models that neither reason nor call
# tools keep the shape they always had.
_ONLY_WHEN_SET = ("reasoning", "ttft_reasoning_s", "reasoning_chunks", TOOL_CALLS_FIELD, "first_tool_call_s")


MAX_LINE_BYTES = 1 << 20  # a chat event is a few hundred bytes; a megabyte without a newline is not a stream


class BrokenStream(requests.RequestException):
    """The answer is not a chat stream: an endless line, an unreadable event, or no events at all."""


class DeadlineExceeded(requests.Timeout):
    """The whole answer took longer than the client's deadline (a slow stream never times out per read)."""


class Interrupted(requests.RequestException):
    """The caller asked the stream to stop (Ctrl+C in a concurrent run)."""


def _session_for(base_url: str) -> requests.Session:
    """A session that honours the environment (proxies, NO_PROXY, a CA bundle) as requests does,
    but looks it up once instead of on every request: that lookup was a third of the client's
    own time per request, which a load test at hundreds of requests per second would measure."""
    session = requests.Session()
    found = session.merge_environment_settings(base_url, {}, None, None, None)
    session.proxies.update(found["proxies"])
    session.verify = found["verify"]
    session.trust_env = False
    return session


class ChatClient:
    """A reusable connection to one server; cheap to create, so one per profile run or worker.

    `timeout_s` bounds each wait for bytes; `deadline_s`, when given, bounds the whole answer (a server
    that trickles bytes forever is cut off there: the runner gives its profiles the request timeout);
    setting `stop` ends a stream early with `Interrupted`. `on_record`, when set, is called with
    every finished request (from the thread that sent it): the run's progress file listens there.
    """

    on_record: Callable[[RequestRecord], None] | None = None

    def __init__(self, base_url: str, model: str = "default", api_key: str | None = None,
                 timeout_s: float = 600.0, deadline_s: float | None = None, stop: threading.Event | None = None,
                 engine: Engine | None = None):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s
        self.stop = stop
        self.engine = engine or engine_named(DEFAULT)
        self.chat_url = f"{self.base_url}{self.engine.chat_path}"
        self.session = _session_for(self.base_url)
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"

    def chat(self, prompt: str, *, prompt_name: str = "", max_tokens: int, system: str | None = None,
             messages: list[dict[str, Any]] | None = None, **params: Any) -> RequestRecord:
        """Send one streaming request and time every content chunk as it arrives. `messages`, when
        given, is the whole conversation (a multi-turn session) and `prompt`/`system` are unused;
        `params` go into the body as they are (tools, tool_choice, response_format, cache_prompt)."""
        if messages is None:
            messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user",
                                                                                      "content": prompt}]
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens, "stream": True,
                "stream_options": {"include_usage": True}, "cache_prompt": False, **params}
        record = self._send(body, prompt_name)
        if record.error and record.ttfb_s is None and record.error.startswith("ConnectionError"):
            # A keep-alive connection the server closed between requests: the request never
            # reached it, so sending again on a fresh connection is safe and measures the same.
            record = self._send(body, prompt_name)
            record.retried = True
        if self.on_record is not None:
            self.on_record(record)
        return record

    def _prepared(self, body: dict[str, Any]) -> requests.PreparedRequest:
        """The chat request, prepared without `Session.prepare_request`, whose merging of session
        cookies, auth and hooks (none of which a chat request has) was a fifth of the client's
        own time per request. The session's headers (the API key) still go with it."""
        prepared = requests.PreparedRequest()
        prepared.prepare(method="POST", url=self.chat_url, headers=self.session.headers,
                         json=self.engine.request(body))
        return prepared

    def _send(self, body: dict[str, Any], prompt_name: str) -> RequestRecord:
        record = RequestRecord(prompt_name=prompt_name, send_unix=time.time())
        t0 = time.perf_counter()
        try:
            with self.session.send(self._prepared(body), stream=True, timeout=(10, self.timeout_s)) as resp:
                record.ttfb_s = time.perf_counter() - t0
                if resp.status_code != 200:
                    record.error = f"HTTP {resp.status_code}: {resp.text[:300]}"
                    record.total_s = time.perf_counter() - t0
                    return record
                self._read_stream(resp, record, t0)
        except requests.RequestException as exc:
            record.error = self._explain(exc)
        record.total_s = time.perf_counter() - t0
        return record

    def _explain(self, exc: requests.RequestException) -> str:
        """What happened, in words, with the exception type kept for the curious."""
        text, kind = str(exc), type(exc).__name__
        if isinstance(exc, BrokenStream):
            return f"not a chat stream: {text}"[:300]
        if isinstance(exc, (DeadlineExceeded, Interrupted)):
            return f"{'Timeout' if isinstance(exc, DeadlineExceeded) else 'Interrupted'}: {text}"
        if isinstance(exc, requests.Timeout) or "timed out" in text:
            return f"timed out: no data from the server for {self.timeout_s:g} s [{kind}]"
        if isinstance(exc, requests.exceptions.ChunkedEncodingError):
            return f"the server closed the connection in the middle of an answer (crashed or killed?) [{kind}]"
        if isinstance(exc, requests.ConnectionError):
            return f"ConnectionError: cannot reach or lost the server at {self.base_url}: {text[:200]}"
        return f"{kind}: {text}"[:300]

    def _read_stream(self, resp: requests.Response, record: RequestRecord, t0: float) -> None:
        parts = _Parts()
        buffer = b""
        for data in resp.iter_content(chunk_size=None):
            now = time.perf_counter() - t0
            if self.stop is not None and self.stop.is_set():
                raise Interrupted("stopped by Ctrl+C")
            if self.deadline_s is not None and now > self.deadline_s:
                raise DeadlineExceeded(f"answer not complete within {self.deadline_s:g} s")
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            if len(buffer) > MAX_LINE_BYTES:
                raise BrokenStream(f"a line of over {MAX_LINE_BYTES >> 20} MB without an end")
            for line in lines:
                try:
                    event = self.engine.event(line)
                except ValueError as exc:
                    raise BrokenStream(f"an event it cannot read ({exc})") from None
                if event is None:
                    continue
                if record.first_event_s is None:
                    record.first_event_s = now
                self._apply_event(event, record, parts, now)
        parts.finish(record, time.perf_counter() - t0)
        if record.first_event_s is None and record.error is None:
            kind = resp.headers.get("Content-Type", "no Content-Type")
            raise BrokenStream(f"a 200 answer without a single event ({kind}: {buffer[:60]!r})")

    def _apply_event(self, event: dict, record: RequestRecord, parts: _Parts, now: float) -> None:
        for choice in event.get("choices") or []:
            delta = choice.get("delta") or {}
            thought = delta.get("reasoning_content") or delta.get("reasoning") or ""
            answer = delta.get("content") or ""
            if thought or answer or delta.get(TOOL_CALLS_FIELD):
                record.chunk_times_s.append(now)
            if thought:
                parts.think(record, thought, now)
            if answer:
                parts.say(record, answer, now)
            for call in delta.get(TOOL_CALLS_FIELD) or []:
                parts.call(record, call, now)
            record.finish_reason = choice.get("finish_reason") or record.finish_reason
        if event.get("usage"):
            record.usage = event["usage"]
        if (timings := self.engine.timings(event)) is not None:
            record.timings = timings.as_dict()
        if event.get("error"):
            record.error = json.dumps(event["error"])[:300]

    def tokenize(self, text: str) -> list[int]:
        """Exact token ids from the server's own tokenizer (llama-server /tokenize)."""
        try:
            resp = self.session.post(f"{self.base_url}/tokenize", json={"content": text}, timeout=60)
        except requests.ConnectionError:  # a keep-alive connection closed under us, as in chat()
            resp = self.session.post(f"{self.base_url}/tokenize", json={"content": text}, timeout=60)
        resp.raise_for_status()
        return resp.json()["tokens"]

    def close(self) -> None:
        self.session.close()


class _Parts:
    """The streamed text of one answer, split into reasoning and answer as it arrives.

    An engine that does not split reasoning sends a leading `<think>...</think>` block as content:
    text is held back until it is clear whether the answer starts with `<think>`, then routed to
    `reasoning` up to `</think>`, so `ttft_s` is the first token of the answer proper either way.
    """

    OPEN, CLOSE = "<think>", "</think>"

    def __init__(self) -> None:
        self.answer: list[str] = []
        self.thought: list[str] = []
        self.mode = "undecided"  # -> "think" -> "answer", or straight to "answer"
        self.held = ""
        self.calls: dict[int, dict[str, Any]] = {}

    def think(self, record: RequestRecord, text: str, now: float) -> None:
        if record.ttft_reasoning_s is None:
            record.ttft_reasoning_s = now
        record.reasoning_chunks += 1
        self.thought.append(text)

    def say(self, record: RequestRecord, text: str, now: float) -> None:
        if self.mode == "answer":
            self._answer(record, text, now)
            return
        self.held += text
        if self.mode == "undecided":
            start = self.held.lstrip()
            if len(start) < len(self.OPEN) and self.OPEN.startswith(start):
                return  # "<thi": not known yet
            if not start.startswith(self.OPEN):
                self.mode, text, self.held = "answer", self.held, ""
                self._answer(record, text, now)
                return
            self.mode, self.held = "think", start[len(self.OPEN):]
        if self.CLOSE in self.held:  # mode "think"
            thought, _, rest = self.held.partition(self.CLOSE)
            if thought:
                self.think(record, thought, now)
            self.mode, self.held = "answer", ""
            self._answer(record, rest, now)
        elif len(self.held) > len(self.CLOSE):  # pass on all but what could start "</think>"
            keep = len(self.CLOSE) - 1
            self.think(record, self.held[:-keep], now)
            self.held = self.held[-keep:]

    def _answer(self, record: RequestRecord, text: str, now: float) -> None:
        if not self.answer and self.thought:  # the answer proper starts after the reasoning's whitespace
            text = text.lstrip()
        if not text:
            return
        if record.ttft_s is None and text.strip():
            record.ttft_s = now
        self.answer.append(text)

    def call(self, record: RequestRecord, delta: dict[str, Any], now: float) -> None:
        """One streamed piece of a tool call: the first piece of an index names it, later ones
        carry more of its arguments' JSON text."""
        if record.first_tool_call_s is None:
            record.first_tool_call_s = now
        found = self.calls.setdefault(delta.get("index", len(self.calls)), {"id": None, "name": "", "arguments": ""})
        found["id"] = delta.get("id") or found["id"]
        function = delta.get("function") or {}
        found["name"] += function.get("name") or ""
        found["arguments"] += function.get("arguments") or ""

    def finish(self, record: RequestRecord, now: float) -> None:
        if self.held:  # a stream that ended inside "<think>" or on a held-back prefix
            if self.mode == "think":
                self.think(record, self.held, now)
            else:
                self._answer(record, self.held, now)
        record.content = "".join(self.answer)
        record.reasoning = "".join(self.thought)
        record.tool_calls = [self.calls[i] for i in sorted(self.calls)]
