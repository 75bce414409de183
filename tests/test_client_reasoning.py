"""Reasoning and tool calls in the stream: the answer's TTFT is not the reasoning's, reasoning split by
the engine or inline in <think>...</think> reads the same, and tool-call pieces are assembled."""

from __future__ import annotations

import json

from fakeserver import FakeLlamaServer

from llmspec.run.client import ChatClient, RequestRecord, _Parts


def ask(fake: FakeLlamaServer, **params) -> RequestRecord:
    client = ChatClient(fake.url)
    try:
        return client.chat("Think first.", prompt_name="t", max_tokens=10, **params)
    finally:
        client.close()


def test_reasoning_content_is_timed_apart_from_the_answer():
    with FakeLlamaServer(reasoning_tokens=6, token_delay_s=0.01) as fake:
        record = ask(fake)
    assert record.error is None
    assert record.reasoning and record.reasoning_chunks == 6
    assert record.ttft_reasoning_s < record.ttft_s  # the answer starts after the thinking
    assert record.content and not record.content.startswith(record.reasoning[:3])
    assert len(record.chunk_times_s) == record.completion_tokens == 10  # decode speed counts every token
    sample = record.as_sample()
    assert sample["ttft_answer_s"] == record.ttft_s and sample["reasoning_tokens"] == 6


def test_an_inline_think_block_reads_as_reasoning():
    with FakeLlamaServer(reasoning_tokens=4, think_inline=True, token_delay_s=0.01) as fake:
        split = ask(fake)
    with FakeLlamaServer(reasoning_tokens=4, token_delay_s=0.01) as fake:
        separate = ask(fake)
    assert "<think>" not in split.content and "</think>" not in split.content
    assert split.content == separate.content and split.reasoning == separate.reasoning
    assert split.ttft_reasoning_s < split.ttft_s


def test_a_model_that_does_not_reason_keeps_its_sample_shape():
    with FakeLlamaServer() as fake:
        record = ask(fake)
    sample = record.as_sample()
    assert record.ttft_reasoning_s is None and record.ttft_s is not None
    assert not {"reasoning", "ttft_reasoning_s", "tool_calls", "ttft_answer_s", "reasoning_tokens"} & set(sample)


def test_a_think_tag_split_across_chunks_and_an_answer_that_merely_mentions_it():
    record = RequestRecord("t", 0.0)
    parts = _Parts()
    for i, text in enumerate(["<th", "ink>plan", " more</thi", "nk>", " The answer."]):
        parts.say(record, text, float(i))
    parts.finish(record, 9.0)
    assert (record.reasoning, record.content, record.ttft_s) == ("plan more", "The answer.", 4.0)
    plain = RequestRecord("t", 0.0)
    parts = _Parts()
    parts.say(plain, "Use <think> tags", 1.0)
    parts.finish(plain, 2.0)
    assert plain.content == "Use <think> tags" and plain.reasoning == ""


def test_tool_call_pieces_are_assembled_per_index():
    record = RequestRecord("t", 0.0)
    parts = _Parts()
    pieces = [{"index": 0, "id": "call_1", "function": {"name": "get_weather", "arguments": ""}},
              {"index": 0, "function": {"arguments": '{"city": '}}, {"index": 0, "function": {"arguments": '"Paris"}'}},
              {"index": 1, "id": "call_2", "function": {"name": "get_time", "arguments": "{}"}}]
    for i, piece in enumerate(pieces):
        parts.call(record, piece, float(i))
    parts.finish(record, 5.0)
    assert [c["name"] for c in record.tool_calls] == ["get_weather", "get_time"]
    assert json.loads(record.tool_calls[0]["arguments"]) == {"city": "Paris"} and record.first_tool_call_s == 0.0
