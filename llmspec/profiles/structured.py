"""Structured output: answers constrained to a JSON schema, and what the constraint costs.

A program that reads a model's answer as JSON needs it to parse, to fit the schema and to hold
the right values. Engines offer a constraint for the first two (`response_format` with a JSON
schema, which llama-server turns into a grammar), paid for in decode speed. Every item is sent
twice with the same prompt at temperature 0 and a fixed seed: once constrained, once not (the
order alternates from item to item, so a drift of the machine falls on both alike). Scored:

- `json_valid_pct`: constrained answers that parse and validate against the item's schema
  (Wilson interval over items); `fields_correct_pct`: expected fields holding the expected value
  (Wilson over fields). The same two for the unconstrained answers (`..._unconstrained`) show
  what the constraint buys. Per item, right = valid and every field right: `Outcome.items`.
- `tokens_per_s_constrained` / `_unconstrained`: decode speed on the client's clock (median of
  the requests, distribution-free interval); `server_...` the same on the engine's own clock
  where it reports one (an endpoint may not: then missing, never guessed).
- `constraint_cost_pct`: the median over items of 100 * (1 - constrained / unconstrained
  decode speed), each item against itself, so the prompt's length cancels out; positive = slower.

Items file (`settings.items`, default prompts/structured.json, written for llmspec):

    {"description": "optional text",
     "items": [{"id": "invoice-01", "text": "Invoice INV-7 ... Total due: 482.50 EUR ...",
                "schema": {"type": "object", "properties": {"total": {"type": "number"},
                           "currency": {"type": "string", "enum": ["EUR", "USD"]}},
                           "required": ["total", "currency"], "additionalProperties": false},
                "expected": {"total": 482.5, "currency": "EUR"}}]}

- The schema uses this subset of JSON Schema, which the validator here checks in full: `type`
  (one or a list of object, array, string, integer, number, boolean, null), `properties`,
  `required`, `enum`, `items`, `additionalProperties` (true/false), `title`, `description`.
  Any other keyword is an error in the file, so nothing is believed checked that is not.
- `expected`: top-level fields and their values; it must itself fit the schema. Strings match
  ignoring case and runs of whitespace ("Lisbon" = "lisbon"); numbers by value (3 = 3.0, but not
  "3"); booleans and null exactly; lists and objects exactly.
- An answer parses when, without surrounding whitespace and one optional ``` fence, it is one JSON
  value. Fields are read from any answer that parses as an object, valid or not.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from pydantic import Field

from llmspec.engines.base import JSON_SCHEMA
from llmspec.errors import CellError, UserError
from llmspec.profiles.base import (
    REASONING_METRICS,
    Case,
    Figure,
    Outcome,
    ProfileContext,
    ProfileKind,
    Rule,
    clock_check,
    item_list,
    median,
    project_path,
    reasoning_figures,
    require_cache_miss,
)
from llmspec.stats import Interval, median_interval, wilson_interval
from llmspec.strict import Strict

SYSTEM = "You extract facts from a text. Answer with one JSON object and nothing else."
MODES = ("constrained", "unconstrained")
KEYWORDS = {"type", "properties", "required", "enum", "items", "additionalProperties", "title", "description"}
TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool) or isinstance(v, float) and v.is_integer(),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}
FENCE_RE = re.compile(r"^```[A-Za-z]*\s*\n?(.*?)\n?\s*```$", re.DOTALL)


# ---- the schema subset: checked in the file, then used to validate answers

def schema_fault(schema: Any, where: str = "schema") -> str | None:
    """What in `schema` lies outside the subset this module validates, or None."""
    if not isinstance(schema, dict):
        return f"{where}: must be an object"
    unknown = sorted(set(schema) - KEYWORDS)
    if unknown:
        return f"{where}: keyword {unknown[0]!r} is not supported (use {', '.join(sorted(KEYWORDS))})"
    types = schema.get("type", [])
    types = [types] if isinstance(types, str) else types
    if not isinstance(types, list) or any(t not in TYPES for t in types):
        return f"{where}.type: must be one or a list of {', '.join(TYPES)}"
    if "enum" in schema and (not isinstance(schema["enum"], list) or not schema["enum"]):
        return f"{where}.enum: must be a non-empty list"
    if "additionalProperties" in schema and not isinstance(schema["additionalProperties"], bool):
        return f"{where}.additionalProperties: must be true or false"
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        return f"{where}.properties: must be an object"
    required = schema.get("required", [])
    if not isinstance(required, list) or any(not isinstance(k, str) for k in required):
        return f"{where}.required: must be a list of property names"
    missing = [k for k in required if k not in properties]
    if missing:
        return f"{where}.required: {missing[0]!r} is not among the properties"
    inner = [(f"{where}.properties.{k}", s) for k, s in properties.items()]
    if "items" in schema:
        inner.append((f"{where}.items", schema["items"]))
    return next((fault for w, s in inner if (fault := schema_fault(s, w))), None)


def schema_problem(value: Any, schema: dict, where: str = "$") -> str | None:
    """The first way `value` breaks `schema` (the subset above), or None when it fits."""
    types = schema.get("type")
    types = [types] if isinstance(types, str) else types
    if types and not any(TYPES[t](value) for t in types):
        return f"{where}: {json.dumps(value)[:40]} is not of type {' or '.join(types)}"
    if "enum" in schema and not any(_equal_json(value, option) for option in schema["enum"]):
        return f"{where}: {json.dumps(value)[:40]} is not one of {json.dumps(schema['enum'])[:60]}"
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        missing = [k for k in schema.get("required", []) if k not in value]
        if missing:
            return f"{where}: required field {missing[0]!r} is missing"
        extra = [k for k in value if k not in properties]
        if extra and schema.get("additionalProperties") is False:
            return f"{where}: field {extra[0]!r} is not allowed"
        inner = [(f"{where}.{k}", v, properties[k]) for k, v in value.items() if k in properties]
        return next((p for w, v, s in inner if (p := schema_problem(v, s, w))), None)
    if isinstance(value, list) and "items" in schema:
        return next((p for i, v in enumerate(value) if (p := schema_problem(v, schema["items"], f"{where}[{i}]"))),
                    None)
    return None


def _equal_json(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


# ---- scoring one answer

def parse_answer(text: str) -> tuple[bool, Any]:
    """(parsed, value): the answer as one JSON value, allowing whitespace and one ``` fence around it."""
    stripped = text.strip()
    fenced = FENCE_RE.match(stripped)
    try:
        return True, json.loads(fenced.group(1) if fenced else stripped)
    except (json.JSONDecodeError, ValueError):
        return False, None


def same_field(expected: Any, got: Any) -> bool:
    """A field holds the expected value: strings ignoring case and whitespace runs, numbers by value."""
    if isinstance(expected, str):
        return isinstance(got, str) and _words(got) == _words(expected)
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        return (isinstance(got, (int, float)) and not isinstance(got, bool) and math.isfinite(got)
                and math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-9))
    return _equal_json(expected, got) and type(expected) is type(got)


def _words(text: str) -> str:
    return " ".join(text.split()).casefold()


def score_answer(text: str, schema: dict, expected: dict[str, Any]) -> dict[str, Any]:
    """Whether the answer parses and validates, why not, and which expected fields it got right."""
    parsed, value = parse_answer(text)
    problem = "not one JSON value" if not parsed else schema_problem(value, schema)
    got = value if isinstance(value, dict) else {}
    fields = {k: int(k in got and same_field(v, got[k])) for k, v in expected.items()}
    return {"parsed": parsed, "valid": parsed and problem is None, "problem": problem, "fields": fields}


# ---- the items file

class Item:
    """One extraction item: the text, its schema and the fields expected from it."""

    def __init__(self, id: str, text: str, schema: dict, expected: dict[str, Any]):
        self.id, self.text, self.schema, self.expected = id, text, schema, expected

    def prompt(self) -> str:
        """The same words for both requests; the constrained one adds the schema as a grammar."""
        return (f"Read the text below and answer with one JSON object holding the fields this JSON schema "
                f"describes (the object, not the schema):\n{json.dumps(self.schema)}\n\nText:\n{self.text}")

    def response_format(self) -> dict[str, Any]:
        return {"type": "json_schema", "json_schema": {"name": re.sub(r"[^A-Za-z0-9_-]", "_", self.id),
                                                       "schema": self.schema, "strict": True}}


def items_path(settings, root: Path) -> Path:
    path = project_path(root, settings.items)
    if not path.is_file():
        raise UserError(f"profiles.structured.items: no such items file: {path}")
    return path


def load_items(path: Path) -> list[Item]:
    """Read and check the items file; any problem is one line naming the file, the item and the key."""
    items: list[Item] = []
    for n, entry in enumerate(item_list(path), 1):
        name = entry.get("id") if isinstance(entry, dict) and isinstance(entry.get("id"), str) else f"#{n}"
        fault = _item_fault(entry, {i.id for i in items})
        if fault:
            raise UserError(f"{path}: item {name}: {fault}")
        items.append(Item(entry["id"], entry["text"], entry["schema"], entry["expected"]))
    return items


def _item_fault(entry: Any, seen: set[str]) -> str | None:
    if not isinstance(entry, dict):
        return 'must be an object with "id", "text", "schema" and "expected"'
    keys = {"id", "text", "schema", "expected"}
    if set(entry) != keys:
        extra, missing = sorted(set(entry) - keys), sorted(keys - set(entry))
        return f"unknown key {extra[0]!r}" if extra else f"missing key {missing[0]!r}"
    if not isinstance(entry["id"], str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", entry["id"]):
        return "id: must be letters, digits and ._- (starting with a letter or digit)"
    if entry["id"] in seen:
        return "id is used twice"
    if not isinstance(entry["text"], str) or not entry["text"].strip():
        return "text: must be a non-empty string"
    if (fault := schema_fault(entry["schema"])) is not None:
        return fault
    if entry["schema"].get("type") != "object" or not entry["schema"].get("properties"):
        return 'schema: must be {"type": "object"} with "properties" (the fields to extract)'
    expected = entry["expected"]
    if not isinstance(expected, dict) or not expected:
        return "expected: must be a non-empty object of field: value"
    unknown = [k for k in expected if k not in entry["schema"]["properties"]]
    if unknown:
        return f"expected.{unknown[0]}: not a property of the schema"
    problem = schema_problem(expected, {**entry["schema"], "required": []})
    return f"expected does not fit the schema: {problem}" if problem else None


# ---- the profile

class StructuredProfile(Strict):
    """Structured output: JSON-schema-constrained answers, scored, and what the constraint costs in speed."""

    items: str = Field("prompts/structured.json",
                       description="extraction items: text, JSON schema, expected fields (format: "
                                   "llmspec/profiles/structured.py)")
    max_tokens: int = Field(192, ge=16, description="longest answer, in tokens (a cut-off answer does not parse)")
    seed: int = 42


class StructuredThresholds(Strict):
    min_json_valid_pct: float = Field(95.0, ge=0, le=100,
                                      description="constrained answers that parse and fit the schema, percent, "
                                                  "at least")
    min_fields_correct_pct: float = Field(80.0, ge=0, le=100,
                                          description="expected fields extracted right, percent, at least")
    max_constraint_cost_pct: float = Field(25.0, gt=0,
                                           description="decode speed lost to the schema constraint, percent, at most")


def _files(settings, root: Path) -> tuple[str, list[Path]]:
    path = items_path(settings, root)
    load_items(path)  # a broken items file fails at planning time, not halfway through a run
    return "prompt_files", [path]


def run(ctx: ProfileContext) -> Outcome:
    s = ctx.settings
    items = load_items(items_path(s, ctx.root))
    params = {"temperature": 0.0, "seed": s.seed}
    ctx.warm_up(items[0].prompt(), 8, "unconstrained", system=SYSTEM, **params)
    ctx.warm_up(items[0].prompt(), 8, "constrained", system=SYSTEM, response_format=items[0].response_format(),
                **params)
    samples, records = [], {mode: [] for mode in MODES}
    for i, item in enumerate(items):
        for mode in (MODES if i % 2 == 0 else MODES[::-1]):
            ctx.progress(f"item {i + 1}/{len(items)} ({item.id}, {mode})")
            extra = {"response_format": item.response_format()} if mode == "constrained" else {}
            record = ctx.client.chat(item.prompt(), prompt_name=f"{item.id} {mode}", max_tokens=s.max_tokens,
                                     system=SYSTEM, **params, **extra)
            if record.error:
                raise CellError(f"item {item.id} ({mode}) failed: {record.error}")
            require_cache_miss(record)
            records[mode].append(record)
            samples.append({**record.as_sample(), "id": item.id, "mode": mode, "answer": record.content,
                            "expected": item.expected, **score_answer(record.content, item.schema, item.expected)})
    return outcome(samples, records, s.max_tokens)


def outcome(samples: list[dict], records: dict[str, list], max_tokens: int) -> Outcome:
    """The figures from the scored samples (in item order) and the requests of each mode."""
    metrics: dict[str, float | None] = {}
    intervals: dict[str, Interval] = {}
    for mode in MODES:
        suffix = "" if mode == "constrained" else "_unconstrained"
        scored = [x for x in samples if x["mode"] == mode]
        fields = [v for x in scored for v in x["fields"].values()]
        for name, hits in ((f"json_valid_pct{suffix}", [int(x["valid"]) for x in scored]),
                           (f"fields_correct_pct{suffix}", fields)):
            metrics[name] = 100 * sum(hits) / len(hits) if hits else None
            if (found := wilson_interval(sum(hits), len(hits))) is not None:
                intervals[name] = found
        for name, values in ((f"tokens_per_s_{mode}", [r.decode_tokens_per_s() for r in records[mode]]),
                             (f"server_tokens_per_s_{mode}",
                              [(r.timings or {}).get("predicted_per_second") for r in records[mode]])):
            metrics[name] = median(values)
            if (found := median_interval(values)) is not None:
                intervals[name] = found
    costs = _paired_costs(records)
    metrics["constraint_cost_pct"] = median(costs)
    if (found := median_interval(costs)) is not None:
        intervals["constraint_cost_pct"] = found
    constrained = [x for x in samples if x["mode"] == "constrained"]
    metrics["items"] = len(constrained)
    metrics["fields"] = sum(len(x["fields"]) for x in constrained)
    thinking, reasoned = reasoning_figures(records["constrained"] + records["unconstrained"], intervals,
                                           ttft="ttft_answer_s")
    metrics.update(thinking)
    return Outcome(metrics, samples, _flags(samples, records, metrics, max_tokens) + reasoned, intervals,
                   {x["id"]: int(x["valid"] and all(x["fields"].values())) for x in constrained})


def _paired_costs(records: dict[str, list]) -> list[float]:
    """Per item, how much slower its constrained answer decoded than its unconstrained one, percent."""
    costs = []
    for c, u in zip(records["constrained"], records["unconstrained"]):
        slow, fast = c.decode_tokens_per_s(), u.decode_tokens_per_s()
        if slow and fast:
            costs.append(100 * (1 - slow / fast))
    return costs


def _flags(samples: list[dict], records: dict[str, list], metrics: dict, max_tokens: int) -> list[str]:
    _, flags = clock_check(metrics["tokens_per_s_constrained"], metrics["server_tokens_per_s_constrained"],
                           "constrained decode speed")
    if metrics["server_tokens_per_s_constrained"] is None:
        flags.append("the server reported no decode timings of its own: server_tokens_per_s_constrained and "
                     "_unconstrained are missing (the client's clock still measured both)")
    cut = [f"{x['id']} ({x['mode']})" for x in samples if x["finish_reason"] == "length"]
    if cut:
        flags.append(f"{len(cut)} of {len(samples)} answers hit max_tokens={max_tokens} before finishing "
                     f"({', '.join(cut[:5])}{', ...' if len(cut) > 5 else ''}); a cut-off answer does not parse")
    bad = [f"{x['id']}: {x['problem']}" for x in samples if x["mode"] == "constrained" and not x["valid"]]
    if bad:
        flags.append(f"{len(bad)} of {metrics['items']} constrained answers do not fit their schema "
                     f"({'; '.join(bad[:3])}{'; ...' if len(bad) > 3 else ''}): the engine may ignore "
                     f"response_format, or the answers were cut off")
    if len(_paired_costs(records)) < metrics["items"]:
        flags.append("some answers were too short (under 2 tokens) to time their decoding: constraint_cost_pct "
                     "rests on fewer items")
    return flags


KIND = ProfileKind(
    name="structured",
    summary="answers constrained to a JSON schema: share that parse and validate, fields right, speed cost",
    version=1,
    settings=StructuredProfile,
    thresholds=StructuredThresholds,
    run=run,
    files=_files,
    metrics=("json_valid_pct", "fields_correct_pct", "json_valid_pct_unconstrained", "fields_correct_pct_unconstrained",
             "tokens_per_s_constrained", "tokens_per_s_unconstrained", "server_tokens_per_s_constrained",
             "server_tokens_per_s_unconstrained", "constraint_cost_pct", "items", "fields",
             *REASONING_METRICS),  # the last only where the model reasons
    rules=(
        Rule("json_valid_pct", "min_json_valid_pct", "min", critical=True, ceiling=100.0),
        Rule("fields_correct_pct", "min_fields_correct_pct", "min", critical=False, ceiling=100.0),
        Rule("constraint_cost_pct", "max_constraint_cost_pct", "max", critical=False),
    ),
    paired=True,
    headlines={"json_valid_pct": "json_valid_pct", "fields_correct_pct": "fields_correct_pct",
               "constraint_cost_pct": "constraint_cost_pct"},
    case=Case("Structured output (JSON)", "structured output", ("json_valid_pct", "fields_correct_pct"),
              (("fields_correct_pct", True), ("json_valid_pct", True))),
    figures={"json_valid_pct": Figure("{}%", "valid JSON", "valid JSON"),
             "fields_correct_pct": Figure("{}%", "fields right", "fields right"),
             "constraint_cost_pct": Figure("{}%", "speed cost of the schema", "schema cost")},
    performance=False,  # how well a model fills a schema says nothing about how well this machine runs it
    uses=("agent",),
    init_settings=("max_tokens",),
    engine_needs=frozenset({JSON_SCHEMA}),
)
