"""Answers that are not chat streams (issue #28): each is the request's error with the reason, within
the request timeout, never a hang, a traceback or a silently empty answer. A real local HTTP server
sends each fault."""

from __future__ import annotations

import time

import pytest
from faultyserver import serving

from llmspec.run.client import ChatClient


@pytest.fixture(scope="module")
def faulty():
    with serving() as url:
        yield url


@pytest.mark.parametrize(("fault", "expected"), [
    ("500", "HTTP 500"),
    ("html", "not a chat stream: a 200 answer without a single event (text/html"),
    ("endless", "Timeout: answer not complete within 2 s"),
    ("longline", "not a chat stream: a line of over 1 MB without an end"),
    ("utf8", "not a chat stream: an event it cannot read"),
])
def test_a_broken_answer_is_the_requests_error_within_the_timeout(faulty, fault, expected):
    client = ChatClient(f"{faulty}/{fault}", timeout_s=2.0, deadline_s=2.0)  # as the runner makes its clients
    t0 = time.perf_counter()
    try:
        record = client.chat("Hello", prompt_name="t", max_tokens=8)
    finally:
        client.close()
    assert record.error is not None and expected in record.error, record.error
    assert time.perf_counter() - t0 < 6  # bounded by the 2 s request timeout, not by the server
