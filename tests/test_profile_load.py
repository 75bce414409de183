"""The load profile on the real llama-server and SmolLM2, started as the planner would start it
(server_overrides: as many slots as the most users measured, sharing the context)."""

from __future__ import annotations

import pytest
from conftest import REPO

from llmspec.errors import CellError
from llmspec.profiles import ProfileContext, load
from llmspec.profiles.base import REASONING_METRICS
from llmspec.profiles.load import LoadProfile
from llmspec.run.client import ChatClient
from llmspec.run.load import load_questions
from llmspec.stats import percentile

SETTINGS = LoadProfile(concurrent=2, questions=4, max_tokens=8, timeout_s=600)
EXPECTED = {"p50_latency_s", "p90_latency_s", "p99_latency_s", "p50_ttft_s", "p90_ttft_s", "p99_ttft_s",
            "error_pct", "output_tokens_per_s", "requests_per_s", "requests_ok", "requests_failed", "concurrent",
            "peak_rss_gb"}


def test_server_overrides_give_the_most_users_a_slot_each_sharing_the_context():
    assert load.server_overrides(SETTINGS, 1024) == (1024, 2)
    assert load.server_overrides(LoadProfile(concurrent=1), 4096) == (4096, 1)
    assert load.server_overrides(LoadProfile(concurrent=[4, 1, 2]), 4096) == (4096, 4)
    assert load.server_overrides(LoadProfile(concurrent="sweep", max_concurrent=6), 4096) == (4096, 6)
    assert LoadProfile(concurrent="sweep", max_concurrent=6).levels() == [1, 2, 4, 6]


def test_inputs_fingerprint_settings_and_the_questions_file():
    got = load.KIND.inputs(SETTINGS, REPO)
    assert got["concurrent"] == 2 and got["questions"] == 4
    assert list(got["question_files"]) == ["questions.json"]


@pytest.fixture(scope="module")
def server(make_server):
    ctx_size, parallel = load.server_overrides(SETTINGS, 1024)
    with make_server(ctx_size=ctx_size, threads=2, parallel=parallel, load_timeout_s=300.0) as srv:
        yield srv


def context(server, settings, managed=True) -> ProfileContext:
    return ProfileContext(ChatClient(server.url, timeout_s=600), settings, REPO, progress=print,
                          server=server if managed else None)


@pytest.mark.server
def test_profile_metrics_agree_with_samples_and_server_timings(server):
    assert server.args.ctx_per_slot == 512 and server.args.parallel == 2
    outcome = load.run(context(server, SETTINGS))
    m, samples = outcome.metrics, outcome.samples
    print(m)
    levels = {k for k in m if "_at_" in k and k.rsplit("_at_", 1)[1] == "2"}  # the one level, flat
    assert EXPECTED <= set(m) and set(load.KIND.rated_metrics) <= set(m)
    assert set(m) - levels == set(load.KIND.metrics) - {"mean_interarrival_s", "arrival_rate_per_s",
                                                         *REASONING_METRICS}  # SmolLM2 does not reason
    assert m["p90_ttft_s_at_2"] == m["p90_ttft_s"] and m["slots"] == 2 and m["ctx_per_slot"] == 512
    assert (m["requests_ok"], m["requests_failed"], m["error_pct"], m["concurrent"]) == (4, 0, 0.0, 2)
    assert [s["question"] for s in samples] == load_questions(REPO / "prompts/questions.json")[:4]
    for s in samples:
        assert s["error"] is None and s["timings"]["cache_n"] == 0  # every request processed from scratch
        assert s["tokens"] == s["timings"]["predicted_n"] == s["usage"]["completion_tokens"] <= 8
        assert 0 < s["ttft_s"] <= s["latency_s"]
    latencies = [s["latency_s"] for s in samples]
    assert m["p90_latency_s"] == pytest.approx(percentile(latencies, 90))
    assert m["p50_latency_s"] <= m["p90_latency_s"] <= m["p99_latency_s"] <= max(latencies)
    assert m["p50_ttft_s"] <= m["p90_ttft_s"] <= m["p99_ttft_s"]
    for name in ("p50_latency_s", "p90_latency_s", "p99_latency_s", "p90_ttft_s"):
        found = outcome.intervals[name]  # bootstrap (the median: order statistics) over the 4 requests
        assert found.n == 4 and min(latencies if "latency" in name else [s["ttft_s"] for s in samples]) <= found.low
        assert found.low <= m[name] <= found.high
    assert "distribution-free" in outcome.intervals["p50_latency_s"].method
    assert "bootstrap" in outcome.intervals["p90_latency_s"].method
    assert m["output_tokens_per_s"] == pytest.approx(sum(s["tokens"] for s in samples) / m["wall_s"])
    assert m["requests_per_s"] == pytest.approx(4 / m["wall_s"])
    assert m["wall_s"] >= max(s["end_s"] for s in samples)
    assert m["peak_rss_gb"] > 0.05
    assert not [f for f in outcome.flags if "slots" in f or "failed" in f]


@pytest.mark.server
def test_external_endpoint_has_no_memory_figures(server):
    outcome = load.run(context(server, SETTINGS.model_copy(update={"questions": 2, "max_tokens": 4}), managed=False))
    assert outcome.metrics["peak_rss_gb"] is None
    assert outcome.metrics["requests_ok"] == 2 and outcome.metrics["p90_latency_s"] > 0


@pytest.mark.server
def test_more_concurrent_requests_than_slots_is_flagged(server):
    settings = SETTINGS.model_copy(update={"concurrent": 3, "questions": 3, "max_tokens": 2})
    outcome = load.run(context(server, settings))
    assert outcome.metrics["requests_ok"] == 3
    assert any("2 slots for 3 concurrent requests" in f for f in outcome.flags)


@pytest.mark.server
def test_every_request_timing_out_is_a_cell_error(server):
    settings = SETTINGS.model_copy(update={"timeout_s": 0.001, "max_tokens": 2})
    with pytest.raises(CellError, match=r"all 4 requests failed \(first: .*(timed out|Timeout)"):
        load.run(context(server, settings))


@pytest.mark.server
def test_a_sweep_doubles_the_users_until_the_service_level_breaks(server):
    """Two slots: 1 and 2 users; a generous service level keeps both, an impossible one stops at 1."""
    from llmspec.capacity import levels_of
    from llmspec.profiles.load import LoadThresholds

    sweep = SETTINGS.model_copy(update={"concurrent": "sweep", "max_concurrent": 2, "questions": 4})
    kept = context(server, sweep)
    kept.thresholds = LoadThresholds(max_p90_ttft_s=60, min_tokens_per_s_per_user=0.1)
    outcome = load.run(kept)
    m = outcome.metrics
    assert (m["max_users_at_slo"], m["levels_measured"], m["concurrent"]) == (2, 2, 2)
    for users in (1, 2):  # every level's percentiles carry their 95 % intervals
        found = outcome.intervals[f"p90_ttft_s_at_{users}"]
        assert found.n == 4 and found.low <= m[f"p90_ttft_s_at_{users}"] <= found.high
    assert sorted(levels_of(m)) == [1, 2] and m["requests_ok"] == 4  # the headline level's own requests
    assert levels_of(m)[1]["requests_per_s"] > 0 and levels_of(m)[2]["p90_latency_s"] > 0

    broken = context(server, sweep)
    broken.thresholds = LoadThresholds(min_tokens_per_s_per_user=1e6)  # no CPU makes a million tokens/s
    outcome = load.run(broken)
    assert (outcome.metrics["max_users_at_slo"], outcome.metrics["levels_measured"]) == (0, 1)
    assert any(f.startswith("capacity: not even 1 concurrent user with ") and "tokens/s per user" in f
               for f in outcome.flags)
    assert {s["users"] for s in outcome.samples} == {1}


@pytest.mark.server
def test_a_question_that_cannot_fit_its_slot_is_an_error_not_a_truncation(server):
    settings = SETTINGS.model_copy(update={"max_tokens": 500, "questions": 1})  # 512 tokens per slot
    with pytest.raises(CellError, match=r"more than the 512 tokens of each of the 2 slots \(\[server\] ctx_size "
                                        r"1024 / 2\); raise ctx_size or measure fewer users"):
        load.run(context(server, settings))


def test_throughput_intervals_on_a_recorded_level_hold_its_figures():
    """A recorded loadtest level (4 users, 16 requests): requests/s and output tokens/s get a
    bootstrap interval carried through Little's law, the same on every call, around the figure."""
    import json

    from llmspec.run.client import RequestRecord
    from llmspec.run.load import Answer

    doc = json.loads((REPO / "tests/fixtures/loadtest/before.json").read_text())
    answers = [Answer(i, r["question"], RequestRecord("q", 0.0, timings={"predicted_n": r["token"]}), 0.0,
                      r["time"] / 1000) for i, r in enumerate(doc["results"])]
    figures = doc["levels"][-1]["figures"]
    found = load.throughput_intervals(answers, figures, closed=True)
    for name in load.THROUGHPUT:
        assert found[name].low < figures[name] < found[name].high and found[name].n == 16
        assert "Little's law" in found[name].method
    assert found == load.throughput_intervals(answers, figures, closed=True)
    assert found["requests_per_s"].high / found["requests_per_s"].low < 1.5  # 16 requests: within about +-20 %
    assert load.throughput_intervals(answers, figures, closed=False) == {}  # the schedule sets an open rate
    assert load.throughput_intervals(answers[:2], figures, closed=True) == {}
