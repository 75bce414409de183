"""The published contract: `llmspec schema --results`, and every result file in the repo and one
the pipeline writes pass it. Validation uses test_schema's checker (no jsonschema dependency)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO, SMOL_MODEL, doit
from test_schema import problems

from llmspec.contract import schemas, version_of
from llmspec.errors import UserError
from llmspec.fingerprint import digest
from llmspec.results import SCHEMA_VERSION, Result

FIXTURE_RESULTS = sorted((REPO / "tests" / "fixtures" / "results").rglob("*.json"))
FIXTURE_LOADTESTS = sorted((REPO / "tests" / "fixtures" / "loadtest").glob("*.json"))


def test_schema_results_prints_both_schemas_and_the_version():
    proc = subprocess.run([sys.executable, "-m", "llmspec.cli", "schema", "--results"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert printed["schema_version"] == SCHEMA_VERSION
    assert printed["result"]["title"] == "llmspec result file"
    assert {"cell", "status"} <= set(printed["result"]["required"])
    assert printed["result"]["properties"]["status"]["enum"] == ["ok", "skipped", "error"]
    assert "schema_version" in printed["result"]["properties"] and "levels" in printed["loadtest"]["properties"]


@pytest.mark.parametrize("path", FIXTURE_RESULTS, ids=lambda p: "/".join(p.parts[-3:]))
def test_every_fixture_result_passes_the_schema_and_reads_as_version_1(path):
    data = json.loads(path.read_text())
    schema = schemas()["result"]
    assert problems(data, schema, schema) == []
    assert "schema_version" not in data and version_of(data, str(path)) == 1
    result = Result.from_json(data)
    assert result.schema_version == 1
    # the key is added on the next write, and the fingerprint (so whether the cell is up to date) is untouched
    again = result.to_json()
    assert again["schema_version"] == SCHEMA_VERSION and digest(again["fingerprint_inputs"]) == data["fingerprint"]


@pytest.mark.parametrize("path", FIXTURE_LOADTESTS, ids=lambda p: p.name)
def test_every_fixture_loadtest_passes_the_schema(path):
    schema = schemas()["loadtest"]
    assert problems(json.loads(path.read_text()), schema, schema) == []


def test_a_result_the_pipeline_writes_carries_the_version_and_passes(project):
    project(SMOL_MODEL + "\n[limits]\nmax_memory_gb = 0.05\n")
    doit(project.root)
    paths = sorted((project.root / "build" / "results").glob("*/t/*/*/*.json"))
    assert paths
    schema = schemas()["result"]
    for path in paths:
        data = json.loads(path.read_text())
        assert data["status"] == "skipped" and data["schema_version"] == SCHEMA_VERSION
        assert problems(data, schema, schema) == []
    assert problems({**data, "status": "great"}, schema, schema)  # the schema does mark a wrong file


def test_a_newer_version_is_refused_with_what_to_do():
    with pytest.raises(UserError, match="x.json: schema_version 99 is newer than this llmspec reads .*upgrade"):
        version_of({"schema_version": 99}, "x.json")
    with pytest.raises(UserError, match="not a version"):
        version_of({"schema_version": "2"}, "x.json")
