"""Capacity: the service level, the answer `max_users_at_slo` from measured levels, and open-loop
arrivals (constant and Poisson) timed against the load benchmark's instant server."""

import multiprocessing
import sys
from types import SimpleNamespace

import pytest
from conftest import REPO

from llmspec.arrivals import gaps, schedule
from llmspec.capacity import ServiceLevel, flat, level_columns, level_figures, levels_of, max_users, sentence

SLO = ServiceLevel(max_p90_ttft_s=2.0, max_p90_latency_s=30.0, min_tokens_per_s_per_user=10.0, max_error_pct=1.0)


def level(ttft, tps, errors=0.0, latency=5.0):
    return {"p90_ttft_s": ttft, "tokens_per_s_per_user": tps, "error_pct": errors, "p90_latency_s": latency}


def test_the_answer_is_the_most_users_at_which_every_smaller_level_kept_the_promise():
    levels = {1: level(0.4, 40), 2: level(0.9, 25), 4: level(1.8, 12), 8: level(3.5, 6)}
    assert max_users(levels, SLO) == 4
    assert sentence(4, SLO, levels) == ("up to 4 concurrent users with p90 TTFT <= 2 s, p90 latency <= 30 s, "
                                        ">= 10 tokens/s each and <= 1% errors; at 8: p90 TTFT 3.5 s > 2 s; "
                                        "tokens/s per user 6 < 10")
    # a level that broke it below a level that kept it (a hiccup) caps the answer: 4 is not trusted
    assert max_users({1: level(0.4, 40), 2: level(2.5, 25), 4: level(1.8, 12)}, SLO) == 1
    assert max_users({1: level(2.4, 40)}, SLO) == 0
    assert sentence(0, SLO, {1: level(2.4, 40)}).startswith("not even 1 concurrent user with p90 TTFT <= 2 s")
    assert max_users({1: level(0.4, 40, errors=5.0)}, SLO) == 0  # errors break it too
    assert max_users(levels, ServiceLevel()) == 8  # no promise: every level keeps it


def test_levels_round_trip_through_flat_result_metrics():
    metrics = {**flat(1, level(0.4, 40)), **flat(4, level(1.8, 12)), "p90_ttft_s": 1.8, "max_users_at_slo": 4,
               "other_at_2": 1.0}
    assert levels_of(metrics) == {1: level(0.4, 40), 4: level(1.8, 12)}
    assert metrics["p90_ttft_s_at_4"] == 1.8


def test_rows_with_the_same_metric_names_keep_their_own_levels():
    """A report reads every load row's levels; rows of one frame share their names, not their values."""
    first = {"host": "a", **flat(1, level(0.4, 40)), **flat(2, level(0.9, 20))}
    second = {**dict.fromkeys(first), "host": "b", **flat(1, level(0.5, 30))}  # level 2 not measured: None
    assert levels_of(first) == {1: level(0.4, 40), 2: level(0.9, 20)}
    assert levels_of(second) == {1: level(0.5, 30)}
    assert level_columns(["host", "p90_ttft_s", "p90_ttft_s_at_4", "other_at_2", "error_pct_at_16"]) == [
        "p90_ttft_s_at_4", "error_pct_at_16"]


def answer(ttft, latency, tps, tokens=32, error=None):
    record = SimpleNamespace(ttft_s=ttft, error=error, decode_tokens_per_s=lambda: tps)
    return SimpleNamespace(ok=error is None, latency_s=latency, tokens=tokens if error is None else 0, record=record)


def test_level_figures_count_goodput_per_answer():
    answers = [answer(0.5, 3.0, 20.0), answer(2.5, 4.0, 20.0), answer(0.5, 3.0, 8.0),
               answer(None, 1.0, None, error="x")]
    f = level_figures(answers, 2.0, SLO)
    assert f["requests_per_s"] == 1.5 and f["output_tokens_per_s"] == 48.0 and f["error_pct"] == 25.0
    assert f["goodput_per_s"] == 0.5  # only the first answer met every promise on its own
    assert f["tokens_per_s_per_user"] == 20.0 and f["p50_ttft_s"] == 0.5


def test_schedules_are_evenly_spaced_or_poisson_at_the_rate():
    assert schedule("constant", 4.0, 5) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert schedule("constant", 4.0, 5, duration_s=0.6) == [0.0, 0.25, 0.5]
    poisson = schedule("poisson", 50.0, 400, seed=7)
    assert poisson == schedule("poisson", 50.0, 400, seed=7) and poisson != schedule("poisson", 50.0, 400, seed=8)
    mean = sum(gaps(poisson)) / 399
    assert mean == pytest.approx(1 / 50, rel=0.10)
    cv = (sum((g - mean) ** 2 for g in gaps(poisson)) / 398) ** 0.5 / mean
    assert cv == pytest.approx(1.0, abs=0.15)  # exponential gaps: the spread equals the mean (constant: 0)
    with pytest.raises(ValueError):
        schedule("closed", 1.0, 3)


@pytest.fixture(scope="module")
def instant_server():
    """The load benchmark's server (benchmarks/load_client.py): answers every request at once."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from load_client import serve

    ports = multiprocessing.Queue()
    proc = multiprocessing.Process(target=serve, args=(ports,), daemon=True)
    proc.start()
    try:
        yield f"http://127.0.0.1:{ports.get(timeout=30)}"
    finally:
        proc.kill()
        proc.join()


def test_a_poisson_run_sends_at_the_rate_it_was_asked_for(instant_server):
    from llmspec.run.client import ChatClient
    from llmspec.run.load import run_open

    times = schedule("poisson", 80.0, 160, seed=3)  # 2 s of arrivals
    run = run_open(lambda stop: ChatClient(instant_server, "bench", None, 30, deadline_s=30, stop=stop),
                   ["q"] * len(times), times, 16)
    assert len(run.answers) == 160 and all(a.ok for a in run.answers)
    sent = [a.start_s for a in run.answers]
    assert sum(gaps(sent)) / 159 == pytest.approx(1 / 80, rel=0.10)  # the recorded inter-arrival times
    late = [s - t for s, t in zip(sent, times)]  # each request left on time, not after the previous answer
    assert max(late) < 0.25 and sorted(late)[len(late) // 2] < 0.02
