"""The Ollama engine against a recorded-output fake of `ollama` (tests/fixtures/ollama, README there).

No Ollama, llama-server or model is needed: the fake replays the shapes and numbers of Ollama's
docs/api.md, so these tests check the engine's plumbing (settings, import, load, the native wire),
never Ollama's speed.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import requests

from llmspec.engines import ENGINES, ServerArgs
from llmspec.engines.base import CACHED_TOKENS, ENGINE_CLOCK, KV_CACHE_TYPES, PROMPT_CACHE_CONTROL
from llmspec.engines.ollama import Ollama
from llmspec.errors import CellError

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "ollama"
FAKE = FIXTURES / "bin" / "ollama"
RECORDED = FIXTURES / "recorded"
OLLAMA = Ollama()


def args(**kw) -> ServerArgs:
    return ServerArgs(**{"ctx_size": 8192, "threads": 2, "parallel": 1, "engine": "ollama", **kw})


def body(**kw) -> dict:
    """The body llmspec's client builds (llmspec/run/client.py ChatClient.chat)."""
    return {"model": "llmspec-x", "messages": [{"role": "user", "content": "why is the sky blue?"}],
            "max_tokens": 64, "stream": True, "stream_options": {"include_usage": True}, "cache_prompt": False,
            **kw}


def recorded_lines() -> list[bytes]:
    return (RECORDED / "chat_stream.ndjson").read_bytes().splitlines()


# --- settings ------------------------------------------------------------------------------------------
def test_registered_with_its_class_attributes():
    assert isinstance(ENGINES["ollama"], Ollama)
    assert (OLLAMA.program, OLLAMA.env_var, OLLAMA.health_path, OLLAMA.chat_path) == (
        "ollama", "OLLAMA_BIN", "/", "/api/chat")
    assert "ollama.com" in OLLAMA.install_hint
    assert ENGINE_CLOCK in OLLAMA.supports
    assert CACHED_TOKENS not in OLLAMA.supports and PROMPT_CACHE_CONTROL not in OLLAMA.supports
    assert any("cached prompt tokens" in said for said in OLLAMA.missing())


def test_flags_are_the_modelfile_parameters_and_server_settings():
    given = args(parallel=4, extra=("PARAMETER num_batch 256", "OLLAMA_FLASH_ATTENTION=1"),
                 tuned=(("n_gpu_layers", "all"), ("no_mmap", True)))
    flags = OLLAMA.flags(given)
    # num_ctx is per request: Ollama allocates num_ctx x OLLAMA_NUM_PARALLEL, so 8192 in all.
    assert flags == ["PARAMETER num_ctx 2048", "PARAMETER num_thread 2", "PARAMETER num_gpu 999",
                     "PARAMETER use_mmap false", "OLLAMA_NUM_PARALLEL=4", "PARAMETER num_batch 256",
                     "OLLAMA_FLASH_ATTENTION=1"]
    assert OLLAMA.flags(args()) == ["PARAMETER num_ctx 8192", "PARAMETER num_thread 2", "OLLAMA_NUM_PARALLEL=1"]
    assert OLLAMA.command(Path("/x/ollama"), Path("/m.gguf"), "127.0.0.1", 1234, given) == ["/x/ollama", "serve"]


def test_typed_names_the_ollama_settings():
    values = {"threads": 4, "parallel": 2, "n_gpu_layers": "all", "cache_type_k": "q8_0", "cache_type_v": "q8_0",
              "flash_attn": "on", "engine": "ollama"}
    assert OLLAMA.typed(values, args()) == ("num_thread=4 OLLAMA_NUM_PARALLEL=2 num_gpu=999 OLLAMA_KV_CACHE_TYPE=q8_0 "
                                            "OLLAMA_FLASH_ATTENTION=1")


def test_environment_is_private_and_keeps_the_model_loaded(tmp_path):
    env = OLLAMA.environment("127.0.0.1", 4321, args(parallel=2, extra=("OLLAMA_FLASH_ATTENTION=0",)), tmp_path)
    assert env["OLLAMA_HOST"] == "127.0.0.1:4321"
    assert env["OLLAMA_MODELS"] == str(tmp_path / "models")
    assert env["OLLAMA_KEEP_ALIVE"] == "-1"
    assert env["OLLAMA_NUM_PARALLEL"] == "2"
    assert env["OLLAMA_NOPRUNE"] == "1"
    assert env["OLLAMA_CONTEXT_LENGTH"] == "4096"
    assert env["OLLAMA_MAX_LOADED_MODELS"] == "1"
    assert env["OLLAMA_FLASH_ATTENTION"] == "0"  # the user's extra argument
    assert "OLLAMA_KV_CACHE_TYPE" not in env


def test_kv_cache_type_is_one_for_k_and_v(tmp_path):
    both = args(tuned=(("cache_type_k", "q8_0"), ("cache_type_v", "q8_0")))
    assert KV_CACHE_TYPES in OLLAMA.supports
    assert OLLAMA.cannot(both) is None
    assert OLLAMA.cache_types(both) == ("q8_0", "q8_0")
    assert OLLAMA.environment("127.0.0.1", 1, both, tmp_path)["OLLAMA_KV_CACHE_TYPE"] == "q8_0"
    assert "OLLAMA_KV_CACHE_TYPE=q8_0" in OLLAMA.flags(both)
    assert "one KV cache type" in OLLAMA.cannot(args(tuned=(("cache_type_k", "q8_0"),)))
    assert "one KV cache type" in OLLAMA.cannot(args(tuned=(("cache_type_k", "q8_0"), ("cache_type_v", "q4_0"))))
    assert "flash attention" in OLLAMA.cannot(args(tuned=(("cache_type_k", "q4_0"), ("cache_type_v", "q4_0"),
                                                          ("flash_attn", "off"))))
    assert OLLAMA.cannot(args(tuned=(("cache_type_k", "f16"), ("cache_type_v", "f16")))) is None
    assert OLLAMA.cache_types(args()) == (None, None)
    assert "ubatch_size" in OLLAMA.cannot(args(tuned=(("ubatch_size", 256),)))
    assert "mlock" in OLLAMA.cannot(args(tuned=(("mlock", True),)))


# --- the wire ----------------------------------------------------------------------------------------------
def test_request_maps_the_openai_body_to_the_native_one():
    schema = {"type": "json_schema", "json_schema": {"schema": {"type": "object"}}}
    native = OLLAMA.request(body(temperature=0.0, seed=42, top_p=0.9, stop="\n\n", ignore_eos=True,
                                 tools=[{"type": "function", "function": {"name": "f"}}], response_format=schema))
    assert native == {"model": "llmspec-x", "messages": body()["messages"], "stream": True,
                      "options": {"temperature": 0.0, "seed": 42, "top_p": 0.9, "num_predict": 64, "stop": ["\n\n"]},
                      "tools": [{"type": "function", "function": {"name": "f"}}], "format": {"type": "object"}}
    plain = OLLAMA.request(body())
    assert plain["options"] == {"num_predict": 64} and "format" not in plain and "tools" not in plain
    assert OLLAMA.request(body(response_format={"type": "json_object"}))["format"] == "json"


def test_event_and_timings_on_the_recorded_lines():
    events = [OLLAMA.event(line) for line in recorded_lines()]
    assert all(e is not None for e in events)
    *chunks, final = events
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text.startswith("The sky is blue") and len(chunks) == 15
    assert all(c["choices"][0]["finish_reason"] is None and "usage" not in c for c in chunks)
    assert all(OLLAMA.timings(c) is None for c in chunks)
    assert final["choices"][0]["finish_reason"] == "stop"
    assert final["usage"] == {"prompt_tokens": 169, "completion_tokens": 15, "total_tokens": 184}
    assert final["ollama"]["eval_duration"] == 115959084
    timings = OLLAMA.timings(final)
    assert timings.prompt_n == 169 and timings.predicted_n == 15 and timings.cache_n is None
    assert timings.prompt_ms == pytest.approx(24.573166)
    assert timings.predicted_ms == pytest.approx(115.959084)
    assert timings.as_dict()["predicted_per_second"] == pytest.approx(15 / 0.115959084)
    assert "cache_n" not in timings.as_dict()
    assert OLLAMA.event(b"") is None and OLLAMA.event(b"not json") is None
    assert OLLAMA.event(b'{"error":"boom"}')["error"] == {"message": "boom"}


def test_event_maps_length_thinking_and_tool_calls():
    final = OLLAMA.event(json.dumps({"message": {"role": "assistant", "content": ""}, "done": True,
                                     "done_reason": "length", "eval_count": 3, "eval_duration": 3000000}).encode())
    assert final["choices"][0]["finish_reason"] == "length"
    assert OLLAMA.timings(final).predicted_ms == 3.0 and OLLAMA.timings(final).prompt_n is None
    calls = OLLAMA.event(json.dumps({"message": {"role": "assistant", "content": "", "thinking": "hm", "tool_calls": [
        {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}, "done": False}).encode())
    delta = calls["choices"][0]["delta"]
    assert delta["reasoning_content"] == "hm"
    assert delta["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}


# --- the program ------------------------------------------------------------------------------------------
def test_version_against_the_fake_and_the_server_line(tmp_path):
    assert OLLAMA.version(FAKE) == "ollama 0.5.1"  # no server asked: the client's own line
    script = tmp_path / "ollama"
    script.write_text("#!/bin/sh\necho 'ollama version is 0.12.3'\n")
    script.chmod(0o755)
    assert OLLAMA.version(script) == "ollama 0.12.3"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    """The fake `ollama serve`, started as llmspec starts an engine, stopped with SIGTERM."""
    given = args(ctx_size=4096, parallel=2)
    port = free_port()
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = os.environ | OLLAMA.environment("127.0.0.1", port, given, workdir)
    proc = subprocess.Popen(OLLAMA.command(FAKE, tmp_path / "m.gguf", "127.0.0.1", port, given), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 20
    while True:
        assert proc.poll() is None, proc.stderr.read()
        try:
            if requests.get(url + OLLAMA.health_path, timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        assert time.time() < deadline, "the fake never answered"
        time.sleep(0.05)
    yield url, given, workdir
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert not psutil.pid_exists(proc.pid) or psutil.Process(proc.pid).status() == psutil.STATUS_ZOMBIE


def gguf(path: Path) -> Path:
    path.write_bytes(b"GGUF" + bytes(60))
    return path


def stream(url: str, name: str, **kw) -> list[dict]:
    with requests.post(url + OLLAMA.chat_path, json=OLLAMA.request(body(model=name, **kw)), stream=True,
                       timeout=30) as resp:
        assert resp.status_code == 200
        assert resp.headers["Content-Type"] == "application/x-ndjson"
        return [e for line in resp.iter_lines() if (e := OLLAMA.event(line)) is not None]


def test_end_to_end_against_the_fake_server(served, tmp_path):
    url, given, workdir = served
    assert requests.get(url + "/").text == "Ollama is running"
    model = gguf(tmp_path / "tiny model.gguf")
    name = OLLAMA.after_start(FAKE, model, url, given, workdir)
    assert name.startswith("llmspec-") and name == OLLAMA.model_name(model, given)
    modelfile = (workdir / "Modelfile").read_text()
    assert modelfile.splitlines()[0] == f'FROM "{model.resolve()}"'
    assert "PARAMETER num_ctx 2048" in modelfile and "PARAMETER num_thread 2" in modelfile
    sent = [json.loads(line) for line in (workdir / "models" / "fake-requests.ndjson").read_text().splitlines()]
    create = next(r["body"] for r in sent if r["path"] == "/api/create")
    assert create["model"] == name and create["parameters"] == {"num_ctx": 2048, "num_thread": 2}
    assert list(create["files"]) == ["tiny model.gguf"]
    assert any(r["path"] == "/api/chat" and r["body"]["messages"] == [] for r in sent)  # loaded before measuring

    events = stream(url, name, temperature=0.0, seed=42)
    content = "".join((e["choices"][0]["delta"].get("content") or "") for e in events if e["choices"])
    assert content.startswith("The sky is blue") and content.endswith(".")
    assert events[-1]["choices"][0]["finish_reason"] == "stop"
    assert events[-1]["usage"]["prompt_tokens"] == 169 and events[-1]["usage"]["completion_tokens"] == 15
    timings = [t for e in events if (t := OLLAMA.timings(e)) is not None]
    assert len(timings) == 1
    assert (timings[0].predicted_n, timings[0].predicted_ms, timings[0].cache_n) == (15, 115.959084, None)
    chat = [r["body"] for r in (json.loads(x) for x in (workdir / "models" / "fake-requests.ndjson")
                                .read_text().splitlines()) if r["path"] == "/api/chat"][-1]
    assert chat["options"] == {"temperature": 0.0, "seed": 42, "num_predict": 64}

    cut = stream(url, name, max_tokens=4)
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in cut) == "The sky is blue"
    assert cut[-1]["choices"][0]["finish_reason"] == "length"
    assert OLLAMA.timings(cut[-1]).predicted_n == 4


def test_after_start_failures_are_cell_errors(served, tmp_path):
    url, given, workdir = served
    with pytest.raises(CellError, match="invalid model name"):
        OLLAMA.after_start(FAKE, tmp_path / "absent.gguf", url, given, workdir)
    not_gguf = tmp_path / "bad.gguf"
    not_gguf.write_bytes(b"nope" * 10)
    with pytest.raises(CellError, match="invalid file magic"):
        OLLAMA.after_start(FAKE, not_gguf, url, given, workdir)
    resp = requests.post(url + OLLAMA.chat_path, json=OLLAMA.request(body(model="nobody")), timeout=10)
    assert resp.status_code == 404 and "not found" in resp.json()["error"]
