"""The fake llama-server (tests/fakeserver.py) is faithful where llmspec relies on it.

llmspec's real client talks to it over HTTP, so these tests pin down what tests of llmspec's own
logic may take for granted: the stream's shape and timings, /tokenize, slots, API keys, failures.
"""

from __future__ import annotations

import json
import threading
import time

import requests
from fakeserver import answer, tokens

from llmspec.run.client import ChatClient


def chat(url, prompt="one two three", **params):
    client = ChatClient(url, **{k: params.pop(k) for k in ("api_key", "timeout_s", "deadline_s") if k in params})
    try:
        return client.chat(prompt, prompt_name="p", **{"max_tokens": 8, **params})
    finally:
        client.close()


def test_stream_is_timed_like_llama_server(fake_server):
    fake = fake_server(prompt_delay_s=0.2, token_delay_s=0.01)
    record = chat(fake.url, system="be brief", max_tokens=8, ignore_eos=True)
    assert record.error is None, record.error
    t = record.timings
    assert t["predicted_n"] == 8 and record.completion_tokens == 8 and record.finish_reason == "length"
    assert t["cache_n"] == 0
    assert record.content == answer(8) and len(record.chunk_times_s) == 8
    # the role-only chunk comes first; TTFT is timed to the first content, after the prompt delay
    assert record.first_event_s < record.ttft_s and record.ttft_s - record.first_event_s > 0.1
    assert t["prompt_n"] == 3 + (4 + 2) + (4 + 3)  # template + per message (overhead + words)
    assert t["prompt_ms"] >= 200 and t["prompt_per_second"] == t["prompt_n"] / t["prompt_ms"] * 1000
    assert 7 * 10 <= t["predicted_ms"] < record.total_s * 1000
    assert t["predicted_per_second"] == 8 / t["predicted_ms"] * 1000
    assert record.usage == {"completion_tokens": 8, "prompt_tokens": t["prompt_n"], "total_tokens": 8 + t["prompt_n"],
                            "prompt_tokens_details": {"cached_tokens": 0}}
    assert fake.requests[0]["max_tokens"] == 8 and fake.requests[0]["ignore_eos"] is True
    assert fake.requests[0]["messages"][0] == {"role": "system", "content": "be brief"}


def test_without_ignore_eos_the_model_stops_by_itself(fake_server):
    fake = fake_server(answer_tokens=5)
    record = chat(fake.url, max_tokens=30)
    assert (record.completion_tokens, record.finish_reason, record.content) == (5, "stop", answer(5))
    assert chat(fake.url, max_tokens=3).completion_tokens == 3


def test_sse_events_are_shaped_like_llama_servers(fake_server):
    fake = fake_server()
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "stream": True,
            "stream_options": {"include_usage": True}}
    resp = requests.post(fake.url + "/v1/chat/completions", json=body, timeout=10)
    assert resp.headers["Content-Type"] == "text/event-stream" and resp.headers["Transfer-Encoding"] == "chunked"
    lines = [line for line in resp.text.split("\n\n") if line]
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"
    events = [json.loads(line[6:]) for line in lines[:-1]]
    assert [e["choices"][0]["delta"] for e in events[:3]] == [
        {"role": "assistant", "content": None}, {"content": answer(1)}, {"content": answer(2)[len(answer(1)):]}]
    assert events[3]["choices"] == [{"finish_reason": "length", "index": 0, "delta": {}}]  # cut at max_tokens
    assert events[4]["choices"] == [] and events[4]["usage"]["completion_tokens"] == 2
    assert "timings" in events[4] and not any("timings" in e for e in events[:4])
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    body.pop("stream_options")  # without include_usage the finish chunk carries the timings
    events = [json.loads(line[6:]) for line in requests.post(fake.url + "/v1/chat/completions", json=body,
                                                             timeout=10).text.split("\n\n")[:-2]]
    assert events[-1]["choices"][0]["finish_reason"] and events[-1]["timings"]["predicted_n"] == 2


def test_tokenize_counts_words_deterministically(fake_server):
    fake = fake_server()
    client = ChatClient(fake.url)
    try:
        ids = client.tokenize("The fox,  jumps\nover the fox,")
        assert len(ids) == 6 and ids == tokens("The fox, jumps over the fox,")
        assert ids[1] == ids[5] and ids[0] != ids[4]  # the same word, the same id; case matters
        assert client.tokenize("") == []
    finally:
        client.close()
    assert requests.get(fake.url + "/health", timeout=5).json() == {"status": "ok"}
    assert requests.get(fake.url + "/v1/models", timeout=5).json()["data"][0]["id"] == "fake-model.gguf"


def test_slots_make_a_third_concurrent_request_wait(fake_server):
    fake = fake_server(slots=2, token_delay_s=0.05)
    records = [None] * 3

    def send(i):
        records[i] = chat(fake.url, prompt=f"question {i}", max_tokens=8, ignore_eos=True)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert all(r.error is None and r.completion_tokens == 8 for r in records)
    assert (fake.peak_busy, fake.peak_waiting) == (2, 1)
    first, second, third = sorted(r.send_unix + r.ttft_s for r in records)  # first tokens, on one clock
    assert third - first > 0.25  # 8 tokens 0.05 s apart: the third waited for one of the others to finish


def test_api_key_guards_chat_and_tokenize_but_not_health(fake_server):
    fake = fake_server(api_key="sekrit")
    refused = chat(fake.url)
    assert refused.error.startswith("HTTP 401") and "Invalid API Key" in refused.error
    assert chat(fake.url, api_key="wrong").error.startswith("HTTP 401")
    assert chat(fake.url, api_key="sekrit").error is None
    assert requests.post(fake.url + "/tokenize", json={"content": "a"}, timeout=5).status_code == 401
    assert requests.get(fake.url + "/health", timeout=5).status_code == 200  # public, as in llama-server
    assert requests.get(fake.url + "/v1/models", timeout=5).status_code == 200


def test_failures_are_http_500_for_the_requests_chosen(fake_server):
    fake = fake_server(fail=lambda body: "bad" in body["messages"][-1]["content"])
    assert chat(fake.url, prompt="good").error is None
    failed = chat(fake.url, prompt="bad")
    assert failed.error.startswith("HTTP 500") and failed.ttft_s is None
    fake.fail = True
    assert chat(fake.url, prompt="good").error.startswith("HTTP 500")
    assert len(fake.requests) == 3  # failed ones are recorded too


def test_a_stalled_answer_hangs_until_the_client_gives_up_and_frees_its_slot(fake_server):
    fake = fake_server(slots=1, stall=lambda body: "stall" in body["messages"][-1]["content"], stall_after=2)
    t0 = time.perf_counter()
    stalled = chat(fake.url, prompt="stall here", timeout_s=0.5, max_tokens=8)
    assert stalled.error.startswith("timed out") and len(stalled.chunk_times_s) == 2
    assert 0.5 <= time.perf_counter() - t0 < 5
    after = chat(fake.url, prompt="fine", timeout_s=5)  # the only slot was released when the client left
    assert after.error is None and after.completion_tokens == 8


def test_a_prompt_beyond_the_context_is_refused_like_llama_server(fake_server):
    fake = fake_server(ctx_size=20)
    refused = chat(fake.url, prompt=" ".join(["word"] * 20))
    assert refused.error.startswith("HTTP 400") and "exceeds the available context size" in refused.error
    assert chat(fake.url, prompt="short", max_tokens=100, ignore_eos=True).completion_tokens == 20 - (3 + 4 + 1)


def test_as_a_process_llmspecs_server_runs_it(make_fake_server):
    server = make_fake_server(ctx_size=1024, parallel=2, extra=("--fake-token-delay-s", "0.001"))
    with server:
        record = chat(server.url, max_tokens=4, ignore_eos=True)
        assert record.error is None and record.timings["predicted_n"] == 4
        assert server.rss_bytes() > 0 and server.args.ctx_per_slot == 512
        assert chat(server.url, prompt=" ".join(["w"] * 600)).error.startswith("HTTP 400")  # 512 per slot
    assert not server.alive()
    logged = [json.loads(line.split(": ", 1)[1]) for line in server.log_path.read_text().splitlines()
              if line.startswith("request: ")]
    assert [body["max_tokens"] for body in logged] == [4, 8]
