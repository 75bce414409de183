"""The Berkeley Function Calling Leaderboard's cases and its AST checker, for the tool_calls profile.

Data: the BFCL v4 files as the PyPI package `bfcl-eval` ships them (`bfcl_eval/data/`), read from
the installed package with importlib.resources, never copied into this repository.
    Berkeley Function Calling Leaderboard (BFCL), bfcl-eval 2026.3.23, by Huanzhi Mao, Shishir
    Patil and the Sky Computing Lab, UC Berkeley (https://github.com/ShishirPatil/gorilla,
    berkeley-function-call-leaderboard). Licensed under the Apache License, Version 2.0
    (https://www.apache.org/licenses/LICENSE-2.0); the wheel names "Apache 2.0" as its license
    and ships no NOTICE file.

Checker: the package's own `bfcl_eval.eval_checker.ast_eval.ast_checker` cannot be imported
without its heavy dependencies (it imports `constants.model_config`, which imports every vendor's
SDK; the package's declared dependencies pull sentence-transformers and torch). So its rules for
Python functions are ported here, from ast_checker.py of bfcl-eval 2026.3.23 (Apache-2.0). Changes
from the original: Python only (the four categories used here are Python); function names with a
dot compared with the dot as an underscore, as BFCL does for every OpenAI-style tool API (the
tools are sent that way); results as (valid, error) pairs instead of dicts. Everything else keeps
BFCL's rules: string values compared after removing spaces and `,./-_*^` and lowering case;
"" in a possible answer marks an optional parameter; an int is accepted for a float; a value of
the possible answer's type counts as a variable; parallel calls match in any order; the number of
calls must equal the number expected.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmspec.errors import UserError

PACKAGE = "bfcl_eval"
PIN = "bfcl-eval==2026.3.23"
FILES = {"simple": "BFCL_v4_simple_python.json", "multiple": "BFCL_v4_multiple.json",
         "parallel": "BFCL_v4_parallel.json", "irrelevance": "BFCL_v4_irrelevance.json"}
CATEGORIES = tuple(FILES)

# BFCL's GORILLA_TO_OPENAPI (constants/type_mappings.py): the function docs' types as JSON Schema types
OPENAPI_TYPES = {"integer": "integer", "number": "number", "float": "number", "string": "string",
                 "boolean": "boolean", "bool": "boolean", "array": "array", "list": "array", "dict": "object",
                 "object": "object", "tuple": "array", "any": "string", "byte": "integer", "short": "integer",
                 "long": "integer", "double": "number", "char": "string", "ArrayList": "array", "Array": "array",
                 "HashMap": "object", "Hashtable": "object", "Queue": "array", "Stack": "array"}
# ast_checker.PYTHON_TYPE_MAPPING: what a Python value of each declared type is
PYTHON_TYPES = {"string": str, "integer": int, "float": float, "boolean": bool, "array": list, "tuple": list,
                "dict": dict, "any": str}
NESTED = ("array", "tuple")


@dataclass(frozen=True)
class BfclCase:
    id: str
    category: str
    messages: list[dict[str, Any]]  # the first turn of the conversation
    functions: list[dict[str, Any]]  # BFCL function docs (the checker reads their declared types)
    answers: list[dict[str, Any]]  # possible answers: [{func_name: {param: [allowed values]}}]; [] for irrelevance


def data_dir() -> Path:
    """The installed package's data folder, found without importing bfcl_eval (nothing of it runs)."""
    import importlib.util

    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"profiles.tool_calls: the Python package bfcl-eval is not installed "
                        f"(pip install --no-deps {PIN}; `make setup` does)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def data_files(categories: list[str]) -> list[Path]:
    """The question files (and possible-answer files) the categories read: fingerprinted."""
    found = []
    for category in categories:
        found.append(data_dir() / FILES[category])
        if category != "irrelevance":
            found.append(data_dir() / "possible_answer" / FILES[category])
    missing = next((p for p in found if not p.is_file()), None)
    if missing is not None:
        raise UserError(f"profiles.tool_calls: {missing} is missing from the installed bfcl-eval ({PIN} has it)")
    return found


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def load_cases(category: str, count: int) -> list[BfclCase]:
    """`count` cases of a category, spread evenly over its file (the first ones share topics), in a
    fixed order, so every run and every quant answers the same cases."""
    folder = data_dir()
    questions = _lines(folder / FILES[category])
    answers = {} if category == "irrelevance" else \
        {x["id"]: x["ground_truth"] for x in _lines(folder / "possible_answer" / FILES[category])}
    total, count = len(questions), min(count, len(questions))
    picked = [i * total // count for i in range(count)]
    return [BfclCase(q["id"], category, q["question"][0], q["function"], answers.get(q["id"], []))
            for q in (questions[i] for i in picked)]


def tool_name(name: str) -> str:
    """OpenAI-style tool names allow no dot (^[a-zA-Z0-9_-]{1,64}$): BFCL sends `math.factorial` as `math_factorial`."""
    return name.replace(".", "_")


def openai_tools(functions: list[dict]) -> list[dict]:
    """The function docs as OpenAI `tools`, converted as BFCL's own `convert_to_tool` does for OpenAI."""
    tools = []
    for doc in copy.deepcopy(functions):
        doc["name"] = tool_name(doc["name"])
        doc["parameters"]["type"] = "object"
        doc["parameters"]["properties"] = _openapi(doc["parameters"].get("properties", {}))
        tools.append({"type": "function", "function": doc})
    return tools


def _openapi(properties: dict) -> dict:
    for value in properties.values():
        declared = value.get("type")
        if declared == "float":
            value["format"] = "float"
            value["description"] = value.get("description", "") + " This is a float type value."
        value["type"] = OPENAPI_TYPES.get(declared, "string")
        if value["type"] in ("array", "object"):
            if "properties" in value:
                value["properties"] = _openapi(value["properties"])
            elif "items" in value:
                items = value["items"]
                items["type"] = OPENAPI_TYPES.get(items.get("type"), "string")
                if items["type"] == "object" and "properties" in items:
                    items["properties"] = _openapi(items["properties"])
                elif items["type"] == "array" and "items" in items:
                    items["items"]["type"] = OPENAPI_TYPES.get(items["items"].get("type"), "string")
    return properties


def find_function(functions: list[dict], name: str) -> dict | None:
    """The function doc a call names (by its tool name, dots as underscores)."""
    return next((f for f in functions if tool_name(f["name"]) == name), None)


def type_problem(doc: dict, arguments: dict) -> str | None:
    """An argument whose JSON type is not its declared type (an int for a float is fine): the
    call is malformed, whatever its values, since the tool would reject it."""
    properties = doc.get("parameters", {}).get("properties", {})
    for name, value in arguments.items():
        declared = (properties.get(name) or {}).get("type")
        wanted = PYTHON_TYPES.get(declared)
        if wanted is None or declared == "any":
            continue
        fits = type(value) is wanted or (wanted is float and type(value) is int)
        if not fits:
            return f"argument {name!r}: declared {declared}, got {type(value).__name__} {json.dumps(value)[:60]}"
    return None


# ---- the AST checker, ported (see the module doc)

def check(case: BfclCase, calls: list[dict[str, dict]]) -> tuple[bool, str]:
    """BFCL's verdict on the calls made ([{name: arguments}]) for a case: (valid, why not)."""
    if case.category == "irrelevance":
        return (not calls, "" if not calls else "a function was called where none fits")
    if len(calls) != len(case.answers):
        return False, f"wrong number of calls: {len(calls)}, expected {len(case.answers)}"
    if case.category == "parallel":
        return _parallel(case.functions, calls, case.answers)
    expected = next(iter(case.answers[0]))
    return _simple(_doc(case.functions, expected), calls[0], case.answers[0])


def _doc(functions: list[dict], name: str) -> dict:
    return next(f for f in functions if f["name"] == name)


def _parallel(functions: list[dict], calls: list[dict], answers: list[dict]) -> tuple[bool, str]:
    matched: set[int] = set()
    for answer in answers:
        doc = _doc(functions, next(iter(answer)))
        found = next((i for i, call in enumerate(calls) if i not in matched and _simple(doc, call, answer)[0]), None)
        if found is None:
            return False, f"no call matches the expected {next(iter(answer))}"
        matched.add(found)
    return True, ""


def _simple(doc: dict, call: dict, answer: dict) -> tuple[bool, str]:
    possible = next(iter(answer.values()))
    name = tool_name(doc["name"])
    if name not in call:
        return False, f"function {name!r} not called"
    params = call[name]
    details = doc["parameters"]["properties"]
    for required in doc["parameters"].get("required", []):
        if required not in params:
            return False, f"missing required parameter {required!r}"
    for param, value in params.items():
        if param not in details or param not in possible:
            return False, f"unexpected parameter {param!r}"
        ok, why = _value(param, value, details[param], possible[param])
        if not ok:
            return False, why
    for param, allowed in possible.items():
        if param not in params and "" not in allowed:
            return False, f"parameter {param!r} not given and not optional"
    return True, ""


def _value(param: str, value: Any, detail: dict, allowed: list) -> tuple[bool, str]:
    declared = detail["type"]
    wanted = PYTHON_TYPES[declared]
    nested = PYTHON_TYPES[detail["items"]["type"]] if declared in NESTED else None
    if declared == "float" and type(value) is int:
        value = float(value)
    ok, is_variable = _type_check(value, allowed, wanted, nested)
    if not ok:
        return False, f"wrong type for {param!r}: declared {declared}, got {type(value).__name__}"
    if not is_variable:
        if wanted is dict:
            return _dict_check(param, value, allowed)
        if wanted is list and nested is dict:
            return _list_dict_check(param, value, allowed)
        if wanted is str:
            ok = _standard(value) in [_standard(a) for a in allowed if type(a) is str]
            return ok, "" if ok else f"wrong value for {param!r}: {value!r}, expected one of {allowed}"
        if wanted is list:
            ok = _standard_list(value) in [_standard_list(a) if type(a) is list else [] for a in allowed]
            return ok, "" if ok else f"wrong value for {param!r}: {value!r}, expected one of {allowed}"
    ok = value in allowed
    return ok, "" if ok else f"wrong value for {param!r}: {value!r}, expected one of {allowed}"


def _answer_type(allowed: list) -> type | None:
    return next((type(a) for a in allowed if a != ""), None)


def _type_check(value: Any, allowed: list, wanted: type, nested: type | None) -> tuple[bool, bool]:
    """ast_checker.type_checker: (valid, is_variable), nested lists checked one level deep."""
    answer_type = _answer_type(allowed)
    is_variable = answer_type is not None and answer_type is not wanted
    if type(value) is wanted:
        if nested is None:
            return True, is_variable
        for candidate in allowed:  # as BFCL: a candidate that is no list ("" for optional) passes
            if type(candidate) is not list or all(_type_check(v, candidate, nested, None)[0] for v in value):
                return True, is_variable
    if answer_type is not None and type(value) is answer_type:
        return True, True
    return False, False


def _standard(text: str) -> str:
    return re.sub(r"[ ,./\-_*^]", "", text).lower().replace("'", '"')


def _standard_list(values: list) -> list:
    return [_standard(v) if type(v) is str else v for v in values]


def _dict_check(param: str, value: dict, allowed: list) -> tuple[bool, str]:
    why = f"wrong value for {param!r}: {value!r}"
    for candidate in allowed:
        if candidate == "":
            continue
        fits = all(key in candidate and (_standard(v) if type(v) is str else v) in
                   [_standard(a) if type(a) is str else a for a in candidate[key]] for key, v in value.items())
        if fits and all(key in value or "" in options for key, options in candidate.items()):
            return True, ""
    return False, why


def _list_dict_check(param: str, value: list, allowed: list) -> tuple[bool, str]:
    for candidate in allowed:
        if len(value) == len(candidate) and all(_dict_check(param, v, [c])[0] for v, c in zip(value, candidate)):
            return True, ""
    return False, f"wrong value for {param!r}: {value!r}"
