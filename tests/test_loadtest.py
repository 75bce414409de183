"""`llmspec loadtest`: the stress-test plan's results file, and the load engine under it.

The run-level tests start `python -m llmspec.cli loadtest` as a user would (cwd = a fresh folder,
so `results/` lands there), against the fake llama-server (tests/fakeserver.py): what they check
(the files, ordering, concurrency, failures, timeouts, Ctrl+C) is llmspec's own behaviour, so they
need a streaming server, not a model. The engine on the real llama-server: tests/test_profile_load.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO
from fakeserver import answer

from llmspec.errors import UserError
from llmspec.loadtest import calculate_aggregates, load_config
from llmspec.run.client import ChatClient
from llmspec.run.load import STOP_GRACE_S, load_questions, pick_questions, summary
from llmspec.run.server import free_port
from llmspec.stats import percentile

QUESTIONS = REPO / "prompts" / "questions.json"
META_KEYS = ["start_date", "start_time", "end_date", "end_time", "server", "model", "concurrent", "questions",
             "timeout", "total_duration_ms"]
RESULT_KEYS = ["question", "answer", "time", "token", "quality", "ttft", "error"]
AGGREGATE_KEYS = ["runtime_sum", "runtime_avg", "runtime_min", "runtime_max", "token_sum", "token_avg", "token_min",
                  "token_max", "requests_ok", "requests_failed", "error_pct", "latency_p50_ms", "latency_p90_ms",
                  "latency_p99_ms", "ttft_p50_ms", "ttft_p90_ms", "ttft_p99_ms", "requests_per_s",
                  "output_tokens_per_s"]


def loadtest(*args, cwd: Path, env: dict | None = None):
    return subprocess.run([sys.executable, "-m", "llmspec.cli", "loadtest", *args], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=900)


# --- pure functions -------------------------------------------------------------------------------


def test_percentile_interpolates_between_ranks():
    assert percentile([], 50) is None
    assert percentile([7.0], 99) == 7.0
    assert percentile([4, 1, 3, 2], 50) == 2.5
    assert percentile([1, 2, 3, 4], 90) == pytest.approx(3.7)
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)
    assert percentile([1, 2, 3], 0) == 1 and percentile([1, 2, 3], 100) == 3


def test_summary_of_nothing_has_no_average():
    assert summary([]) == (0, None, None, None)
    assert summary([1.0, 2.0, 4.5]) == (7.5, 2.5, 1.0, 4.5)


def test_aggregates_count_failures_in_runtime_but_not_in_percentiles():
    results = [{"time": 100.0, "token": 10, "ttft": 20.0, "error": None},
               {"time": 300.0, "token": 30, "ttft": 40.0, "error": None},
               {"time": 5.0, "token": 0, "ttft": None, "error": "ReadTimeout: ..."}]
    agg = calculate_aggregates(results, wall_s=2.0)
    assert list(agg) == AGGREGATE_KEYS
    assert (agg["runtime_sum"], agg["runtime_min"], agg["runtime_max"]) == (405.0, 5.0, 300.0)
    assert agg["runtime_avg"] == 135.0
    tokens = (agg["token_sum"], agg["token_avg"], agg["token_min"], agg["token_max"])
    assert tokens == (40, pytest.approx(13.333), 0, 30)
    assert (agg["requests_ok"], agg["requests_failed"]) == (2, 1)
    assert agg["error_pct"] == pytest.approx(33.333)
    assert agg["latency_p50_ms"] == 200.0 and agg["ttft_p50_ms"] == 30.0
    assert agg["requests_per_s"] == 1.0 and agg["output_tokens_per_s"] == 20.0


def test_aggregates_of_an_empty_run():
    agg = calculate_aggregates([], wall_s=0.0)
    assert agg["runtime_sum"] == 0 and agg["runtime_avg"] is None and agg["error_pct"] is None
    assert agg["requests_per_s"] is None and agg["latency_p90_ms"] is None


def test_questions_are_picked_in_order_and_cycle():
    assert pick_questions(["a", "b", "c"], 7) == ["a", "b", "c", "a", "b", "c", "a"]
    assert pick_questions(["a", "b", "c"], 2) == ["a", "b"]


def test_bundled_questions_file_is_a_list_of_distinct_questions():
    questions = load_questions(QUESTIONS)
    assert len(questions) >= 40 and len(set(questions)) == len(questions)


@pytest.mark.parametrize("text, message", [
    ('{"q": 1}', "expected a non-empty JSON list of questions"),
    ("[]", "expected a non-empty JSON list of questions"),
    ('["ok", ""]', "[1]: expected a non-empty question string"),
    ('["ok", {"question": 3}]', "[1]: expected a non-empty question string"),
    ("[oops", "not valid JSON"),
])
def test_bad_questions_file_is_one_line_naming_the_file(tmp_path, text, message):
    path = tmp_path / "questions.json"
    path.write_text(text)
    with pytest.raises(UserError, match=r"questions\.json: ") as err:
        load_questions(path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_questions_may_be_objects_with_a_question_key(tmp_path):
    path = tmp_path / "q.json"
    path.write_text('[{"question": " Why? "}, "How?"]')
    assert load_questions(path) == ["Why?", "How?"]


def test_flags_override_the_config_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"server": "http://h:1", "model": "m", "concurrent": 3, "questions": 9, "timeout": 5}))
    cfg = load_config(path, {"server": None, "model": "other", "concurrent": None, "questions": 2, "timeout": None})
    assert (cfg.server, cfg.model, cfg.concurrent, cfg.questions, cfg.timeout) == ("http://h:1", "other", 3, 2, 5.0)


@pytest.mark.parametrize("config, flags, message", [
    ({"server": "http://h:1", "model": "m", "threads": 2}, {}, "config.json: threads: unknown key"),
    ({"server": "http://h:1", "model": "m", "concurrent": 0}, {}, "config.json: concurrent: 0: "),
    ({"server": "h:1", "model": "m"}, {}, "config.json: server: 'h:1': "),
    ({"server": "http://h:1", "model": "m"}, {"timeout": -1}, "--timeout: -1: "),
    ({"model": "m"}, {}, "server is required (give --endpoint"),
])
def test_bad_config_is_one_line_naming_file_or_flag_and_key(tmp_path, config, flags, message):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    with pytest.raises(UserError) as err:
        load_config(path, flags)
    assert message in str(err.value), str(err.value)


# --- against the fake llama-server (tests/fakeserver.py): the engine and the command's behaviour ----


@pytest.fixture
def slow_server(fake_server):
    """Streams 30 tokens, one every 0.05 s, to up to 4 requests at once."""
    return fake_server(token_delay_s=0.05, answer_tokens=30, slots=4)


def test_timeout_bounds_the_whole_answer_not_only_each_read(slow_server):
    plain = ChatClient(slow_server.url, timeout_s=0.5).chat("q", max_tokens=30)
    assert plain.error is None and plain.total_s > 1.25  # every gap is short, so requests never times out
    assert plain.content == answer(30) and plain.completion_tokens == 30
    bounded = ChatClient(slow_server.url, timeout_s=0.5, deadline_s=0.5).chat("q", max_tokens=30)
    assert bounded.error == "Timeout: answer not complete within 0.5 s"
    assert bounded.total_s < 1.25


def test_ctrl_c_stops_workers_and_writes_partial_results(slow_server, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "llmspec.cli", "loadtest", "partial", "--endpoint", slow_server.url,
                             "--model", "m", "--questions", str(QUESTIONS), "--concurrent", "2", "--count", "20"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stderr.readline()
    assert first.startswith("loadtest: 1/20 done, 0 failed, ")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert out.startswith("interrupted: partial results in results/partial.json")
    document = json.loads((tmp_path / "results" / "partial.json").read_text())
    assert 1 <= len(document["results"]) < 20
    assert all(r["error"] is None and r["token"] == 30 for r in document["results"])  # only finished answers
    assert "interrupted" in (tmp_path / "results" / "partial.log").read_text()


def test_ctrl_c_abandons_a_silent_stream_after_the_grace(fake_server, tmp_path):
    """A request the server sits on (no byte to wake the worker) must not hold Ctrl+C or the results back."""
    questions = load_questions(QUESTIONS)
    fake = fake_server(token_delay_s=0.05, answer_tokens=10, slots=2, stall_after=0,
                       stall=lambda body: body["messages"][-1]["content"] == questions[1])
    proc = subprocess.Popen([sys.executable, "-m", "llmspec.cli", "loadtest", "silent", "--endpoint", fake.url,
                             "--model", "m", "--questions", str(QUESTIONS), "--concurrent", "2", "--count", "20"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr.readline().startswith("loadtest: 1/20 done, 0 failed, ")
        t0 = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()  # a no-op once it has exited; a hung run must not outlive the test
    assert proc.returncode == 130, err
    assert time.perf_counter() - t0 < STOP_GRACE_S + 5
    results = json.loads((tmp_path / "results" / "silent.json").read_text())["results"]
    assert results and questions[1] not in [r["question"] for r in results]
    assert all(r["error"] is None and r["token"] == 10 for r in results)


@pytest.fixture
def four_slots(fake_server):
    return fake_server(slots=4, token_delay_s=0.03, api_key="sekrit-4711")


def test_results_file_has_the_plans_shape(four_slots, tmp_path):
    env = {**os.environ, "LOADTEST_KEY": "sekrit-4711"}
    proc = loadtest("run_PC_smol", "--endpoint", four_slots.url, "--model", "smol", "--questions", str(QUESTIONS),
                    "--concurrent", "4", "--count", "8", "--max-tokens", "16", "--timeout", "600",
                    "--api-key-env", "LOADTEST_KEY", "--log-level", "DEBUG", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("results/run_PC_smol.json: 8/8 answers (8 ok, 0 failed)")
    assert proc.stderr.splitlines()[-1].startswith("loadtest: 8/8 done, 0 failed, ")
    text = (tmp_path / "results" / "run_PC_smol.json").read_text()
    document = json.loads(text)
    assert list(document) == ["meta", "results", "aggregate", "schema_version"]  # the plan's keys, then the version
    meta, results, agg = document["meta"], document["results"], document["aggregate"]
    assert list(meta) == META_KEYS
    assert (meta["server"], meta["model"], meta["concurrent"], meta["questions"], meta["timeout"]) == \
        (four_slots.url, "smol", 4, 8, 600.0)
    assert time.strptime(meta["start_date"] + " " + meta["start_time"][:8], "%Y-%m-%d %H:%M:%S")
    assert len(meta["start_time"]) == len(meta["end_time"]) == 12 and meta["start_time"][8] == "."
    assert (meta["start_date"], meta["start_time"]) <= (meta["end_date"], meta["end_time"])

    assert len(results) == 8 and all(list(r) == RESULT_KEYS for r in results)
    assert [r["question"] for r in results] == load_questions(QUESTIONS)[:8]
    for r in results:
        assert r["error"] is None and r["answer"] and r["quality"] == 0.0
        assert 0 < r["token"] <= 16 and 0 < r["ttft"] <= r["time"] <= meta["total_duration_ms"]

    assert list(agg) == AGGREGATE_KEYS
    times, tokens = [r["time"] for r in results], [r["token"] for r in results]
    assert agg["runtime_sum"] == pytest.approx(sum(times), abs=0.01)
    assert agg["runtime_min"] == min(times) and agg["runtime_max"] == max(times)
    assert agg["runtime_min"] <= agg["runtime_avg"] <= agg["runtime_max"]
    assert agg["token_sum"] == sum(tokens) and agg["token_min"] <= agg["token_avg"] <= agg["token_max"]
    assert (agg["requests_ok"], agg["requests_failed"], agg["error_pct"]) == (8, 0, 0.0)
    assert agg["latency_p50_ms"] <= agg["latency_p90_ms"] <= agg["latency_p99_ms"] <= agg["runtime_max"]
    assert agg["output_tokens_per_s"] == pytest.approx(sum(tokens) / meta["total_duration_ms"] * 1000, rel=1e-3)

    log = (tmp_path / "results" / "run_PC_smol.log").read_text()
    assert "DEBUG" in log and "q008 ok" in log
    assert "sekrit-4711" not in text + log + proc.stdout + proc.stderr
    # what reached the server: every question once, with the key (else 401), 4 in flight, never more
    sent = four_slots.requests
    assert sorted(b["messages"][-1]["content"] for b in sent) == sorted(load_questions(QUESTIONS)[:8])
    assert all((b["model"], b["max_tokens"], b["stream"], b["seed"]) == ("smol", 16, True, 42) for b in sent)
    assert four_slots.peak_busy == 4


def test_config_file_with_flags_overriding_it(fake_server, tmp_path):
    fake = fake_server(slots=2)
    (tmp_path / "config.json").write_text(json.dumps(
        {"server": fake.url, "model": "from-config", "concurrent": 2, "questions": 5, "timeout": 600}))
    proc = loadtest("cfg", "--config", "config.json", "--count", "2", "--max-tokens", "4",
                    "--questions", str(QUESTIONS), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    document = json.loads((tmp_path / "results" / "cfg.json").read_text())
    meta = document["meta"]
    assert (meta["server"], meta["model"], meta["concurrent"], meta["questions"], meta["timeout"]) == \
        (fake.url, "from-config", 2, 2, 600.0)
    assert len(document["results"]) == 2 and document["aggregate"]["requests_ok"] == 2
    assert [(b["model"], b["max_tokens"]) for b in fake.requests] == [("from-config", 4)] * 2


def test_timeouts_are_recorded_per_request_and_the_run_completes(fake_server, tmp_path):
    fake = fake_server(slots=2, prompt_delay_s=0.2)  # no answer can be complete within the timeout
    proc = loadtest("slow", "--endpoint", fake.url, "--model", "smol", "--questions", str(QUESTIONS),
                    "--concurrent", "2", "--count", "4", "--max-tokens", "4", "--timeout", "0.001", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("results/slow.json: 4/4 answers (0 ok, 4 failed)")
    document = json.loads((tmp_path / "results" / "slow.json").read_text())
    assert len(document["results"]) == 4 and document["meta"]["timeout"] == 0.001
    for r in document["results"]:
        assert "timed out" in r["error"].lower() or r["error"].startswith("Timeout")
        assert (r["answer"], r["token"], r["ttft"]) == ("", 0, None) and r["time"] > 0
    agg = document["aggregate"]
    assert (agg["requests_failed"], agg["error_pct"], agg["token_sum"]) == (4, 100.0, 0)
    assert agg["latency_p90_ms"] is None
    assert (tmp_path / "results" / "slow.log").read_text().count("WARNING") == 4


def test_failed_requests_are_recorded_in_order_and_the_run_goes_on(fake_server, tmp_path):
    questions = load_questions(QUESTIONS)[:6]
    fake = fake_server(slots=3, token_delay_s=0.01,
                       fail=lambda body: body["messages"][-1]["content"] in (questions[1], questions[4]))
    proc = loadtest("half", "--endpoint", fake.url, "--model", "m", "--questions", str(QUESTIONS),
                    "--concurrent", "3", "--count", "6", "--max-tokens", "8", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("results/half.json: 6/6 answers (4 ok, 2 failed)")
    document = json.loads((tmp_path / "results" / "half.json").read_text())
    results, agg = document["results"], document["aggregate"]
    assert [r["question"] for r in results] == questions
    assert [r["error"] is None for r in results] == [True, False, True, True, False, True]
    for r in results[1], results[4]:
        assert r["error"].startswith("HTTP 500") and (r["answer"], r["token"], r["ttft"]) == ("", 0, None)
    assert all(r["token"] == 8 and r["answer"] for r in results if r["error"] is None)
    assert (agg["requests_ok"], agg["requests_failed"], agg["token_sum"]) == (4, 2, 32)
    assert agg["error_pct"] == pytest.approx(33.333)
    log = (tmp_path / "results" / "half.log").read_text()
    assert log.count("WARNING") == 2 and "q002 failed" in log and "q005 failed" in log


def test_unreachable_server_exits_2_with_one_line(tmp_path):
    proc = loadtest("nothing", "--endpoint", f"http://127.0.0.1:{free_port()}", "--model", "m", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("llmspec: cannot reach http://127.0.0.1:")
    assert not (tmp_path / "results" / "nothing.json").exists()
    assert "cannot reach" in (tmp_path / "results" / "nothing.log").read_text()


@pytest.mark.parametrize("files, args, message", [
    ({"config.json": '{"server": "http://127.0.0.1:1", "model": "m", "concurent": 2}'}, ["--config", "config.json"],
     "llmspec: config.json: concurent: unknown key"),
    ({"q.json": '["fine", 42]'}, ["--endpoint", "http://127.0.0.1:1", "--model", "m", "--questions", "q.json"],
     "llmspec: q.json: [1]: expected a non-empty question string"),
    ({}, ["--endpoint", "http://127.0.0.1:1", "--model", "m", "--api-key-env", "LLMSPEC_NO_SUCH_KEY"],
     "llmspec: --api-key-env: environment variable LLMSPEC_NO_SUCH_KEY is not set"),
    ({}, ["../escape", "--endpoint", "http://127.0.0.1:1", "--model", "m"], "OUTPUT_NAME must be a plain file name"),
])
def test_bad_input_exits_2_with_one_line_naming_file_and_key(tmp_path, files, args, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    args = args if args[0].startswith("..") else ["bad", *args]
    proc = loadtest(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr


@pytest.mark.server
def test_levels_against_a_llama_server_started_by_hand(make_server, tmp_path):
    """`--concurrent 1,2,4`: the plan's document for the last level, unchanged in shape, plus `levels`
    and the capacity answer; the server is a real llama-server with four slots on SmolLM2."""
    with make_server(ctx_size=2048, threads=2, parallel=4) as server:
        proc = loadtest("levels", "--endpoint", server.url, "--model", "smol", "--concurrent", "1,2,4",
                        "--count", "4", "--max-tokens", "16", "--max-p90-ttft", "30", "--min-tokens-per-user", "1",
                        cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    document = json.loads((tmp_path / "results" / "levels.json").read_text())
    assert list(document) == ["meta", "results", "aggregate", "schema_version", "levels", "capacity"]
    assert list(document["meta"]) == META_KEYS and document["meta"]["concurrent"] == 4
    assert list(document["aggregate"]) == AGGREGATE_KEYS and len(document["results"]) == 4
    assert [lv["concurrent"] for lv in document["levels"]] == [1, 2, 4]
    for lv in document["levels"]:
        assert lv["aggregate"]["requests_ok"] == 4 and lv["meets_service_level"]
        assert lv["figures"]["p90_ttft_s"] > 0 and lv["figures"]["goodput_per_s"] > 0
        assert len(lv["results"]) == 4 and all(r["time"] > 0 and r["error"] is None for r in lv["results"])
        assert set(lv["results"][0]) == {"time", "ttft", "token", "error"}  # each level's request times, no texts
    assert document["levels"][-1]["aggregate"] == document["aggregate"]
    assert document["capacity"]["max_users_at_slo"] == 4
    assert document["capacity"]["sentence"].startswith("up to 4 concurrent users with p90 TTFT <= 30 s")
    assert "capacity: up to 4 concurrent users" in proc.stdout
    progress = [line for line in proc.stderr.splitlines() if line.startswith("loadtest: ")]
    assert [line.split(" done")[0] for line in progress if "4/4" in line] == [
        "loadtest: 1 user, 4/4", "loadtest: 2 users, 4/4", "loadtest: 4 users, 4/4"]


def test_poisson_arrivals_from_the_command_line(fake_server, tmp_path):
    """Requests leave at the asked rate whatever the server does; the document says how they arrived."""
    fake = fake_server(slots=8, token_delay_s=0.001)
    proc = loadtest("poisson", "--endpoint", fake.url, "--model", "m", "--questions", str(QUESTIONS),
                    "--arrival", "poisson", "--rate", "40", "--count", "120", "--concurrent", "8",
                    "--max-tokens", "4", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    document = json.loads((tmp_path / "results" / "poisson.json").read_text())
    assert document["meta"]["arrival"] == {"pattern": "poisson", "rate_per_s": 40.0, "seed": 42}
    assert document["aggregate"]["requests_ok"] == 120 and "levels" not in document
    assert document["aggregate"]["mean_interarrival_ms"] == pytest.approx(25.0, rel=0.10)
    bad = loadtest("x", "--endpoint", fake.url, "--model", "m", "--arrival", "poisson", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().endswith(
        "--arrival poisson: needs --rate (requests per second, above 0) and one --concurrent")


def test_questions_with_a_scorer_are_scored_and_the_rest_keep_the_plans_zero(fake_server, tmp_path):
    """The quality profile's scorers on load questions; the fake server answers with a fixed sentence
    (tests/fakeserver.py WORDS), so a regex that finds its first word is right and one that does not is wrong."""
    from fakeserver import WORDS

    questions = tmp_path / "scored.json"
    questions.write_text(json.dumps([
        {"question": "Say the word.", "scorer": {"type": "regex", "pattern": WORDS[0]}},
        {"question": "Say something else.", "scorer": {"type": "regex", "pattern": "^zebra$"}},
        "An unscored question?"]))
    fake = fake_server(slots=2)
    proc = loadtest("scored", "--endpoint", fake.url, "--model", "m", "--questions", str(questions), "--count", "3",
                    "--concurrent", "2", "--max-tokens", "8", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    document = json.loads((tmp_path / "results" / "scored.json").read_text())
    assert [(r["quality"], r.get("scored", False)) for r in document["results"]] == [
        (1.0, True), (0.0, True), (0.0, False)]
    assert (document["aggregate"]["quality_avg"], document["aggregate"]["quality_scored"]) == (0.5, 2)
    questions.write_text(json.dumps([{"question": "q", "scorer": {"type": "number"}}]))
    bad = loadtest("bad", "--endpoint", fake.url, "--model", "m", "--questions", str(questions), cwd=tmp_path)
    assert bad.returncode == 2 and f"{questions}: [0].scorer: " in bad.stderr and "\n" not in bad.stderr.strip()


def test_csv_and_xlsx_exports_beside_the_plans_json(fake_server, tmp_path):
    import openpyxl

    fake = fake_server(slots=2)
    proc = loadtest("exported", "--endpoint", fake.url, "--model", "m", "--questions", str(QUESTIONS), "--count", "4",
                    "--concurrent", "1,2", "--max-tokens", "4", "--format", "json,csv,xlsx", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "results"
    document = json.loads((out / "exported.json").read_text())
    lines = (out / "exported.csv").read_text().splitlines()
    assert lines[0].split(",")[:4] == ["question", "time", "token", "quality"] and len(lines) == 5
    book = openpyxl.load_workbook(out / "exported.xlsx", read_only=True)
    assert book.sheetnames == ["results", "aggregate", "levels"]
    levels = list(book["levels"].iter_rows(values_only=True))
    assert [row[0] for row in levels[1:]] == [1, 2]
    aggregate = dict(zip(*list(book["aggregate"].iter_rows(values_only=True))))
    assert aggregate["requests_ok"] == document["aggregate"]["requests_ok"] == 4
    bad = loadtest("x", "--endpoint", fake.url, "--model", "m", "--format", "json,pdf", cwd=tmp_path)
    assert bad.returncode == 2 and "--format: 'json,pdf': give any of json, csv, xlsx" in bad.stderr
