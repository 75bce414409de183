"""The structured profile: the validator and field scoring on recorded answers, the items file's
checks, the request flow against the fake llama-server (managed-less, as an endpoint) and one
doit run on the real llama-server with SmolLM2-135M."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import PIPELINE_ONLY, REPO, SMOL_MODEL, doit, executed_cells

from llmspec.errors import UserError
from llmspec.profiles import PROFILES, ProfileContext, structured
from llmspec.profiles.structured import (
    StructuredProfile,
    load_items,
    parse_answer,
    same_field,
    schema_problem,
    score_answer,
)
from llmspec.run.client import ChatClient, RequestRecord

BUNDLED = REPO / "prompts" / "structured.json"
SCHEMA = {"type": "object", "additionalProperties": False, "required": ["city", "rooms", "pets"],
          "properties": {"city": {"type": "string"}, "rooms": {"type": "integer"}, "pets": {"type": "boolean"},
                         "rent": {"type": "number"}, "kind": {"type": "string", "enum": ["flat", "house"]},
                         "tags": {"type": "array", "items": {"type": "string"}}}}
EXPECTED = {"city": "Leipzig", "rooms": 2, "pets": False, "rent": 690}


# ---- parsing, validating, comparing: pure functions of the answer text

@pytest.mark.parametrize("text, parsed, value", [
    ('{"a": 1}', True, {"a": 1}),
    ('  \n{"a": 1}\n\n', True, {"a": 1}),  # whitespace around it
    ('```json\n{"a": 1}\n```', True, {"a": 1}),  # one fence, as unconstrained models write it
    ('```\n[1, 2]\n```', True, [1, 2]),
    ('Here it is: {"a": 1}', False, None),  # prose around it: a program reading JSON fails here
    ('{"a": 1} {"b": 2}', False, None),  # two values
    ('{"a": "Lisbo', False, None),  # cut off by max_tokens
    ("", False, None),
    ("null", True, None),
])
def test_parse_answer(text, parsed, value):
    assert parse_answer(text) == (parsed, value)


@pytest.mark.parametrize("value, problem", [
    ({"city": "Leipzig", "rooms": 2, "pets": False}, None),
    ({"city": "Leipzig", "rooms": 2.0, "pets": False}, None),  # 2.0 is an integer in JSON Schema
    ({"city": "Leipzig", "rooms": 2, "pets": False, "kind": "flat", "tags": ["bright"], "rent": 690.5}, None),
    ({"city": "Leipzig", "rooms": "2", "pets": False}, '$.rooms: "2" is not of type integer'),
    ({"city": "Leipzig", "rooms": 2.5, "pets": False}, "$.rooms: 2.5 is not of type integer"),
    ({"city": "Leipzig", "rooms": True, "pets": False}, "$.rooms: true is not of type integer"),
    ({"city": "Leipzig", "rooms": 2, "pets": 0}, "$.pets: 0 is not of type boolean"),
    ({"city": "Leipzig", "rooms": 2}, "$: required field 'pets' is missing"),
    ({"city": "Leipzig", "rooms": 2, "pets": False, "floor": 3}, "$: field 'floor' is not allowed"),
    ({"city": "Leipzig", "rooms": 2, "pets": False, "kind": "Flat"}, '$.kind: "Flat" is not one of ["flat", "house"]'),
    ({"city": "Leipzig", "rooms": 2, "pets": False, "tags": ["a", 3]}, "$.tags[1]: 3 is not of type string"),
    (["Leipzig"], '$: ["Leipzig"] is not of type object'),
])
def test_schema_problem(value, problem):
    assert schema_problem(value, SCHEMA) == problem


def test_schema_problem_allows_extra_fields_unless_forbidden():
    open_schema = {**SCHEMA, "additionalProperties": True}
    assert schema_problem({"city": "x", "rooms": 1, "pets": True, "floor": 3}, open_schema) is None


@pytest.mark.parametrize("expected, got, same", [
    ("Lisbon", "lisbon", True),
    ("Senior Data Engineer", " senior  data\nengineer ", True),
    ("Lisbon", "Lisbon, Portugal", False),
    ("3", 3, False),
    (3, 3.0, True),
    (482.5, 482.50, True),
    (3, "3", False),
    (1, True, False),  # a boolean is not a number
    (False, 0, False),
    (False, False, True),
    (None, None, True),
    (None, "null", False),
])
def test_same_field(expected, got, same):
    assert same_field(expected, got) is same


def test_score_answer_on_recorded_answers():
    """Answers as SmolLM2 wrote them (constrained and not), scored field by field."""
    right = score_answer('{"city": "Leipzig", "rooms": 2, "pets": false, "rent": 690}', SCHEMA, EXPECTED)
    assert right == {"parsed": True, "valid": True, "problem": None,
                     "fields": {"city": 1, "rooms": 1, "pets": 1, "rent": 1}}
    # valid JSON that fits the schema, with wrong values: the grammar cannot make a model read
    wrong = score_answer('{"city": "Berlin", "rooms": 54, "pets": true}', SCHEMA, EXPECTED)
    assert wrong["valid"] and wrong["fields"] == {"city": 0, "rooms": 0, "pets": 0, "rent": 0}
    # breaks the schema (a string for an integer) yet holds some right fields: both are counted
    loose = score_answer('```json\n{"city": "leipzig", "rooms": "2", "pets": false, "rent": 690.0}\n```',
                         SCHEMA, EXPECTED)
    assert (loose["parsed"], loose["valid"], loose["problem"]) == (True, False, '$.rooms: "2" is not of type integer')
    assert loose["fields"] == {"city": 1, "rooms": 0, "pets": 1, "rent": 1}
    broken = score_answer('{"city": "Leipzig", "rooms": 2, "pe', SCHEMA, EXPECTED)
    assert broken == {"parsed": False, "valid": False, "problem": "not one JSON value",
                      "fields": {"city": 0, "rooms": 0, "pets": 0, "rent": 0}}
    assert score_answer("[1, 2]", SCHEMA, EXPECTED)["fields"] == {"city": 0, "rooms": 0, "pets": 0, "rent": 0}


def record(name: str, tokens: int, seconds: float, content: str = "{}", server_tps: float | None = None,
           reasoning: str = "") -> RequestRecord:
    """A finished request as the client records it: `tokens` generated evenly over `seconds`."""
    times = [1.0 + seconds * i / (tokens - 1) for i in range(tokens)]
    timings = {"cache_n": 0, "predicted_n": tokens, "predicted_per_second": server_tps} if server_tps else None
    return RequestRecord(name, 0.0, ttft_s=1.0, chunk_times_s=times, content=content, timings=timings,
                         finish_reason="stop", reasoning=reasoning, ttft_reasoning_s=0.5 if reasoning else None,
                         reasoning_chunks=4 if reasoning else 0)


def test_constraint_cost_is_paired_per_item_and_the_figures_carry_intervals():
    """Item by item: 80 vs 100 t/s is a 20 % cost whatever the other items' speeds; the item is right
    only when its constrained answer is valid and every field right."""
    good = '{"city": "Leipzig", "rooms": 2, "pets": false, "rent": 690}'
    half = '{"city": "Leipzig", "rooms": 3, "pets": false, "rent": 690}'
    speeds = [(80, 100), (40, 50), (160, 200), (90, 100), (70, 100), (75, 100), (60, 100)]
    records = {"constrained": [record(f"i{n}", 41, 40 / c, good if n else half, server_tps=c * 1.05)
                               for n, (c, _) in enumerate(speeds)],
               "unconstrained": [record(f"i{n}", 41, 40 / u, "Sure! " + good, server_tps=u * 1.05)
                                 for n, (_, u) in enumerate(speeds)]}
    samples = [{**r.as_sample(), "id": f"i{n}", "mode": mode, **score_answer(r.content, SCHEMA, EXPECTED)}
               for mode, found in records.items() for n, r in enumerate(found)]
    out = structured.outcome(samples, records, 192)
    m = out.metrics
    assert m["constraint_cost_pct"] == pytest.approx(20.0)  # median of 20, 20, 20, 10, 30, 25, 40
    assert m["json_valid_pct"] == 100 and m["json_valid_pct_unconstrained"] == 0  # prose before the JSON
    assert m["fields_correct_pct"] == pytest.approx(100 * 27 / 28)
    assert m["fields_correct_pct_unconstrained"] == 0
    # The medians of each mode alone (75 and 100 t/s) would say 25 %: they compare different items.
    assert m["tokens_per_s_constrained"] == pytest.approx(75) and m["tokens_per_s_unconstrained"] == pytest.approx(100)
    assert m["server_tokens_per_s_constrained"] == pytest.approx(75 * 1.05)
    assert (m["items"], m["fields"]) == (7, 28)
    assert out.items == {"i0": 0, **{f"i{n}": 1 for n in range(1, 7)}}
    assert out.intervals["json_valid_pct"].n == 7 and "Wilson" in out.intervals["json_valid_pct"].method
    assert out.intervals["fields_correct_pct"].n == 28
    cost = out.intervals["constraint_cost_pct"]
    assert cost.n == 7 and cost.low <= 20 <= cost.high and "median" in cost.method
    assert not {"ttft_reasoning_s", "ttft_answer_s", "reasoning_tokens"} & set(m)  # no model reasoned
    assert not any("do not fit their schema" in f for f in out.flags)


def test_a_reasoning_model_gets_its_reasoning_figures_and_only_its_answer_is_scored():
    records = {mode: [record("i0", 20, 0.2, '{"city": "Leipzig", "rooms": 2, "pets": false}',
                             reasoning='{"city": "Berlin"}')] for mode in ("constrained", "unconstrained")}
    samples = [{**r.as_sample(), "id": "i0", "mode": mode, **score_answer(r.content, SCHEMA, EXPECTED)}
               for mode, found in records.items() for r in found]
    m = structured.outcome(samples, records, 192).metrics
    assert (m["ttft_reasoning_s"], m["ttft_answer_s"], m["reasoning_tokens"]) == (0.5, 1.0, 4)
    assert m["fields_correct_pct"] == 75  # city, rooms, pets right; rent missing


# ---- the items file

def write_items(tmp_path: Path, items) -> Path:
    path = tmp_path / "items.json"
    path.write_text(json.dumps({"items": items}) if not isinstance(items, str) else items)
    return path


ITEM = {"id": "flat-01", "text": "A 2-room flat in Leipzig, no pets.", "schema": SCHEMA,
        "expected": {"city": "Leipzig", "rooms": 2, "pets": False}}


@pytest.mark.parametrize("change, message", [
    ({"schema": {**SCHEMA, "properties": {**SCHEMA["properties"], "city": {"type": "string", "pattern": "^L"}}}},
     "item flat-01: schema.properties.city: keyword 'pattern' is not supported"),
    ({"schema": {**SCHEMA, "type": "array"}}, 'item flat-01: schema: must be {"type": "object"}'),
    ({"schema": {**SCHEMA, "required": ["town"]}}, "item flat-01: schema.required: 'town' is not among the properties"),
    ({"schema": {**SCHEMA, "properties": {"city": {"type": "text"}}, "required": []}},
     "item flat-01: schema.properties.city.type: must be one or a list of object, array"),
    ({"expected": {"town": "Leipzig"}}, "item flat-01: expected.town: not a property of the schema"),
    ({"expected": {"rooms": "2"}}, 'item flat-01: expected does not fit the schema: $.rooms: "2" is not of type'),
    ({"expected": {}}, "item flat-01: expected: must be a non-empty object"),
    ({"answer": 1}, "item flat-01: unknown key 'answer'"),
    ({"id": "flat 01"}, "item flat 01: id: must be letters, digits"),
    ({"text": "  "}, "item flat-01: text: must be a non-empty string"),
])
def test_items_file_errors_name_the_item_and_the_key(tmp_path, change, message):
    path = write_items(tmp_path, [{**ITEM, **change}])
    with pytest.raises(UserError) as exc:
        load_items(path)
    assert str(exc.value).startswith(f"{path}: {message}"), str(exc.value)
    assert "\n" not in str(exc.value)


def test_items_file_shape_errors(tmp_path):
    for text, message in (("{", "not valid JSON"), ('{"items": []}', '"items" must be a non-empty list'),
                          ('{"items": [1], "notes": 2}', 'expected an object with "items"'),
                          (json.dumps({"items": [ITEM, ITEM]}), "item flat-01: id is used twice"),
                          (json.dumps({"items": [{k: v for k, v in ITEM.items() if k != "schema"}]}),
                           "item flat-01: missing key 'schema'")):
        with pytest.raises(UserError, match=message):
            load_items(write_items(tmp_path, text))
    with pytest.raises(UserError, match="profiles.structured.items: no such items file"):
        PROFILES["structured"].files(StructuredProfile(items="nowhere.json"), tmp_path)


def test_bundled_items_are_consistent():
    """Every bundled item's expected fields are all its schema's properties, and the expected
    object itself, sent back as the answer, scores valid with every field right."""
    items = load_items(BUNDLED)
    assert 12 <= len(items) <= 20 and len({i.id for i in items}) == len(items)
    assert "written for llmspec" in json.loads(BUNDLED.read_text())["description"]
    for item in items:
        assert set(item.expected) == set(item.schema["properties"]) == set(item.schema["required"]), item.id
        scored = score_answer(json.dumps(item.expected), item.schema, item.expected)
        assert scored["valid"] and all(scored["fields"].values()), item.id


def test_kind_declares_what_the_result_contract_and_the_engines_need():
    kind = PROFILES["structured"]
    assert {"json_valid_pct", "fields_correct_pct", "constraint_cost_pct"} <= set(kind.metrics)
    assert kind.engine_needs == {"json_schema"} and not kind.server_features  # llama-server needs no --jinja
    assert not kind.managed_only  # runs against an [[endpoints]] server too


# ---- the request flow, against the fake llama-server

def run_profile(url: str, settings: StructuredProfile, root: Path = REPO):
    client = ChatClient(url)
    try:
        return structured.run(ProfileContext(client, settings, root, progress=lambda text: None, server=None))
    finally:
        client.close()


def test_each_item_is_sent_twice_with_the_same_prompt_and_only_one_constrained(fake_server):
    fake = fake_server(answer_tokens=12)
    out = run_profile(fake.url, StructuredProfile(max_tokens=64, seed=3))
    items = load_items(BUNDLED)
    sent = fake.requests
    assert len(sent) == 2 + 2 * len(items)  # a warm-up of each kind, then each item twice
    assert [("response_format" in b) for b in sent[:2]] == [False, True]
    assert all(b["temperature"] == 0 and b["seed"] == 3 and b["cache_prompt"] is False for b in sent)
    for n, item in enumerate(items):
        pair = sent[2 + 2 * n: 4 + 2 * n]
        assert pair[0]["messages"] == pair[1]["messages"]
        assert item.text in pair[0]["messages"][-1]["content"]
        first = "constrained" if n % 2 == 0 else "unconstrained"  # the order alternates item by item
        constrained = pair[0] if first == "constrained" else pair[1]
        assert "response_format" not in (pair[1] if first == "constrained" else pair[0])
        assert constrained["response_format"]["type"] == "json_schema"
        assert constrained["response_format"]["json_schema"]["schema"] == item.schema
        assert all(b["max_tokens"] == 64 for b in pair)
    m = out.metrics
    # The fake ignores the schema and says "The quick brown fox ...": nothing parses, nothing is right.
    assert (m["json_valid_pct"], m["fields_correct_pct"], m["json_valid_pct_unconstrained"]) == (0, 0, 0)
    assert (m["items"], m["fields"]) == (len(items), sum(len(i.expected) for i in items))
    assert out.intervals["json_valid_pct"].n == len(items) and out.intervals["json_valid_pct"].high > 0
    assert m["tokens_per_s_constrained"] > 0 and m["server_tokens_per_s_unconstrained"] > 0
    assert m["constraint_cost_pct"] is not None and out.intervals["constraint_cost_pct"].n == len(items)
    assert out.items == {i.id: 0 for i in items}
    assert any(f"{len(items)} of {len(items)} constrained answers do not fit their schema" in f for f in out.flags)
    for s in out.samples:  # the samples suffice to score again
        item = next(i for i in items if i.id == s["id"])
        assert {k: s[k] for k in ("parsed", "valid", "problem", "fields")} == score_answer(
            s["answer"], item.schema, item.expected)
        assert s["timings"]["cache_n"] == 0 and s["prompt_name"] == f"{s['id']} {s['mode']}"


def test_a_reasoning_model_on_the_fake(fake_server, tmp_path):
    fake = fake_server(answer_tokens=10, reasoning_tokens=4)
    path = write_items(tmp_path, [ITEM, {**ITEM, "id": "flat-02"}])
    out = run_profile(fake.url, StructuredProfile(items=str(path)))
    m = out.metrics
    assert m["reasoning_tokens"] == 4 and 0 < m["ttft_reasoning_s"] < m["ttft_answer_s"]
    assert all(s["answer"] == "jumps over the lazy dog and" for s in out.samples)  # the reasoning is not scored


@pytest.mark.doit
def test_an_endpoint_runs_it_through_doit(fake_server, project):
    """An [[endpoints]] server (llmspec did not start it): the same figures, written as structured.json."""
    fake = fake_server(answer_tokens=8)
    project(f"""
    {PIPELINE_ONLY}
    [profiles.structured]
    max_tokens = 32

    [[endpoints]]
    name = "box"
    url = "{fake.url}"
    profiles = ["structured"]
    """)
    out = doit(project.root)
    assert executed_cells(out.stdout) == ["cell:t:box@remote:structured"]
    (path,) = (project.root / "build" / "results").glob("*/*/*/*/*.json")
    result = json.loads(path.read_text())
    assert path.name == "structured.json" and result["status"] == "ok", result.get("reason")
    assert result["metrics"]["json_valid_pct"] == 0 and result["intervals"]["json_valid_pct"]["n"] == 16
    assert set(result["items"]) == {i.id for i in load_items(BUNDLED)}


# ---- the real llama-server on SmolLM2

SPEC = """
[server]
ctx_size = 1024

[profiles.structured]
max_tokens = 96
""" + SMOL_MODEL


@pytest.mark.server
def test_smollm2_under_the_grammar(project, llama_server):
    """What a user relies on: with the schema as a grammar every finished answer parses and fits its
    schema (whether its values are right is the model's business), and the figures carry intervals."""
    project(SPEC)
    out = doit(project.root)
    assert executed_cells(out.stdout) == ["cell:t:SmolLM2-135M-Instruct@Q4_1:structured"]
    (path,) = (project.root / "build" / "results").glob("*/*/*/*/*.json")
    result = json.loads(path.read_text())
    assert path.name == "structured.json" and result["status"] == "ok", result.get("reason")
    m, samples = result["metrics"], result["samples"]
    print("SmolLM2 structured:", {k: m[k] for k in structured.KIND.metrics if k in m}, result["flags"])
    constrained = [s for s in samples if s["mode"] == "constrained"]
    assert len(constrained) == len(samples) / 2 == 16
    for s in constrained:
        assert s["timings"]["cache_n"] == 0
        if s["finish_reason"] == "stop":
            assert s["valid"], (s["id"], s["answer"], s["problem"])
    assert m["json_valid_pct"] >= m["json_valid_pct_unconstrained"]
    assert m["json_valid_pct"] == 100 * sum(s["valid"] for s in constrained) / 16
    for name in ("json_valid_pct", "fields_correct_pct", "tokens_per_s_constrained", "tokens_per_s_unconstrained",
                 "constraint_cost_pct"):
        interval = result["intervals"][name]
        assert interval["low"] <= m[name] <= interval["high"], name
    assert m["tokens_per_s_constrained"] > 0 and m["server_tokens_per_s_constrained"] > 0
    assert set(result["items"]) == {s["id"] for s in constrained}
