"""The session profile: a growing conversation replayed as a client sends it, and proof of its cache hits.

The fake server (tests/fakeserver.py) reports `cache_n = 0` on every request, unchanged here: a
session against it must say 0 % with a flag. The real llama-server on SmolLM2 must prove the hits.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import PIPELINE_ONLY, SMOL_MODEL, doit, executed_cells
from pydantic import ValidationError

from llmspec.profiles import PROFILES, ProfileContext
from llmspec.profiles import session as sp
from llmspec.profiles.corpus import repo_path
from llmspec.profiles.session import SessionProfile
from llmspec.run.client import ChatClient, RequestRecord

REPO = Path(__file__).resolve().parent.parent


# --- pure parts -------------------------------------------------------------------------------

def test_targets_grow_in_equal_steps_to_the_final_size():
    assert sp.targets(500, 1000, 4) == [625, 750, 875, 1000]
    assert sp.targets(545, 8192, 8)[-1] == 8192


def test_a_model_that_cannot_hold_the_final_size_stops_below_it_and_says_why():
    assert sp.plan_final(8192, 48, 32768, 8500) == (8192, None)
    final, why = sp.plan_final(8192, 48, 2048, None)
    assert final + 48 <= 2048 and "trained context of 2048 tokens" in why
    final, why = sp.plan_final(8192, 48, None, 4096)
    assert final + 48 <= 4096 and "a slot's context of 4096" in why


def test_one_slot_per_session_each_with_room_for_the_final_prompt():
    settings = SessionProfile(final_tokens=8192, max_tokens=48, sessions=4)
    ctx_size, slots = sp.server_overrides(settings, 4096)
    assert slots == 4 and ctx_size // slots >= 8192 + 48


def test_too_many_turns_for_the_final_size_is_refused():
    with pytest.raises(ValidationError, match="raise final_tokens or lower turns"):
        SessionProfile(final_tokens=512, turns=16)


def test_session_files_read_as_the_paths_they_snapshot():
    files = PROFILES["session"].inputs(SessionProfile(), REPO)["session_files"]
    assert len(files) >= 3 and all(name.endswith(".py.txt") for name in files)
    assert repo_path(Path("01-llmspec-stats.py.txt")) == "llmspec/stats.py"


def turn(timings: dict | None, usage: dict | None = None) -> sp.Turn:
    return sp.Turn(RequestRecord("t", 0.0, timings=timings, usage=usage), 2, 100, True)


def test_cache_hits_are_the_engines_own_count_or_missing_never_guessed():
    assert sp._hit_pct([turn({"prompt_n": 25, "cache_n": 75})]) == 75.0
    assert sp._hit_pct([turn({"prompt_n": 100, "cache_n": 0})]) == 0.0
    # mistral.rs, Ollama, an endpoint: usage says the prompt's size but nothing says what was cached
    assert sp._hit_pct([turn({"prompt_n": 100}, {"prompt_tokens": 100})]) is None
    assert sp.prompt_total(turn({"prompt_n": 25, "cache_n": 75}).record) == 100


# --- the fake server: the conversation a client sends ---------------------------------------------

SMALL = SessionProfile(final_tokens=1024, turns=4, repeats=2, sessions=2, max_tokens=16)


@pytest.fixture(scope="module")
def on_fake():
    from fakeserver import FakeLlamaServer

    with FakeLlamaServer(slots=2) as fake:
        client = ChatClient(fake.url)
        outcome = sp.run(ProfileContext(client, SMALL, REPO, progress=print))
        client.close()
        yield outcome, fake.requests


def test_every_turn_resends_the_conversation_so_far(on_fake):
    """A cache can only hit if each request starts with the previous one plus its answer."""
    _, bodies = on_fake
    first_session = bodies[2:2 + SMALL.turns]  # after the two calibration requests
    for before, after in zip(first_session, first_session[1:]):
        grown = after["messages"]
        assert grown[:len(before["messages"])] == before["messages"]
        assert [m["role"] for m in grown[len(before["messages"]):]] == ["assistant", "user"]
    assert first_session[0]["messages"][0]["role"] == "system" and "read_file" in first_session[0]["messages"][0][
        "content"]
    assert "[read_file for 'llmspec/stats.py'] Result:" in first_session[0]["messages"][1]["content"]


def test_cache_on_after_the_first_turn_off_for_the_baseline_and_one_slot_per_session(on_fake):
    outcome, bodies = on_fake
    calibration, rest = bodies[:2], bodies[2:]
    assert all(b["cache_prompt"] is False and b["max_tokens"] == 1 for b in calibration)
    per_repeat = SMALL.turns + 1  # the session, then its last turn with the cache off
    for r in range(SMALL.repeats):
        chunk = rest[r * per_repeat:(r + 1) * per_repeat]
        assert [b["cache_prompt"] for b in chunk] == [False, True, True, True, False]
        assert {b["id_slot"] for b in chunk} == {0}
        assert chunk[-1]["messages"] == chunk[-2]["messages"]  # the baseline reads the same prompt
    concurrent = rest[SMALL.repeats * per_repeat:]
    assert len(concurrent) == SMALL.sessions * SMALL.turns
    assert sorted({b["id_slot"] for b in concurrent}) == [0, 1]
    assert all(b["temperature"] == 0 and b["ignore_eos"] for b in bodies)


def test_figures_sizes_and_the_flag_for_no_reuse(on_fake):
    outcome, _ = on_fake
    m = outcome.metrics
    for name in ("ttft_s_at_1024", "ttft_s_at_1024_nocache", "ttft_s_at_1024_concurrent", "ttft_s", "ttft_s_nocache",
                 "ttft_s_concurrent", "prefill_tokens_per_s"):
        assert m[name] is not None and m[name] > 0, name
        assert outcome.intervals[name].n == 2
    assert m["cache_hit_pct"] == 0  # the fake reports cache_n 0: said as 0, with the reason
    assert any("reused no cached tokens" in flag for flag in outcome.flags)
    assert abs(m["final_tokens"] - 1024) <= sp.TOLERANCE_TOKENS
    turns = [s for s in outcome.samples if s.get("run") == "single" and s["repeat"] == 1]
    assert [s["turn"] for s in turns] == [1, 2, 3, 4]
    assert all(abs(s["prompt_tokens"] - s["target_tokens"]) <= sp.TOLERANCE_TOKENS for s in turns)
    assert all(s["prompt_tokens"] < t["prompt_tokens"] for s, t in zip(turns, turns[1:]))


@pytest.mark.doit
def test_an_endpoint_runs_it_through_doit(fake_server, project):
    """An [[endpoints]] server (llmspec did not start it): session.json with the contract's names."""
    fake = fake_server(slots=2)
    project(f"""
    {PIPELINE_ONLY}
    [profiles.session]
    final_tokens = 800
    turns = 3
    repeats = 2
    sessions = 2
    max_tokens = 8

    [[endpoints]]
    name = "box"
    url = "{fake.url}"
    profiles = ["session"]
    """)
    out = doit(project.root)
    assert executed_cells(out.stdout) == ["cell:t:box@remote:session"]
    (path,) = (project.root / "build" / "results").glob("*/*/*/*/*.json")
    result = json.loads(path.read_text())
    assert path.name == "session.json" and result["status"] == "ok", result.get("reason")
    m = result["metrics"]
    assert m["cache_hit_pct"] == 0 and m["ttft_s_at_800"] > 0 and m["ttft_s_at_800_nocache"] > 0
    assert result["intervals"]["ttft_s_at_800"]["n"] == 2
    assert any("slots are unknown" in flag for flag in result["flags"])


# --- the real llama-server on SmolLM2: the hits, proven ------------------------------------------

SPEC = """
[profiles.session]
final_tokens = 1024
turns = 3
repeats = 2
sessions = 2
max_tokens = 16
""" + SMOL_MODEL


@pytest.mark.server
def test_smollm2_reuses_the_conversation_and_the_baseline_does_not(project, llama_server):
    """What a user relies on: after the first turn most of each prompt comes from the slot's cache
    (the engine's own count), the same prompt read whole takes longer, and two sessions on two
    slots both hit their own caches."""
    project(SPEC)
    out = doit(project.root)
    assert executed_cells(out.stdout) == ["cell:t:SmolLM2-135M-Instruct@Q4_1:session"]
    (path,) = (project.root / "build" / "results").glob("*/*/*/*/*.json")
    result = json.loads(path.read_text())
    assert path.name == "session.json" and result["status"] == "ok", result.get("reason")
    m, samples = result["metrics"], result["samples"]
    print("SmolLM2 session:", {k: v for k, v in m.items() if "ttft" in k or "cache" in k or "tokens" in k},
          result["flags"])
    assert "--parallel 2" in " ".join(result["server"]["args"])
    cached = [s for s in samples if s.get("run") in ("single", "concurrent") and s["turn"] > 1]
    assert len(cached) == (2 + 2) * 2
    for s in cached:
        assert s["timings"]["cache_n"] > 0.5 * s["prompt_tokens"], s  # most of it reused
        assert s["cached_tokens"] + s["new_tokens"] == s["prompt_tokens"]
    cold = [s for s in samples if s.get("run") == "nocache"]
    assert len(cold) == 2 and all(s["timings"]["cache_n"] == 0 for s in cold)
    last = [s for s in samples if s.get("run") == "single" and s["turn"] == 3]
    for warm, whole in zip(last, cold):
        assert whole["prompt_tokens"] == warm["prompt_tokens"]
        assert whole["ttft_s"] > warm["ttft_s"]  # reading everything takes longer than reading what is new
    assert m["cache_hit_pct"] > 50 and m["ttft_s_at_1024_nocache"] > m["ttft_s_at_1024"]
    assert abs(m["final_tokens"] - 1024) <= sp.TOLERANCE_TOKENS
    assert {s["session"] for s in samples if s.get("run") == "concurrent"} == {1, 2}
