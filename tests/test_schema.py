"""What a spec author is told before anything runs: the editor's schema, and `llmspec check`.

`llmspec schema` writes the spec's JSON Schema (pydantic's own, with the field descriptions) to
specs/llmspec.schema.json, which the bundled specs name on their first line (`#:schema`, taplo's
directive) for completion and typo marks in the editor. The schema is checked here by hand (no
jsonschema dependency): keys, types, enums and ranges, walking `$ref`s as taplo does.

Then a catalogue of broken spec files: each must give exit 2 and exactly one line on stderr that
names the file, the key and what is wrong, never a traceback.
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import sys
import tomllib

import pytest
from conftest import REPO, SMOL_MODEL

from llmspec.cli import main
from llmspec.profiles import KINDS
from llmspec.spec import Spec

SCHEMA_FILE = REPO / "specs" / "llmspec.schema.json"
REGENERATE = "run `llmspec schema --output specs/llmspec.schema.json`"
BUNDLED_SPECS = sorted((REPO / "specs").glob("*.toml"))


def llmspec(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmspec.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


@functools.cache
def committed_schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


# --- the schema -----------------------------------------------------------------------------------

def test_committed_schema_is_what_llmspec_schema_prints():
    proc = llmspec("schema", cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert SCHEMA_FILE.read_text(encoding="utf-8") == proc.stdout, f"{SCHEMA_FILE.name} is out of date: {REGENERATE}"


def test_output_writes_what_is_printed(tmp_path, capsys):
    assert main(["schema"]) == 0
    printed = capsys.readouterr().out
    assert main(["schema", "--output", str(tmp_path / "s.json")]) == 0
    assert capsys.readouterr().out == ""
    assert (tmp_path / "s.json").read_text(encoding="utf-8") == printed
    assert main(["schema", "--output", str(tmp_path / "missing" / "s.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llmspec: ") and err.count("\n") == 1 and "cannot write the schema" in err


def test_schema_has_a_title_and_no_internal_fields():
    schema = committed_schema()
    assert schema["title"] == "llmspec spec"
    assert "$id" not in schema and "$schema" not in schema  # taplo validates as draft 7 whatever is declared
    assert "path" not in schema["properties"] and "root" not in schema["properties"]
    assert "name" not in schema.get("required", [])  # the loader takes it from the file name
    # hidden from the schema, still set by the loader
    spec = Spec.model_validate({"endpoints": [{"name": "x", "url": "http://h"}], "name": "t",
                                "path": REPO / "specs" / "t.toml", "root": REPO})
    assert spec.root == REPO and "root" not in spec.model_dump()


# Keywords that mean the same in draft 7 (what taplo applies) and 2020-12 (what pydantic writes);
# `$defs` is only a place that `#/$defs/...` JSON pointers reach.
DRAFT7_SAFE = {"$defs", "$ref", "additionalProperties", "allOf", "anyOf", "const", "default", "description", "enum",
               "exclusiveMaximum", "exclusiveMinimum", "format", "items", "maxItems", "maxLength", "maximum",
               "minItems", "minLength", "minimum", "oneOf", "pattern", "properties", "required", "title", "type"}


def keywords(schema: dict) -> set[str]:
    found = set(schema)
    for key, sub in schema.items():
        subs = (sub.values() if key in ("properties", "$defs") else sub if key in ("anyOf", "allOf", "oneOf")
                else [sub] if key in ("items", "additionalProperties") and isinstance(sub, dict) else [])
        for part in subs:
            found |= keywords(part)
    return found


def test_schema_uses_only_keywords_taplo_reads_alike():
    schema = committed_schema()
    assert keywords(schema) <= DRAFT7_SAFE, keywords(schema) - DRAFT7_SAFE
    refs = re.findall(r'"\$ref": "([^"]*)"', SCHEMA_FILE.read_text(encoding="utf-8"))
    assert refs and all(re.fullmatch(r"#/\$defs/\w+", ref) for ref in refs)


def resolve(schema: dict, root: dict) -> dict:
    while "$ref" in schema:
        schema = functools.reduce(lambda node, key: node[key], schema["$ref"].removeprefix("#/").split("/"), root)
    return schema


def prop(root: dict, *keys: str) -> dict:
    """The schema of the key at `keys` (e.g. profiles, batch, documents), as written at that key."""
    node, found = root, root
    for key in keys:
        node = resolve(node, root)
        tables = [resolve(s, root) for s in node.get("anyOf", [node])]
        node = found = next(t for t in tables if "properties" in t)["properties"][key]
    return found


def test_schema_knows_every_profile_setting_and_threshold_with_its_description():
    schema = committed_schema()
    assert prop(schema, "profiles", "batch", "documents")["description"] == "documents summarised one after another"
    for kind in KINDS:
        assert prop(schema, "profiles", kind.name)["description"] == kind.summary
        for table, model in (("profiles", kind.settings), ("thresholds", kind.thresholds)):
            for key, field in model.model_fields.items():
                written = prop(schema, table, kind.name, key)
                assert written.get("description") == field.description, f"{table}.{kind.name}.{key}"


TYPES = {"string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
         "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
         "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
         "array": lambda v: isinstance(v, list), "object": lambda v: isinstance(v, dict), "null": lambda v: v is None}


def problems(value, schema: dict, root: dict, where: str = "(top)") -> list[str]:
    """What an editor using `schema` would mark in `value` (the subset of JSON Schema pydantic writes)."""
    schema = resolve(schema, root)
    if "anyOf" in schema:
        return min((problems(value, option, root, where) for option in schema["anyOf"]), key=len)
    if "type" in schema and not TYPES[schema["type"]](value):
        return [f"{where}: {value!r} is not of type {schema['type']}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} is not one of {schema['enum']}"]
    if TYPES["number"](value):
        bounds = [("minimum", value >= schema.get("minimum", value)),
                  ("maximum", value <= schema.get("maximum", value)),
                  ("exclusiveMinimum", "exclusiveMinimum" not in schema or value > schema["exclusiveMinimum"])]
        return [f"{where}: {value!r} breaks {name}" for name, ok in bounds if not ok]
    if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
        return [f"{where}: {value!r} does not match {schema['pattern']}"]
    if isinstance(value, list):
        found = [f"{where}: fewer than {schema['minItems']} items"] if len(value) < schema.get("minItems", 0) else []
        return found + [p for i, item in enumerate(value) for p in problems(item, schema.get("items", {}), root,
                                                                             f"{where}[{i}]")]
    if isinstance(value, dict):
        found = [f"{where}.{key}: required" for key in schema.get("required", []) if key not in value]
        for key, item in value.items():
            sub = schema.get("properties", {}).get(key, schema.get("additionalProperties", True))
            if sub is False:
                found.append(f"{where}.{key}: not a key the schema knows")
            elif sub is not True:
                found += problems(item, sub, root, f"{where}.{key}")
        return found
    return []


@pytest.mark.parametrize("path", BUNDLED_SPECS, ids=lambda p: p.name)
def test_bundled_specs_name_the_schema_and_pass_it(path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith("#:schema ./llmspec.schema.json\n")
    assert (path.parent / "llmspec.schema.json").is_file()
    assert problems(tomllib.loads(text), committed_schema(), committed_schema()) == []


# --- broken specs: `llmspec check` says what is wrong in one line -------------------------------

ENDPOINT = '\n[[endpoints]]\nname = "office"\nurl = "http://10.0.0.5:8000"\n'
FOLDER = None  # a folder where the spec file should be

# (case, file name, content, what the line must say, whether the schema marks it in the editor too)
BROKEN = [
    ("not-utf8", "t.toml", b'description = "caf\xe9"\n' + SMOL_MODEL.encode(), "not UTF-8 text (byte 18)", False),
    ("byte-order-mark", "t.toml", b"\xef\xbb\xbf" + SMOL_MODEL.encode(), "byte order mark (BOM)", False),
    ("folder", "x.toml", FOLDER, "is a folder, not a spec file", False),
    ("empty", "t.toml", b"", "(top level): a spec needs at least one [[models]] or [[endpoints]] entry", False),
    ("unclosed-table", "t.toml", "[server\nctx_size = 1024\n" + SMOL_MODEL, "TOML syntax error", False),
    ("nested-too-deep", "t.toml", "description = " + "[" * 1000 + "]" * 1000 + "\n" + SMOL_MODEL,
     re.compile("nested too deeply|TOML syntax error"), False),
    ("bad-file-name", "my spec.toml", SMOL_MODEL, "the file name 'my spec' is not a valid spec name", False),
    ("unknown-top-level-key", "t.toml", 'colour = "red"\n' + SMOL_MODEL,
     "colour: unknown key (allowed here: name, description, model_dir,", True),
    ("internal-key", "t.toml", 'root = "/data"\n' + SMOL_MODEL, "root: unknown key (allowed here: name,", True),
    ("key-with-newline", "t.toml", '"ctx\\nsize" = 1\n' + SMOL_MODEL, '"ctx\\nsize": unknown key', True),
    ("unknown-batch-key", "t.toml", SMOL_MODEL + "[profiles.batch]\ndocument = 3\n",
     "profiles.batch.document: unknown key (allowed here: documents, max_tokens, prompts)", True),
    ("wrong-type", "t.toml", SMOL_MODEL + '[server]\nctx_size = "big"\n',
     "server.ctx_size: 'big': Input should be a valid integer", True),
    ("negative", "t.toml", SMOL_MODEL + "[profiles.batch]\ndocuments = -1\n",
     "profiles.batch.documents: -1: Input should be greater than or equal to 3", True),
    ("zero", "t.toml", SMOL_MODEL + "[limits]\nmax_memory_gb = 0\n",
     "limits.max_memory_gb: 0: Input should be greater than 0", True),
    ("percent-over-100", "t.toml", SMOL_MODEL + "[thresholds.quality]\nmin_math_pct = 150\n",
     "thresholds.quality.min_math_pct: 150: Input should be less than or equal to 100", True),
    ("profiles-not-a-table", "t.toml", 'profiles = ["batch"]\n' + SMOL_MODEL,
     "profiles: ['batch']: should be a table ([profiles] or", True),
    ("models-as-a-table", "t.toml", '[models]\nname = "x"\nquants = ["Q4_1"]\n',
     "models: is a table; write [[models]]", True),
    ("endpoint-with-stress", "t.toml", ENDPOINT + 'profiles = ["load", "stress"]\n',
     "endpoints[0].profiles[1]: 'stress': Input should be 'interactive', 'batch', 'quality', 'load', "
     "'structured', 'session', 'tool_calls' or 'coding' (stress needs a llama-server llmspec starts itself", True),
    ("unknown-quant-in-order", "t.toml", 'quant_order = ["Q4_K_M", "Q4_K_X"]\n' + SMOL_MODEL,
     "quant_order[1]: 'Q4_K_X' is not a known quantization (known: ", False),
    ("derive-from-nothing", "t.toml",
     SMOL_MODEL.replace('["Q4_1"]', '["Q4_1", "Q8_0"]') + 'derive = { Q8_0 = "Q6_K" }\n',
     "models[0]: quant Q6_K has no file and no derive entry (add files.Q6_K or derive.Q6_K)", False),
    ("model-and-endpoint-share-a-name", "t.toml", SMOL_MODEL + ENDPOINT.replace("office", "SmolLM2-135M-Instruct"),
     "endpoints[0].name: model name SmolLM2-135M-Instruct is used twice (first at models[0].name)", False),
]


@pytest.mark.parametrize("file_name, content, expected", [case[1:4] for case in BROKEN], ids=[c[0] for c in BROKEN])
def test_check_explains_a_broken_spec_in_one_line(project, file_name, content, expected):
    path = project.root / "specs" / file_name
    if content is FOLDER:
        path.mkdir()
    else:
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    proc = llmspec("check", f"specs/{file_name}", cwd=project.root)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert proc.stderr.endswith("\n") and len(proc.stderr.splitlines()) == 1, proc.stderr
    line = proc.stderr.rstrip("\n")
    assert line.startswith(f"llmspec: specs/{file_name}: "), line
    assert expected.search(line) if isinstance(expected, re.Pattern) else expected in line, line


@pytest.mark.parametrize("text", [case[2] for case in BROKEN if case[4]], ids=[c[0] for c in BROKEN if c[4]])
def test_the_schema_marks_in_the_editor_what_check_rejects(text):
    assert problems(tomllib.loads(text), committed_schema(), committed_schema())
