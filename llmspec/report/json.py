"""results.json: everything the report knows, in the design document's shape ("JSON Output").

This is the machine-readable report: other tools read ratings and their per-metric checks from
here instead of re-implementing the thresholds. Keys are sorted so two reports diff cleanly.
"""

from __future__ import annotations

import json
import math
from typing import Any

import polars as pl

from llmspec.report.frame import hosts, metric_columns, rating_of
from llmspec.spec import Spec


def generate_json(frame: pl.DataFrame, spec: Spec, generated_at: str) -> str:
    """JSON text of a frame prepared by `frame.for_spec`."""
    document = {"metadata": _metadata(frame, spec, generated_at), "results": _results(frame, spec)}
    return json.dumps(_finite(document), sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def _metadata(frame: pl.DataFrame, spec: Spec, generated_at: str) -> dict[str, Any]:
    return {
        "generated_at": generated_at,
        "spec": spec.name,
        "description": spec.description,
        "hosts": hosts(frame),
        "thresholds": spec.thresholds.model_dump(),
        "duration_s": round(frame["duration_s"].sum() or 0.0, 3),
        "result_count": frame.height,
    }


def _results(frame: pl.DataFrame, spec: Spec) -> list[dict[str, Any]]:
    """One entry per (host, model, quant) in run order, its profiles nested by name."""
    metrics = metric_columns(frame)
    entries: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in frame.iter_rows(named=True):
        key = (row["host"], row["model"], row["quant"])
        entry = entries.setdefault(key, _entry(row))
        if row["model_size_bytes"] is not None:
            entry["model_size_gb"] = round(row["model_size_bytes"] / 1e9, 3)
        entry["profiles"][row["profile"]] = _profile(row, metrics, spec)
    return list(entries.values())


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    return {"host": row["host"], "model": row["model"], "quantization": row["quant"],
            "model_size_gb": None, "profiles": {}}


def _profile(row: dict[str, Any], metrics: list[str], spec: Spec) -> dict[str, Any]:
    rating = rating_of(row, spec)
    return {
        "status": row["status"],
        "reason": row["reason"],
        "metrics": {m: row[m] for m in metrics if row[m] is not None},
        "rating": rating.label,
        "checks": [check.as_dict() for check in rating.checks],
        "flags": row["flags"] or [],
        "started_at": row["started_at"],
        "duration_s": row["duration_s"],
        "server_version": row["server_version"],
    }


def _finite(value: Any) -> Any:
    """NaN and infinity are not JSON; a metric that came out as either is reported as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
