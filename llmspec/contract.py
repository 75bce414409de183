"""The published contract: JSON Schemas of the files other people's tools read.

Result files travel beyond this machine (`llmspec publish`, `llmspec pull`, a fleet report), so
their shape is a promise, written down as JSON Schema and generated from the types the code
writes (`results.Result`, and below the loadtest document's), never by hand: a field added to
the type is in the schema on the next `llmspec schema --results`. Each file names its format in
`schema_version`; a file without it is version 1 (the key came later, nothing else changed).
A reader refuses a version newer than it knows, with what to do, instead of misreading it.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter
from typing_extensions import TypedDict

from llmspec.errors import UserError
from llmspec.results import SCHEMA_VERSION, Result

# What each top-level key of a result file means (the dataclass's docstring, per key).
RESULT_FIELDS = {
    "schema_version": "the file format's version; absent in files written before it existed, which are version 1",
    "cell": "what was measured: {spec, model, quant, profile}; quant carries '+<variant>' for a variant",
    "status": "ok, skipped (with the reason) or error (with the reason)",
    "reason": "a sentence a user understands, for skipped and error",
    "metrics": "flat figures, units in the name (ttft_s, tokens_per_s, peak_rss_gb, ...)",
    "samples": "the raw per-request records the metrics came from, including the server's own timings",
    "flags": "what a reader should distrust about this result",
    "fingerprint": "hash of fingerprint_inputs: the cell is up to date while it matches",
    "fingerprint_inputs": "everything that changes the measurement (profile settings, model file, server, host)",
    "started_at": "UTC start, ISO 8601",
    "duration_s": "wall time of the cell",
    "host": "the machine: id, cpu, cores, ram_gb, arch, os, gpu",
    "server": "the inference server: binary, version, args (and engine for an engine variant)",
    "model_file": "the model file's identity (name, size, sha256), quant, source and GGUF metadata",
    "skip_evidence": "what a skip rests on; the skip is re-decided when it changes",
    "server_log_tail": "the server's last log lines after an error",
    "background": "other processes that used the machine while the cell measured",
    "intervals": "95 % intervals of the figures summarised from repeated samples: {metric: {n, low, high, method}}",
    "items": "per scored item, 1 right or 0 wrong",
}


class LoadtestMeta(TypedDict, total=False):
    start_date: str
    start_time: str
    end_date: str
    end_time: str
    server: str
    model: str
    concurrent: int
    questions: int
    timeout: float
    total_duration_ms: float
    arrival: dict[str, Any]


class LoadtestAnswer(TypedDict, total=False):
    question: str
    answer: str | None
    time: float | None  # ms
    token: int | None
    quality: float | None
    ttft: float | None  # ms
    error: str | None


class LoadtestLevel(TypedDict, total=False):
    concurrent: int
    aggregate: dict[str, float | int | None]
    figures: dict[str, float | int | None]
    meets_service_level: bool | None
    results: list[LoadtestAnswer]  # this level's requests: time, ttft, token, error (no texts)


class Loadtest(TypedDict, total=False):
    """`llmspec loadtest`'s results/NAME.json: the stress-test plan's meta / results / aggregate of
    the last level, `levels` and `capacity` when several levels ran."""

    schema_version: int
    meta: LoadtestMeta
    results: list[LoadtestAnswer]
    aggregate: dict[str, float | int | None]
    levels: list[LoadtestLevel]
    capacity: dict[str, Any]


def result_schema() -> dict:
    schema = TypeAdapter(Result).json_schema()
    for key, text in RESULT_FIELDS.items():
        schema["properties"][key]["description"] = text
    schema["required"] = [k for k in schema.get("required", []) if k != "schema_version"] + []
    return {"title": "llmspec result file", "description": "build/results/<host>/<spec>/<model>/<quant>/<profile>.json",
            **{k: v for k, v in schema.items() if k not in ("title", "description")}}


def loadtest_schema() -> dict:
    schema = TypeAdapter(Loadtest).json_schema()
    schema["properties"]["schema_version"]["description"] = RESULT_FIELDS["schema_version"]
    return {**schema, "title": "llmspec loadtest output", "description": "results/NAME.json of `llmspec loadtest`"}


def schemas() -> dict:
    """What `llmspec schema --results` prints: both schemas, and the version files carry now."""
    return {"schema_version": SCHEMA_VERSION, "result": result_schema(), "loadtest": loadtest_schema()}


def version_of(data: dict, where: str) -> int:
    """The file's format version; one newer than this llmspec knows is a user error, not a guess."""
    version = data.get("schema_version", 1)
    if not isinstance(version, int) or version < 1:
        raise UserError(f"{where}: schema_version {version!r} is not a version (a whole number from 1)")
    if version > SCHEMA_VERSION:
        raise UserError(f"{where}: schema_version {version} is newer than this llmspec reads "
                        f"(up to {SCHEMA_VERSION}); upgrade llmspec to read it")
    return version
