"""The editor's JSON Schema and the loader refuse the same bad values (issue #28).

Every rule the schema declares (type, enum, minimum, exclusiveMinimum, maximum, pattern, minItems,
required, additionalProperties) is turned into a value that breaks it, at every key of a spec that
switches on every profile, has a model, an endpoint and a server sweep. Each such spec must be marked
by the schema (`problems`, the hand-written checker of tests/test_schema.py: jsonschema is not a
dependency) and refused by `llmspec check`'s loader with one line naming the key. Rules no schema can
state (a derive loop, two quants on one file) are tests/test_spec_checks.py's.
"""

from __future__ import annotations

import copy
import re
import tomllib

import pytest
import tomli_w
from conftest import SMOL_MODEL
from test_schema import committed_schema, problems, resolve

from llmspec.errors import UserError
from llmspec.profiles import KINDS
from llmspec.spec import spec_from_text

BASE = tomllib.loads(SMOL_MODEL + '[[endpoints]]\nname = "office"\nurl = "http://10.0.0.5:8000"\n')
BASE["profiles"] = {kind.name: {} for kind in KINDS}
BASE["thresholds"] = {kind.name: {} for kind in KINDS}
BASE.update(server={"sweep": {"batch_size": [512]}}, limits={}, planner={})
# pydantic's lax mode took "3" for 3, true for 1 and "yes" for true, where the schema (and the editor) refuse them
WRONG_TYPE = {"string": [12345], "integer": [1.5, "3", True], "number": ["fast", "3.5", True], "boolean": ["yes", 1],
              "array": ["x"], "object": ["x"]}
PATTERN_BREAKERS = ("", "-x", "x y", "x/y")


def broken_values(schema: dict, root: dict) -> list[tuple[str, object]]:
    """(rule, a value that breaks it) for each rule `schema` states about one key's value."""
    schema = resolve(schema, root)
    if "anyOf" in schema:
        return [found for option in schema["anyOf"] for found in broken_values(option, root)]
    found = []
    if "type" in schema and schema["type"] != "null":
        found += [(f"type {schema['type']}", wrong) for wrong in WRONG_TYPE[schema["type"]]]
    if "enum" in schema:
        found.append(("enum", "not-one-of-them"))
    for rule, shift in (("minimum", -1), ("exclusiveMinimum", 0), ("maximum", 1)):
        if rule in schema:
            found.append((rule, schema[rule] + shift))
    if "pattern" in schema:
        found += [("pattern", text) for text in PATTERN_BREAKERS if not re.search(schema["pattern"], text)][:1]
    if schema.get("minItems"):
        found.append(("minItems", []))
    if schema.get("type") == "array" and "items" in schema:
        found += [(f"items {rule}", [value]) for rule, value in broken_values(schema["items"], root)]
    return found


def options(schema: dict, root: dict) -> list[dict]:
    """The alternatives of a key's schema, resolved (`X | None` is anyOf [X, null])."""
    schema = resolve(schema, root)
    return [resolve(s, root) for s in schema.get("anyOf", [schema])]


def table_of(schema: dict, root: dict) -> dict | None:
    """The schema of the table a key holds, or None when it holds no table with known keys."""
    return next((s for s in options(schema, root) if "properties" in s), None)


def cases(raw: dict, table: dict, root: dict, where: tuple = ()) -> list[tuple[tuple, str, object]]:
    """(key path, rule, spec that breaks it) for every key of every table present in `raw`."""
    found = []
    if table.get("additionalProperties") is False:
        found.append((where + ("zz_unknown",), "additionalProperties", replaced(raw, where + ("zz_unknown",), 1)))
    for key in table.get("required", []):
        if where:  # the top level's `name` comes from the file name
            found.append((where + (key,), "required", replaced(raw, where + (key,), DROP)))
    for key, sub in table["properties"].items():
        value, inner = dig(raw, where + (key,)), table_of(sub, root)
        if isinstance(value, dict) and inner is not None:
            found += cases(raw, inner, root, where + (key,))
            continue
        found += [(where + (key,), rule, replaced(raw, where + (key,), bad)) for rule, bad in broken_values(sub, root)
                  if problems(bad, sub, root)]  # 12345 breaks `type string` but not `integer | "auto"`
        arrays = [s for s in options(sub, root) if "items" in s]
        if isinstance(value, list) and value and isinstance(value[0], dict) and arrays:
            found += cases(raw, table_of(arrays[0]["items"], root), root, where + (key, 0))
    return found


DROP = object()


def dig(raw, path: tuple):
    for part in path:
        try:
            raw = raw[part]
        except (KeyError, IndexError, TypeError):
            return None
    return raw


def replaced(raw: dict, path: tuple, value) -> dict:
    new = copy.deepcopy(raw)
    node = dig(new, path[:-1])
    if value is DROP:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return new


def shown(path: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


CASES = cases(BASE, committed_schema(), committed_schema())


def test_the_base_spec_passes_both():
    assert problems(BASE, committed_schema(), committed_schema()) == []
    spec = spec_from_text(tomli_w.dumps(BASE), "specs/t.toml")
    assert set(spec.profiles.enabled()) == {kind.name for kind in KINDS}


def test_every_kind_of_rule_is_tried():
    rules = {rule.split()[-1] for _, rule, _ in CASES}
    assert {"enum", "minimum", "exclusiveMinimum", "maximum", "pattern", "minItems", "required",
            "additionalProperties", "integer", "number", "string", "boolean", "array"} <= rules
    assert len(CASES) > 300


@pytest.mark.parametrize(("path", "rule", "raw"), CASES, ids=[f"{shown(p)}:{r}:{dig(raw, p)!r}" for p, r, raw in CASES])
def test_schema_and_loader_both_refuse(path, rule, raw):
    marked = problems(raw, committed_schema(), committed_schema())
    assert marked, f"the schema lets {shown(path)} break {rule}"
    with pytest.raises(UserError) as refused:
        spec_from_text(tomli_w.dumps(raw), "specs/t.toml")
    line = str(refused.value)
    assert "\n" not in line and line.startswith("specs/t.toml: ")
    assert shown(path).split("[")[0].split(".")[0] in line, line  # names the key's table at least
