"""The long-context profile: exact prompt sizes, honest skips, and metrics that match the server's timings."""

from pathlib import Path

import pytest
import requests

from llmspec.errors import CellError
from llmspec.models.files import metadata
from llmspec.profiles import ProfileContext
from llmspec.profiles import long_context as lc
from llmspec.profiles.base import read_prose
from llmspec.profiles.long_context import LongContextProfile, LongContextThresholds
from llmspec.run.client import ChatClient

REPO = Path(__file__).resolve().parent.parent
SERVER_CTX = 600  # room for 512 prompt tokens plus the generation, not for 1024


# --- pure helpers ---------------------------------------------------------------------------

def words(text: str) -> int:
    """A fake tokenizer: one token per word."""
    return len(text.split())


def test_cut_to_tokens_takes_the_longest_prefix_within_the_budget():
    text = "one two three four five six seven"
    prefix, n = lc.cut_to_tokens(text, 4, words)
    assert n == 4 and prefix.split() == ["one", "two", "three", "four"]
    assert words(text[:len(prefix) + 1]) > 4  # one more character would overshoot
    assert lc.cut_to_tokens(text, 100, words) == (text, 7)
    assert lc.cut_to_tokens(text, 0, words) == ("", 0)


def test_plan_sizes_says_why_each_size_is_skipped():
    planned = lc.plan_sizes([16384, 1024, 2048, 1024, 256], trained=8192, server_ctx=1280, max_tokens=8)
    assert [size for size, _ in planned] == [256, 1024, 2048, 16384]  # distinct, smallest first
    reasons = dict(planned)
    assert reasons[256] is None and reasons[1024] is None
    assert "server's context of 1280 tokens" in reasons[2048]
    assert reasons[16384] == "beyond the model's trained context of 8192 tokens"
    # Without metadata or a managed server nothing is ruled out in advance.
    assert all(reason is None for _, reason in lc.plan_sizes([4096, 65536], None, None, 32))


def test_a_size_that_fills_the_server_exactly_is_attempted():
    assert lc.plan_sizes([1024], None, 1032, 8) == [(1024, None)]
    assert lc.plan_sizes([1025], None, 1032, 8)[0][1] is not None


def test_server_overrides_make_room_for_the_largest_size():
    settings = LongContextProfile(sizes=[4096, 65536], max_tokens=32)
    assert lc.server_overrides(settings, 4096) == (65536 + 32 + 256, 1)
    assert lc.server_overrides(LongContextProfile(sizes=[256], max_tokens=8), 4096) == (4096, 1)


def test_nothing_attempted_reports_zero_context_and_says_so():
    outcome = lc.summarize([], [{"size": 4096, "skipped": "beyond ..."}], [])
    assert outcome.metrics["max_context_tokens"] == 0
    assert outcome.metrics["target_load_s"] is None and outcome.metrics["prompt_tokens_per_s"] is None
    assert any("no context size was attempted" in flag for flag in outcome.flags)


def completed(size: int, load_s: float) -> list[dict]:
    """Three repeats of one completed size, each taking `load_s` to read the prompt."""
    return [{"size": size, "ttft_s": load_s, "timings": {"prompt_ms": load_s * 1000, "prompt_per_second": size / load_s,
                                                          "predicted_per_second": 50.0}} for _ in range(3)]


def test_the_load_time_is_the_one_at_the_target_size():
    done = [completed(1024, 1.0), completed(4096, 5.0), completed(8192, 12.0)]
    assert lc.summarize(done, [], [], target=4096).metrics["target_load_s"] == 5.0
    assert lc.summarize(done, [], [], target=3000).metrics["target_load_s"] == 5.0  # the next size up, not 1024's


def test_a_target_not_reached_has_no_load_time_and_says_why():
    outcome = lc.summarize([completed(1024, 1.0), completed(4096, 5.0)], [], [], target=8192)
    assert outcome.metrics["target_load_s"] is None and "target_load_s" not in outcome.intervals
    assert outcome.metrics["max_context_tokens"] == 4096
    assert "target_load_s is missing: the target of 8192 tokens was not reached (the largest size completed was " \
           "4096)" in outcome.flags


def test_the_report_reads_the_load_time_again_at_todays_target():
    row = {"load_s_1024": 1.0, "load_s_4096": 5.0, "load_s_8192": None, "target_load_s": 5.0}
    assert lc.rederive(row, LongContextThresholds(target_context_tokens=1024)) == {"target_load_s": 1.0}
    assert lc.rederive(row, LongContextThresholds(target_context_tokens=8192)) == {"target_load_s": None}


class FlakyTokenizer:
    """A client whose kept-alive connection was closed once, then works; or one without /tokenize."""

    def __init__(self, failures):
        self.failures = list(failures)

    def tokenize(self, text):
        if self.failures:
            raise self.failures.pop(0)
        return text.split()


def test_token_counter_resends_once_after_a_closed_connection():
    assert lc.token_counter(FlakyTokenizer([requests.ConnectionError("closed")]))("a b c") == 3
    with pytest.raises(CellError, match="twice"):
        lc.token_counter(FlakyTokenizer([requests.ConnectionError()] * 2))("a b c")
    with pytest.raises(CellError, match="/tokenize"):
        lc.token_counter(FlakyTokenizer([requests.HTTPError("404 Not Found")]))("a b c")


def test_bundled_prose_is_long_plain_text_and_fingerprinted():
    corpus = read_prose(REPO, "prompts/long_context")
    assert len(corpus.split()) >= 6000
    assert corpus.isascii()
    files = lc.KIND.inputs(LongContextProfile(), REPO)["text_files"]
    assert len(files) >= 3 and all(name.endswith(".txt") for name in files)


# --- the ladder: on the real llama-server on SmolLM2 (trained context 8192), and on the fake one -----
# The real server proves the sizes are exact with a real tokenizer and chat template; the fake
# (tests/fakeserver.py, one token per word, started by llmspec's `Server` so its memory is real)
# checks the bookkeeping without a model, where every size must come out exact to the token.

@pytest.fixture(scope="module")
def smol_server(make_server):
    with make_server(ctx_size=SERVER_CTX) as server:
        yield server, metadata(server.model)


@pytest.fixture(scope="module")
def fake_smol(make_fake_server):
    with make_fake_server(ctx_size=SERVER_CTX) as server:
        yield server, {"context_length": 8192}  # what the GGUF metadata of SmolLM2 says


def run_profile(server, meta, sizes, managed=True):
    settings = LongContextProfile(sizes=sizes, max_tokens=8)
    client = ChatClient(server.url)
    try:
        return lc.run(ProfileContext(client, settings, REPO, progress=print, server=server if managed else None,
                                     model_meta=meta))
    finally:
        client.close()


@pytest.mark.parametrize("which", [pytest.param("smol_server", marks=pytest.mark.server), "fake_smol"])
def test_measures_exact_sizes_and_skips_what_cannot_fit(which, request):
    server, meta = request.getfixturevalue(which)
    real = which == "smol_server"
    slack = 2 if real else 0  # a real tokenizer may split differently at the cut; the fake's never does
    assert meta["context_length"] == 8192
    outcome = run_profile(server, meta, [128, 512, 1024, 16384])
    m, samples = outcome.metrics, outcome.samples
    print(m)
    measured: dict[int, list[dict]] = {}
    for sample in samples:
        if "size" in sample and "skipped" not in sample:
            measured.setdefault(sample["size"], []).append(sample)
    skipped = {s["size"]: s["skipped"] for s in samples if "skipped" in s}
    assert sorted(measured) == [128, 512]
    assert skipped[16384] == "beyond the model's trained context of 8192 tokens"
    assert f"server's context of {SERVER_CTX} tokens" in skipped[1024]
    assert any(flag.startswith("16384 tokens not attempted") for flag in outcome.flags)
    for size, repeats in measured.items():
        assert [x["repeat"] for x in repeats] == [1, 2, 3]  # the default: three per size
        for sample in repeats:
            t = sample["timings"]
            assert abs(t["prompt_n"] - size) <= slack, (size, t["prompt_n"])  # chat template included
            assert t["cache_n"] == 0  # every repeat read the whole prompt again
            assert t["predicted_n"] == 8
            assert sample["text_tokens"] + sample["template_tokens"] == pytest.approx(size, abs=slack)
        loads = sorted(x["timings"]["prompt_ms"] / 1000 for x in repeats)
        assert m[f"load_s_{size}"] == loads[1]  # the median of three
        assert outcome.intervals[f"load_s_{size}"].low == loads[0]
        assert outcome.intervals[f"load_s_{size}"].high == loads[2]
        assert m[f"prompt_tokens_per_s_{size}"] == sorted(x["timings"]["prompt_per_second"] for x in repeats)[1]
        assert m[f"ttft_s_{size}"] == sorted(x["ttft_s"] for x in repeats)[1] > 0
        assert m[f"rss_gb_{size}"] == max(x["rss_bytes"] for x in repeats) / 2**30
        assert m[f"rss_gb_{size}"] > (0.05 if real else 0)
        assert m[f"swap_gb_{size}"] == max(x["swap_bytes"] for x in repeats) / 2**30
        assert m[f"gen_tokens_per_s_{size}"] == sorted(x["timings"]["predicted_per_second"] for x in repeats)[1]
    assert "load_s_1024" not in m and "load_s_16384" not in m
    assert m["max_context_tokens"] == 512
    assert m["target_load_s"] == m["load_s_512"]
    assert outcome.intervals["target_load_s"] == outcome.intervals["load_s_512"]
    assert m["prompt_tokens_per_s"] == m["prompt_tokens_per_s_512"]
    calibration = next(s for s in samples if s.get("calibration"))
    assert calibration["timings"]["prompt_n"] == calibration["text_tokens"] + calibration["template_tokens"]


def test_external_endpoint_stops_at_the_first_failed_size(fake_server):
    """Without a managed server nothing says 2048 will not fit: it is tried, fails, and ends the ladder."""
    fake = fake_server(ctx_size=SERVER_CTX)  # refuses a longer prompt as llama-server does (HTTP 400)
    outcome = run_profile(fake, None, [128, 2048, 4096], managed=False)
    m = outcome.metrics
    assert m["max_context_tokens"] == 128
    assert m["rss_gb_128"] is None and m["swap_gb_128"] is None  # no process to watch
    failed = next(s for s in outcome.samples if s.get("size") == 2048)
    assert failed["error"]
    assert not any(s.get("size") == 4096 for s in outcome.samples)
    assert any("2048 tokens failed" in flag and "larger sizes not attempted" in flag for flag in outcome.flags)
    assert [b["max_tokens"] for b in fake.requests] == [1, 8, 8, 8, 8]  # calibration, 128 three times, 2048 refused
