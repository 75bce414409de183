"""The interactive profile's server starts (issue #27): figures over starts, on recorded requests and on
the real llama-server started again between them."""

from __future__ import annotations

import json
import statistics
from dataclasses import fields

import pytest
from conftest import REPO

from llmspec.profiles import ProfileContext, interactive
from llmspec.profiles.interactive import InteractiveProfile
from llmspec.run.client import ChatClient, RequestRecord

RECORDED = REPO / "tests/fixtures/results/amd-epyc-2c-24g-ef098a/demo/SmolLM2-135M-Instruct/Q4_1/interactive.json"


def recorded() -> list[RequestRecord]:
    """The demo cell's 8 requests as the client recorded them."""
    names = {f.name for f in fields(RequestRecord)}
    return [RequestRecord(**{k: v for k, v in s.items() if k in names})
            for s in json.loads(RECORDED.read_text())["samples"]]


def test_starts_stay_out_of_the_fingerprint_at_their_default():
    """Results measured before `starts` existed stay current; a spec that sets it measures again."""
    assert "starts" not in interactive.KIND.inputs(InteractiveProfile(), REPO)
    assert interactive.KIND.inputs(InteractiveProfile(starts=3), REPO)["starts"] == 3


def test_more_starts_than_max_requests_is_one_clear_line(project):
    """Bad input: the file, the key, what is wrong and what would be right, exit 2, no traceback."""
    import subprocess
    import sys

    spec = project("[profiles.interactive]\nstarts = 20\n[[models]]\nname = \"m\"\nsize = \"1B\"\n"
                   "quants = [\"Q4_K_M\"]\nrepo = \"o/r\"\n")
    done = subprocess.run([sys.executable, "-m", "llmspec.cli", "check", str(spec)], capture_output=True, text=True,
                          cwd=project.root)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "profiles.interactive" in done.stderr and "starts (20) needs max_requests of 40 or more" in done.stderr


def test_every_server_start_measures_at_least_two_requests():
    """With one request per start the spread inside a start cannot be told from the spread between
    starts (issue #27): 3 requests over 3 starts become 2 per start, and the limit counts them."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="2 per server start"):
        InteractiveProfile(requests=3, max_requests=5, starts=3)
    assert InteractiveProfile(requests=3, max_requests=6, starts=3).starts == 3


def test_a_figure_over_starts_is_the_mean_of_start_medians_with_where_a_rerun_lands():
    groups = [[80.0, 82.0, 90.0], [70.0, 71.0], [88.0]]
    value, found = interactive.start_figure(groups)
    assert value == pytest.approx(statistics.fmean([82.0, 70.5, 88.0]))
    half = 4.303 * statistics.stdev([82.0, 70.5, 88.0]) * (2 / 3) ** 0.5  # a rerun's mean has its own error
    assert "a rerun over 3 server starts" in found.method and "95 %" in found.method
    assert (found.low, found.high) == (pytest.approx(value - half), pytest.approx(value + half))
    assert found.starts == found.n == 3 and found.as_dict()["starts"] == 3
    assert interactive.start_figure([[None], [75.0]]) == (75.0, None)  # one start with a value: no spread


def test_recorded_requests_over_four_starts_give_rerun_intervals_and_name_their_starts():
    records = recorded()
    groups = [records[i:i + 2] for i in range(0, 8, 2)]
    one = interactive._outcome(records, 5.0)
    four = interactive._outcome(records, 5.0, groups)
    assert one.metrics["server_starts"] == 1 and "starts" not in one.intervals["tokens_per_s"].as_dict()
    assert "one server start: a rerun may land outside" in one.intervals["tokens_per_s"].method
    assert four.metrics["server_starts"] == 4 and [s["start"] for s in four.samples] == [1, 1, 2, 2, 3, 3, 4, 4]
    for name in ("tokens_per_s", "server_tokens_per_s", "ttft_s"):
        found = four.intervals[name]
        assert found.starts == 4 and found.low >= 0 and found.low <= four.metrics[name] <= found.high
    assert not any("short of" in f for f in four.flags)  # +-3.8 %: within the 5 % target
    short = interactive._outcome(records, 1.0, groups)
    assert any("a rerun over 4 server starts lands within ±3.8%, short of the ±1% target" in f for f in short.flags)
    assert four.metrics["precision_pct"] == pytest.approx(
        four.intervals["tokens_per_s"].half_width_pct(four.metrics["tokens_per_s"]))


@pytest.fixture(scope="module")
def server(make_server):
    with make_server(ctx_size=512, threads=1) as srv:
        yield srv


@pytest.mark.server
def test_requests_are_spread_over_fresh_server_starts(server):
    """starts = 3 with 3 requests: two requests per start (the least), a fresh llama-server process
    for each start, and more starts (up to max_requests) while the rerun interval is short of the target."""
    pids = [server.proc.pid]

    def restart():
        server.stop()
        server.start()
        pids.append(server.proc.pid)

    settings = InteractiveProfile(requests=3, max_requests=9, starts=3, max_tokens=16, target_precision_pct=0.01)
    ctx = ProfileContext(ChatClient(server.url, timeout_s=300), settings, REPO, progress=print, server=server,
                         restarter=restart)
    outcome = interactive.run(ctx)
    assert len(set(pids)) == 4 == outcome.metrics["server_starts"]  # 0.01 % is never reached: max_requests stops
    assert [s["start"] for s in outcome.samples] == [1, 1, 2, 2, 3, 3, 4, 4] and outcome.metrics["requests"] == 8
    assert ctx.client.base_url == server.url and outcome.intervals["tokens_per_s"].starts == 4
    by_start = [[s["prompt_name"] for s in outcome.samples if s["start"] == n] for n in (1, 2, 3, 4)]
    assert all(names == by_start[0] for names in by_start)  # the same prompts in every start: only its luck differs
    for sample in outcome.samples:
        assert sample["timings"]["cache_n"] == 0


@pytest.mark.server
def test_starts_on_a_server_it_cannot_start_again_are_flagged(server):
    settings = InteractiveProfile(requests=3, max_requests=4, starts=2, max_tokens=8)
    outcome = interactive.run(ProfileContext(ChatClient(server.url, timeout_s=300), settings, REPO, progress=print))
    assert outcome.metrics["server_starts"] == 1 and any("measured on one start" in f for f in outcome.flags)
