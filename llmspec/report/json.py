"""results.json: everything the report knows (README, "Reports": metadata, results, recommendations).

`metadata` (timestamp, hosts and their hardware, the spec as config, test duration), `results`
(one entry per host, model and quant: size, memory, derived scores, and each profile's status,
metrics with their 95 % intervals, rating, per-metric checks and plain-language meaning) and `recommendations`. This is
the machine-readable report: other tools read ratings and checks from here instead of
re-implementing the thresholds. Keys are sorted so two reports diff cleanly.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import polars as pl

from llmspec.rating import METRIC_TRANSLATION, interpret
from llmspec.report.frame import KEYS, hosts, metric_columns
from llmspec.results import bound_names
from llmspec.spec import Spec

TRANSLATED = frozenset(METRIC_TRANSLATION)
CHECKS_TOKEN = re.compile(r'"\\u0000checks:(\d+)\\u0000"')  # how json writes the placeholder string
PROFILE_FIELDS = ("status", "reason", "rating", "rating_checks", "flags", "started_at", "duration_s", "server_version")
DERIVED = ("efficiency_score", "cost_benefit_score", "quality_reference_quant", "quality_degradation_pts",
           "quality_loss_p", "quality_items_compared", "bandwidth_gbps", "roofline_pct", "roofline_flag")


def generate_json(frame: pl.DataFrame, configs: pl.DataFrame, recommendations: dict[str, Any], spec: Spec,
                  generated_at: str) -> str:
    """JSON text of a `frame.for_spec` frame, its `configs` table and the recommendations.

    One result entry per line: the file diffs line by line between runs, and json's C encoder
    (used only without `indent`) writes 10,000 cells in a fraction of the time indent=1 takes.
    """
    head = {"metadata": _metadata(frame, spec, generated_at), "recommendations": recommendations}
    checks: list[str] = []  # each cell's checks, already JSON text (frame.for_spec): spliced in, not re-parsed
    entries = [_splice(_dumps(entry), checks) for entry in _results(frame, configs, checks)]
    return "".join((
        "{\n",
        *(f" {_dumps(key)}: {_dumps(value)},\n" for key, value in sorted(head.items())),
        ' "results": [', ",".join(f"\n  {e}" for e in entries), "\n ]\n" if entries else "]\n", "}\n",
    ))


def _splice(text: str, checks: list[str]) -> str:
    return CHECKS_TOKEN.sub(lambda m: checks[int(m.group(1))], text)


def _dumps(value: Any) -> str:
    """Compact, sorted JSON; NaN or infinity (not JSON) are written as null."""
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), sort_keys=True, ensure_ascii=False, allow_nan=False)


def _metadata(frame: pl.DataFrame, spec: Spec, generated_at: str) -> dict[str, Any]:
    found = hosts(frame)
    return {
        "timestamp": generated_at,
        "spec": spec.name,
        "description": spec.description,
        "hostname": found[0]["id"] if len(found) == 1 else None,  # the single-host field older readers expect
        "hardware": found[0] if len(found) == 1 else None,
        "hosts": found,
        "config": spec.model_dump(mode="json"),
        "thresholds": spec.thresholds.model_dump(),
        "test_duration_seconds": round(frame["duration_s"].sum() or 0.0, 3),
        "result_count": frame.height,
    }


def _results(frame: pl.DataFrame, configs: pl.DataFrame, checks: list[str]) -> list[dict[str, Any]]:
    """One entry per (host, model, quant) in run order, its profiles nested by name."""
    entries = {tuple(row[k] for k in KEYS): _entry(row) for row in configs.iter_rows(named=True)}
    for profile in frame["profile"].unique(maintain_order=True):
        rows = frame.filter(pl.col("profile") == profile)
        metrics = metric_columns(rows)  # this profile's own metrics: 10 columns, not every profile's 70
        # (metric, low, high) of the metrics whose interval columns exist: named once per profile, not per row
        bounded = [(m, low, high) for m in metrics for low, high in [bound_names(m)]
                   if low in rows.columns and high in rows.columns]
        bounds = [b for _, low, high in bounded for b in (low, high)]
        for row in rows.select(*KEYS, *PROFILE_FIELDS, *metrics, *bounds).iter_rows(named=True):
            entries[tuple(row[k] for k in KEYS)]["profiles"][profile] = _profile(row, metrics, bounded, checks)
    return list(entries.values())


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    size = row["model_size_gb"]
    return {
        "host": row["host"], "model": row["model"], "quantization": row["quant"],
        **({"variant": row["variant"]} if row["variant"] else {}),
        "model_size_gb": round(size, 3) if size is not None else None,
        "memory_gb": row["peak_memory_gb"],
        "derived": {name: row[name] for name in DERIVED if row.get(name) is not None},
        "profiles": {},
    }


def _profile(row: dict[str, Any], metrics: list[str], bounded: list[tuple[str, str, str]],
             checks: list[str]) -> dict[str, Any]:
    values = {m: row[m] for m in metrics if row[m] is not None}
    checks.append(row["rating_checks"])
    intervals = {m: {"low": row[low], "high": row[high]} for m, low, high in bounded
                 if row[m] is not None and row[low] is not None and row[high] is not None}
    return {
        "status": row["status"],
        "reason": row["reason"],
        "metrics": values,
        "intervals": intervals,  # 95 %, from the result file's `intervals` (its `method` and `n` are there)
        "meaning": {m: text for m in TRANSLATED.intersection(values) if (text := interpret(m, values[m]))},
        "rating": row["rating"],
        "checks": f"\x00checks:{len(checks) - 1}\x00",
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
