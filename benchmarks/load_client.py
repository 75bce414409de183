"""Load client: how many requests per second can the load profile's client drive, and what does it add?

The load profile's figures are only the server's if the client keeps up. Here the server is one
written for the benchmark (`serve`): an asyncio process of its own that answers every streaming
chat completion at once with 16 content chunks, a finish chunk and a usage chunk carrying
llama-server-style `timings`, each its own HTTP chunk, as llama-server sends them. It times its
own handling of each request (whole request received to response ready to write) and reports it
in `timings.bench_handling_ms`. The client is llmspec.run.load.run_load driving ChatClient
workers exactly as the load profile does, at concurrency 1, 8, 32 and 128. Reported: requests per
second sustained, and the client's added latency (client-observed latency minus the server's
handling), p50 and p99. Target: at least 500 requests/s at concurrency 32 on 2 cores, added p99
under 2 ms at concurrency 1.
"""

from __future__ import annotations

import asyncio
import cProfile
import json
import multiprocessing
import pstats
import socket
import sys
import time

import psutil
from _common import REPO, figure, machine_note, say

from llmspec.run.client import ChatClient
from llmspec.run.load import load_questions, pick_questions, run_load
from llmspec.stats import percentile

TOKENS = 16
CONCURRENCY = (1, 8, 32, 128)
REQUESTS = 1000  # per concurrency level, after a warm-up
TIMEOUT_S = 60.0
HEADERS = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
           b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n")


# --- the server --------------------------------------------------------------------------------------


def _chunk(event: dict | str) -> bytes:
    """One SSE event as one HTTP chunk."""
    text = event if isinstance(event, str) else json.dumps(event, separators=(",", ":"))
    data = ("data: " + text + "\n\n").encode()
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def _event(delta: dict, finish: str | None = None) -> dict:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "created": 1700000000,
            "id": "chatcmpl-bench", "model": "bench", "object": "chat.completion.chunk"}


# Everything but the timings is the same for every request, so it is built once.
BODY = b"".join([_chunk(_event({"role": "assistant", "content": None}))]
                + [_chunk(_event({"content": f" word{i}"})) for i in range(TOKENS)]
                + [_chunk(_event({}, "length"))])
TAIL = _chunk("[DONE]") + b"0\r\n\r\n"


class Answering(asyncio.Protocol):
    """Minimal HTTP/1.1 keep-alive: read a request (headers + Content-Length body), answer it whole."""

    def connection_made(self, transport) -> None:
        self.transport, self.buffer = transport, b""
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15:].split(b"\r\n", 1)[0]) if at >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            body, self.buffer = self.buffer[end + 4:end + 4 + length], self.buffer[end + 4 + length:]
            self._answer(body, time.perf_counter())

    def _answer(self, body: bytes, t0: float) -> None:
        json.loads(body)  # a real server parses the request; so does this one
        timings = {"cache_n": 0, "prompt_n": 20, "predicted_n": TOKENS, "predicted_per_second": 1e6}
        usage = {**_event({}), "choices": [], "timings": timings,
                 "usage": {"completion_tokens": TOKENS, "prompt_tokens": 20, "total_tokens": TOKENS + 20}}
        timings["bench_handling_ms"] = (time.perf_counter() - t0) * 1000  # all but the write
        self.transport.write(HEADERS + BODY + _chunk(usage) + TAIL)


def serve(port_out) -> None:
    """The benchmark server's process: bind a free loopback port, report it, answer until killed."""
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Answering, "127.0.0.1", 0, backlog=1024)
        port_out.put(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    asyncio.run(main())


# --- the client side ---------------------------------------------------------------------------------


def drive(url: str, questions: list[str], concurrent: int):
    """One load run as the load profile does it: run_load with one ChatClient per worker."""
    make_client = lambda stop: ChatClient(url, "bench", None, TIMEOUT_S, deadline_s=TIMEOUT_S, stop=stop)
    return run_load(make_client, questions, concurrent, TOKENS)


def level(url: str, questions: list[str], concurrent: int, server: psutil.Process) -> dict:
    me = psutil.Process()
    cpu0, server0 = me.cpu_times(), server.cpu_times()
    result = drive(url, questions, concurrent)
    cpu1, server1 = me.cpu_times(), server.cpu_times()
    ok = [a for a in result.answers if a.ok]
    if len(ok) != len(questions):
        first = next((a.record.error for a in result.answers if not a.ok), "missing answers")
        sys.exit(f"load_client: {len(questions) - len(ok)} of {len(questions)} requests failed at concurrency "
                 f"{concurrent}: {first}")
    handling = [a.record.timings["bench_handling_ms"] / 1000 for a in ok]
    added = [a.latency_s - h for a, h in zip(ok, handling)]
    busy = lambda t0, t1: (t1.user + t1.system - t0.user - t0.system) / result.wall_s * 100
    return {"concurrent": concurrent, "rps": len(ok) / result.wall_s,
            "p50_ms": percentile([a.latency_s for a in ok], 50) * 1000,
            "p99_ms": percentile([a.latency_s for a in ok], 99) * 1000,
            "handling_p50_ms": percentile(handling, 50) * 1000,
            "added_p50_ms": percentile(added, 50) * 1000, "added_p99_ms": percentile(added, 99) * 1000,
            "client_cpu_pct": busy(cpu0, cpu1), "server_cpu_pct": busy(server0, server1)}


def table(rows: list[dict]) -> str:
    head = (f"{'concurrency':>11} {'req/s':>8} {'lat p50 ms':>10} {'lat p99 ms':>10} {'server ms':>9} "
            f"{'added p50':>9} {'added p99':>9} {'client CPU':>10} {'server CPU':>10}")
    lines = [head] + [f"{r['concurrent']:>11} {r['rps']:>8.0f} {r['p50_ms']:>10.2f} {r['p99_ms']:>10.2f} "
                      f"{r['handling_p50_ms']:>9.3f} {r['added_p50_ms']:>9.2f} {r['added_p99_ms']:>9.2f} "
                      f"{r['client_cpu_pct']:>9.0f}% {r['server_cpu_pct']:>9.0f}%" for r in rows]
    return "\n".join(lines)


def profile_client(url: str, question: str, requests: int = 300, top: int = 25) -> None:
    """Where one request's client time goes: sequential ChatClient.chat calls in this thread."""
    client = ChatClient(url, "bench", None, TIMEOUT_S, deadline_s=TIMEOUT_S)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(requests):
        client.chat(question, max_tokens=TOKENS, seed=42)
    profiler.disable()
    client.close()
    say(f"  cProfile of {requests} sequential ChatClient.chat calls, top {top} by cumulative time:")
    pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(top)


def main() -> None:
    ports = multiprocessing.Queue()
    proc = multiprocessing.Process(target=serve, args=(ports,), daemon=True)
    proc.start()
    try:
        url = f"http://127.0.0.1:{ports.get(timeout=30)}"
        server = psutil.Process(proc.pid)
        questions = pick_questions(load_questions(REPO / "prompts" / "questions.json"), REQUESTS)
        say(f"load_client: benchmark server at {url} (pid {proc.pid}), {TOKENS} tokens per answer, "
            f"{REQUESTS} requests per level")
        machine_note()
        drive(url, questions[:100], 8)  # warm-up: imports, connection pools, the server's first answers
        rows = []
        for concurrent in CONCURRENCY:
            rows.append(level(url, questions, concurrent, server))
            say(f"  concurrency {concurrent}: {rows[-1]['rps']:.0f} req/s")
        say(table(rows))
        profile_client(url, questions[0])
    finally:
        proc.kill()
        proc.join()
    at = {r["concurrent"]: r for r in rows}
    figure("load_client", f"{at[32]['rps']:.0f} req/s at concurrency 32, added p99 {at[1]['added_p99_ms']:.2f} ms "
                          "at concurrency 1", ">= 500 req/s, < 2 ms")


if __name__ == "__main__":
    main()
