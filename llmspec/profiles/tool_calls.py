"""Tool calls: does the model call the right function with the right arguments, in a form the engine parses?

Cases come from the Berkeley Function Calling Leaderboard (BFCL v4, the PyPI package bfcl-eval,
Apache-2.0: see llmspec/profiles/bfcl.py for the notice): `simple` (one function, one call),
`multiple` (several functions, pick one), `parallel` (several calls in one answer) and
`irrelevance` (no function fits: the right answer is no call). Each case is sent once with its
functions as OpenAI `tools` (`parallel_tool_calls` on, OpenAI's default), at temperature 0 with a
fixed seed, and the calls the engine's own tool-call parser returns (llama-server: `--jinja`,
the chat template's format) are scored by BFCL's AST rules.

Figures: `accuracy_pct` and `accuracy_pct_<category>` (BFCL's verdict), `malformed_call_pct`
(cases where a call came back in a form an agent cannot execute: written as text in the answer
instead of a tool call, arguments that are not a JSON object, or an argument of the wrong JSON
type for its declared parameter), `irrelevance_pct` (no call, not even one written as text, where
none fits; BFCL itself counts a call written as text as "no call" there, which would reward a
model that never makes a real call), and `call_latency_s`, the time until a complete call (the
end of the streamed answer that carried one). Shares carry Wilson intervals; the per-case
verdicts (`Outcome.items`) pair quants for McNemar's test. A call written as text is also scored
as if it had been parsed (`as_text_right` in the sample): a model that knows the answer but
writes it where no parser looks shows as such.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from llmspec.engines.base import TOOL_CALLS
from llmspec.errors import CellError
from llmspec.profiles import bfcl
from llmspec.profiles.base import Case, Figure, Outcome, ProfileContext, ProfileKind, Rule, median, require_cache_miss
from llmspec.stats import Interval, median_interval, wilson_interval
from llmspec.strict import Strict

Category = Literal["simple", "multiple", "parallel", "irrelevance"]


class ToolCallsProfile(Strict):
    """Tool calls (BFCL v4 cases as OpenAI tools): right call, right arguments, parsed by the engine."""

    categories: list[Category] = Field(list(bfcl.CATEGORIES), min_length=1, description="BFCL categories to ask")
    cases: int = Field(8, ge=1, description="cases per category, spread evenly over the category's file "
                                            "(simple 400, multiple 200, parallel 200, irrelevance 240)")
    max_tokens: int = Field(256, ge=32, description="longest answer, in tokens (a cut-off call is malformed)")
    temperature: float = Field(0.0, ge=0)
    seed: int = 42

    @model_validator(mode="after")
    def _distinct(self) -> ToolCallsProfile:
        if len(set(self.categories)) != len(self.categories):
            raise PydanticCustomError("dup", "categories lists a category twice")
        return self


class ToolCallsThresholds(Strict):
    min_accuracy_pct: float = Field(70.0, ge=0, le=100, description="cases answered right (BFCL's rules), at least")
    max_malformed_call_pct: float = Field(1.0, ge=0, le=100,
                                          description="cases with a call an agent cannot execute, percent, at most")
    min_irrelevance_pct: float = Field(70.0, ge=0, le=100,
                                       description="cases with no fitting function left uncalled, percent, at least")


def _files(settings, root: Path) -> tuple[str, list[Path]]:
    return "data_files", bfcl.data_files(settings.categories)


def run(ctx: ProfileContext) -> Outcome:
    s = ctx.settings
    cases = [case for category in s.categories for case in bfcl.load_cases(category, s.cases)]
    params = {"temperature": s.temperature, "seed": s.seed}
    ctx.warm_up("Say OK.", 4, **params)
    samples, records = [], []
    for i, case in enumerate(cases, 1):
        ctx.progress(f"case {i}/{len(cases)} ({case.id})")
        record = ctx.client.chat("", prompt_name=case.id, max_tokens=s.max_tokens, messages=case.messages,
                                 tools=bfcl.openai_tools(case.functions), parallel_tool_calls=True, **params)
        if record.error:
            raise CellError(f"case {case.id} failed: {record.error}")
        require_cache_miss(record)
        records.append(record)
        samples.append({**record.as_sample(), **score(case, record.tool_calls, record.content, record.finish_reason)})
    return outcome(samples, s.categories, endpoint=ctx.server is None)


def score(case: bfcl.BfclCase, tool_calls: list[dict], content: str, finish_reason: str | None = None) -> dict:
    """One case's verdict from the calls the engine parsed and the answer text: what a sample keeps."""
    calls, malformed = parse_calls(case, tool_calls)
    as_text = text_calls(content, case.functions) if not tool_calls else []
    if as_text and malformed is None:
        malformed = "call written as text in the answer, not as a tool call"
    if malformed is None and finish_reason == "length" and tool_calls:
        malformed = "answer cut off at max_tokens inside a call"
    right, why = bfcl.check(case, calls) if calls is not None else (False, malformed)
    if case.category == "irrelevance" and as_text:
        right, why = False, "a function was called (written as text) where none fits"
    found = {"case": case.id, "category": case.category, "expected": case.answers,
             "calls": calls if calls is not None else [{c["name"]: c["arguments"]} for c in tool_calls],
             "right": int(right), "verdict": "right" if right else "wrong", "why": why or None,
             "malformed": malformed}
    if as_text:
        found["as_text"] = as_text
        found["as_text_right"] = int(bfcl.check(case, as_text)[0]) if case.category != "irrelevance" else 0
    return found


def parse_calls(case: bfcl.BfclCase, tool_calls: list[dict]) -> tuple[list[dict] | None, str | None]:
    """The engine's tool calls as BFCL's [{name: arguments}], or None and why one is malformed
    (arguments that are not a JSON object, or of the wrong JSON type for the declared parameter)."""
    calls, problems = [], []
    for call in tool_calls:
        name, text = call.get("name") or "", call.get("arguments") or "{}"
        try:
            arguments = json.loads(text)
        except json.JSONDecodeError:
            return None, f"{name}: arguments are not valid JSON: {text[:80]!r}"
        if not isinstance(arguments, dict):
            return None, f"{name}: arguments are not a JSON object: {text[:80]!r}"
        doc = bfcl.find_function(case.functions, name)
        if doc is not None and (why := bfcl.type_problem(doc, arguments)):
            problems.append(f"{name}: {why}")
        calls.append({name: arguments})
    return calls, problems[0] if problems else None


CALL_KEYS = ("arguments", "parameters")


def text_calls(content: str, functions: list[dict]) -> list[dict]:
    """Calls written into the answer text instead of as tool calls: JSON objects shaped like a call
    ({"name": ..., "arguments": {...}}, alone, in a list or in ``` fences), or `name(...)` of one of
    the offered functions. Returned as BFCL's [{name: arguments}] ({} where not JSON)."""
    found, decoder, end = [], json.JSONDecoder(), 0
    for m in re.finditer(r"[\[{]", content):
        if m.start() < end:
            continue
        try:
            value, end = decoder.raw_decode(content, m.start())
        except json.JSONDecodeError:
            continue
        found += [call for item in (value if isinstance(value, list) else [value]) if (call := _call_shape(item))]
    if not found:
        names = {f["name"] for f in functions} | {bfcl.tool_name(f["name"]) for f in functions}
        found = [{bfcl.tool_name(name): {}} for name in sorted(names)
                 if re.search(rf"(?<![\w.]){re.escape(name)}\s*\(", content)]
    return found


def _call_shape(item: Any) -> dict | None:
    if isinstance(item, dict) and isinstance(item.get("function"), dict):
        item = item["function"]  # {"type": "function", "function": {...}}
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        return None
    arguments = next((item[k] for k in CALL_KEYS if k in item), None)
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    return {item["name"]: arguments} if isinstance(arguments, dict) else None


def outcome(samples: list[dict], categories: list[str], endpoint: bool = False) -> Outcome:
    """Metrics, Wilson intervals and per-case verdicts from scored samples."""
    n = len(samples)
    metrics: dict[str, float | None] = {"cases": n}
    intervals: dict[str, Interval] = {}

    def share(name: str, hits: int, total: int) -> None:
        metrics[name] = 100 * hits / total if total else None
        if total:
            intervals[name] = wilson_interval(hits, total)

    share("accuracy_pct", sum(x["right"] for x in samples), n)
    for category in bfcl.CATEGORIES:
        group = [x for x in samples if x["category"] == category]
        share(f"accuracy_pct_{category}", sum(x["right"] for x in group), len(group))
    share("malformed_call_pct", sum(1 for x in samples if x["malformed"]), n)
    irrelevant = [x for x in samples if x["category"] == "irrelevance"]
    share("irrelevance_pct", sum(x["right"] for x in irrelevant), len(irrelevant))
    latencies = [x["total_s"] for x in samples if x.get("tool_calls")]
    metrics["call_latency_s"] = median(latencies)
    if (found := median_interval(latencies)) is not None:
        intervals["call_latency_s"] = found
    return Outcome(metrics, samples, _flags(samples, categories, latencies, endpoint), intervals,
                   {x["case"]: int(x["right"]) for x in samples})


def _flags(samples: list[dict], categories: list[str], latencies: list[float], endpoint: bool) -> list[str]:
    flags = []
    written = [x for x in samples if x.get("as_text")]
    if written:
        scored = [x for x in written if x["category"] != "irrelevance"]
        flags.append(f"{len(written)} of {len(samples)} answers wrote the call as text instead of a tool call "
                     f"(the engine's tool-call parser did not recognise it); read as calls, "
                     f"{sum(x['as_text_right'] for x in scored)} of {len(scored)} would have been right")
        if endpoint:
            flags.append("an endpoint parses tool calls its own way: llama-server does only when started "
                         "with --jinja")
    if not latencies:
        flags.append("no answer carried a tool call: call_latency_s is missing")
    missing = [c for c in bfcl.CATEGORIES if c not in categories]
    if missing:
        flags.append(f"categories not asked: {', '.join(missing)}; their accuracy is missing")
    return flags


KIND = ProfileKind(
    name="tool_calls",
    summary="function calling (BFCL v4: simple, multiple, parallel, irrelevance) through the engine's tool-call parser",
    version=1,
    settings=ToolCallsProfile,
    thresholds=ToolCallsThresholds,
    run=run,
    files=_files,
    metrics=("accuracy_pct", "accuracy_pct_simple", "accuracy_pct_multiple", "accuracy_pct_parallel",
             "accuracy_pct_irrelevance", "malformed_call_pct", "irrelevance_pct", "call_latency_s", "cases"),
    rules=(
        Rule("accuracy_pct", "min_accuracy_pct", "min", critical=True, ceiling=100.0),
        Rule("malformed_call_pct", "max_malformed_call_pct", "max", critical=True),
        Rule("irrelevance_pct", "min_irrelevance_pct", "min", critical=False, ceiling=100.0),
    ),
    evidence=("malformed_call_pct",),  # an agent cannot execute what it writes
    paired=True,
    headlines={"accuracy_pct": "tool_accuracy_pct", "malformed_call_pct": "malformed_call_pct"},
    # The agent's use case: a quant is only as good as the worst of calling tools and writing code that
    # runs, so one that writes malformed calls (a critical rule) is never recommended for agents.
    case=Case("Coding assistant / agent", "agents", ("tool_accuracy_pct", "malformed_call_pct", "pass_at_1_pct"),
              (("tool_accuracy_pct", True), ("pass_at_1_pct", True)), joins=("coding",)),
    figures={"tool_accuracy_pct": Figure("{}%", "tool-call accuracy", "tool calls"),
             "malformed_call_pct": Figure("{}%", "malformed calls", "malformed"),
             "irrelevance_pct": Figure("{}%", "irrelevance detection", "irrelevance"),
             "call_latency_s": Figure("{} s", "time to a complete call", "to a call")},
    engine_needs=frozenset({TOOL_CALLS}),
    server_features=frozenset({TOOL_CALLS}),
    performance=False,  # whether a model calls tools right says nothing about how well this machine runs it
    roles=frozenset({"categories"}),  # accuracy_pct_simple, _multiple, ...: drawn per quant
    uses=("agent",),  # llmspec init --use agent
    init_settings=("cases", "max_tokens"),
)
