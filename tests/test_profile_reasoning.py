"""A reasoning model on the streaming profiles (interactive, load, session): the headline TTFT is the
first answer token, the result says so, and each request's reasoning is timed and counted apart.

No reasoning model runs on this machine's 2 cores in a cell's time, so the fake llama-server streams
the first tokens of each answer as `reasoning_content`, as llama-server does with --reasoning-format.
"""

from __future__ import annotations

import pytest
from conftest import REPO

from llmspec.profiles import PROFILES, ProfileContext, interactive, load, session
from llmspec.profiles.base import REASONING_METRICS, reasoning_figures
from llmspec.profiles.interactive import InteractiveProfile
from llmspec.profiles.load import LoadProfile
from llmspec.profiles.session import SessionProfile
from llmspec.run.client import ChatClient, RequestRecord
from llmspec.stats import percentile

THINK = 5  # reasoning tokens per answer on the fake


def measure(kind, url: str, settings):
    client = ChatClient(url, timeout_s=60)
    try:
        return kind.run(ProfileContext(client, settings, REPO, progress=lambda text: None))
    finally:
        client.close()


def assert_reasoning_figures(outcome, ttft: str, answer_tokens: int) -> None:
    m = outcome.metrics
    assert m["reasoning_tokens"] == THINK and m["answer_tokens"] == answer_tokens
    assert 0 < m["ttft_reasoning_s"] < m["ttft_answer_s"]
    assert all(outcome.intervals[name].n >= 2 for name in REASONING_METRICS)
    (said,) = [f for f in outcome.flags if f.startswith("the model reasons before it answers")]
    assert f"{ttft} is the time to the first answer token" in said


def test_every_streaming_profile_lists_the_reasoning_figures():
    for name in ("interactive", "load", "session", "structured"):
        assert set(REASONING_METRICS) <= set(PROFILES[name].metrics), name


def test_interactive_ttft_is_the_first_answer_token(fake_server):
    fake = fake_server(reasoning_tokens=THINK, token_delay_s=0.002)
    out = measure(interactive, fake.url, InteractiveProfile(requests=3, max_requests=3, max_tokens=16))
    assert_reasoning_figures(out, "ttft_s", answer_tokens=16 - THINK)
    assert out.metrics["ttft_s"] == out.metrics["ttft_answer_s"]
    for s in out.samples:  # per request: both times and both counts
        assert s["ttft_reasoning_s"] < s["ttft_answer_s"] == s["ttft_s"]
        assert (s["reasoning_tokens"], s["answer_tokens"], s["completion_tokens"]) == (THINK, 16 - THINK, 16)
        assert s["reasoning"] and s["reasoning"] not in s["content"]


def test_a_model_that_does_not_reason_keeps_the_result_it_had(fake_server):
    out = measure(interactive, fake_server().url, InteractiveProfile(requests=3, max_requests=3, max_tokens=8))
    assert not set(REASONING_METRICS) & set(out.metrics) and not set(REASONING_METRICS) & set(out.intervals)
    assert not any("reasons" in f for f in out.flags)
    assert not {"ttft_reasoning_s", "ttft_answer_s", "reasoning_tokens", "answer_tokens"} & set(out.samples[0])


def test_load_percentiles_are_of_the_first_answer_token(fake_server):
    fake = fake_server(reasoning_tokens=THINK, token_delay_s=0.002, slots=2)
    out = measure(load, fake.url, LoadProfile(concurrent=2, questions=4, max_tokens=12))
    assert_reasoning_figures(out, "p50/p90/p99_ttft_s", answer_tokens=12 - THINK)
    answers = [s["ttft_answer_s"] for s in out.samples]
    assert out.metrics["p90_ttft_s"] == pytest.approx(percentile(answers, 90))
    assert all(s["ttft_reasoning_s"] < s["ttft_answer_s"] for s in out.samples)


def test_session_ttft_is_the_first_answer_token_and_the_thinking_is_not_sent_back(fake_server):
    fake = fake_server(reasoning_tokens=THINK, slots=1)
    settings = SessionProfile(final_tokens=600, turns=3, repeats=2, sessions=1, max_tokens=12)
    out = measure(session, fake.url, settings)
    assert_reasoning_figures(out, "ttft_s_at_600", answer_tokens=12 - THINK)
    assert out.metrics["ttft_s"] == out.metrics["ttft_answer_s"]
    thoughts = {s["reasoning"] for s in out.samples if s.get("reasoning")}
    replies = [m["content"] for body in fake.requests for m in body.get("messages", []) if m["role"] == "assistant"]
    assert replies and not any(t in r for t in thoughts for r in replies)  # a client drops the reasoning


def test_an_answer_cut_off_inside_its_reasoning_is_said_not_counted():
    done = RequestRecord("a", 0.0, ttft_s=2.0, reasoning="hm", ttft_reasoning_s=0.5, reasoning_chunks=40)
    cut = RequestRecord("b", 0.0, ttft_s=None, reasoning="hmm", ttft_reasoning_s=0.4, reasoning_chunks=64)
    metrics, flags = reasoning_figures([done, cut], {})
    assert metrics["ttft_answer_s"] == 2.0 and metrics["reasoning_tokens"] == 52
    assert any("1 of 2 requests ended while the model was still reasoning" in f for f in flags)
