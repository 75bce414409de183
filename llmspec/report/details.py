"""Raw samples, server log excerpts and stress time series, read back from the result files.

The report frame deliberately leaves samples out (they are most of each file), so what the
page shows of them is read here, and bounded: the first `limit` cells (errors first, since
their log tail is what a reader needs) get an excerpt, the others are named by their file.
A report over 10,000 results thus reads a few hundred files twice, not 10,000, and stays small.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from llmspec.profiles import role_name
from llmspec.results import ResultPath

log = logging.getLogger(__name__)

CELL_LIMIT = 300  # cells whose samples are shown
FLEET_CELL_LIMIT = 60  # ... at fleet scale (html.FLEET_WIDE hosts), where 300 cells' excerpts were 2 MB of the page
SAMPLE_LIMIT = 5  # samples shown per cell
TEXT_LIMIT = 500  # characters of one text value (a model's answer) before it is cut
LIST_LIMIT = 20  # items of one list inside a sample (per-chunk times) before it is cut
STRESS_LIMIT = 20  # stress runs drawn in the time-series charts
POINT_LIMIT = 400  # points per stress series; longer runs are thinned evenly


@dataclass(frozen=True)
class CellDetail:
    anchor: str  # HTML id of the cell's section
    host: str
    model: str
    quant: str  # the quant slot of the path: `Q4_1`, or `Q4_1+t2-fa` for a server-setting variant
    profile: str
    status: str
    path: str  # result file, relative to the results folder
    samples: tuple[str, ...] = ()  # the first samples as indented JSON, long values cut
    sample_count: int = 0
    log_tail: tuple[str, ...] = ()  # llama-server's last lines, kept on error results
    problem: str = ""  # why the file could not be read


@dataclass(frozen=True)
class Details:
    cells: tuple[CellDetail, ...] = ()
    paths: dict[tuple[str, str, str, str], str] = field(default_factory=dict)  # (host, model, config, profile) -> file
    anchors: dict[tuple[str, str, str, str], str] = field(default_factory=dict)  # cells with an excerpt
    omitted: int = 0  # cells beyond the limit, named by path only
    stress: tuple[dict[str, Any], ...] = ()  # long-form points for the stress charts
    stress_omitted: int = 0
    turns: tuple[dict[str, Any], ...] = ()  # TTFT per turn of the growing sessions, cache on and off


def read_details(frame: pl.DataFrame, results_root: Path, limit: int = CELL_LIMIT) -> Details:
    """Excerpts of `limit` cells of a frame from `frame.for_spec` (failed ones first, then in
    report order; shown in report order), every cell's file path, and the stress series."""
    rows = frame.select("host", "spec", "model", "config", "profile", "status").rows() if frame.height else []
    paths = {(h, m, q, p): ResultPath(h, s, m, q, p).relative for h, s, m, q, p, _ in rows}
    chosen = sorted(range(len(rows)), key=lambda i: rows[i][5] != "error")[:limit]  # stable: errors first
    cells = tuple(_cell(Path(results_root), rows[i], f"cell-{n}") for n, i in enumerate(sorted(chosen)))
    sustained, turns_profile = role_name("sustained"), role_name("turns")  # once, not per row (14,700 at 420 hosts)
    stress_rows = [r for r in rows if r[4] == sustained and r[5] == "ok"]
    points = [p for r in stress_rows[:STRESS_LIMIT] for p in _stress_points(Path(results_root), r)]
    anchors = {(c.host, c.model, c.quant, c.profile): c.anchor for c in cells}
    session_rows = [r for r in rows if r[4] == turns_profile and r[5] == "ok"]
    turns = [p for r in session_rows[:STRESS_LIMIT] for p in _turn_points(Path(results_root), r)]
    return Details(cells, paths, anchors, len(rows) - len(cells), tuple(points),
                   max(0, len(stress_rows) - STRESS_LIMIT), tuple(turns))


def _cell(root: Path, row: tuple, anchor: str) -> CellDetail:
    host, spec, model, quant, profile, status = row
    rel = ResultPath(host, spec, model, quant, profile).relative
    base = CellDetail(anchor, host, model, quant, profile, status or "", rel)
    result, problem = _load(root / rel)
    if result is None:
        return replace(base, problem=problem)
    samples = result.get("samples") or []
    tail = result.get("server_log_tail") or ()
    return replace(
        base, samples=tuple(json.dumps(_cut(s), indent=1, ensure_ascii=False) for s in samples[:SAMPLE_LIMIT]),
        sample_count=len(samples),
        log_tail=tuple(_cut(str(line)) for line in ([tail] if isinstance(tail, str) else tail)))


def _load(path: Path) -> tuple[dict[str, Any] | None, str]:
    try:
        result = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        log.warning("report: cannot read samples of %s: %s", path, exc)
        return None, f"cannot read {path.name}: {exc}"
    return (result, "") if isinstance(result, dict) else (None, f"{path.name} holds no JSON object")


def _cut(value: Any) -> Any:
    """A copy with long texts and lists shortened, each cut saying how much it left out."""
    if isinstance(value, str) and len(value) > TEXT_LIMIT:
        return f"{value[:TEXT_LIMIT]}… [{len(value) - TEXT_LIMIT} more characters]"
    if isinstance(value, list):
        kept = [_cut(v) for v in value[:LIST_LIMIT]]
        return kept + [f"… [{len(value) - LIST_LIMIT} more items]"] if len(value) > LIST_LIMIT else kept
    if isinstance(value, dict):
        return {k: _cut(v) for k, v in value.items()}
    return value


def _stress_points(root: Path, row: tuple) -> list[dict[str, Any]]:
    """Temperature from the vitals samples and decode speed from the request samples, over time."""
    host, spec, model, quant, profile, _ = row
    result, _ = _load(ResultPath(host, spec, model, quant, profile).under(root))
    samples = [s for s in (result or {}).get("samples") or () if isinstance(s, dict)]
    series = (("temperature_c", "vitals", "temperature_c"), ("tokens_per_s", "request", "decode_tokens_per_s"),
              ("gpu_temperature_c", "vitals", "gpu_temperature_c"), ("gpu_power_w", "vitals", "gpu_power_w"))
    points = []
    for name, kind, key in series:
        found = [(s.get("elapsed_s"), s.get(key)) for s in samples if s.get("kind") == kind]
        found = [(t, v) for t, v in found if _number(t) and _number(v)]
        points += [{"host": host, "model": model, "quant": quant, "series": name, "elapsed_s": t, "value": v}
                   for t, v in _thin(found)]
    return points


def _turn_points(root: Path, row: tuple) -> list[dict[str, Any]]:
    """Per turn of the single sessions, the median over repeats of its prompt size and TTFT, once with the
    prompt cache (`run` "single") and once read whole (`run` "nocache": every turn's, or only the last)."""
    host, spec, model, quant, profile, _ = row
    result, _ = _load(root / f"{host}/{spec}/{model}/{quant}/{profile}.json")
    found: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for s in (result or {}).get("samples") or ():
        if isinstance(s, dict) and s.get("run") in ("single", "nocache") and _number(s.get("turn")) \
                and _number(s.get("ttft_s")) and _number(s.get("prompt_tokens")):
            found.setdefault((s["run"], int(s["turn"])), []).append((s["prompt_tokens"], s["ttft_s"]))
    return [{"host": host, "model": model, "quant": quant, "cache": "cache on" if run == "single" else "cache off",
             "turn": turn, "prompt_tokens": statistics.median(t for t, _ in pairs),
             "ttft_s": statistics.median(v for _, v in pairs)} for (run, turn), pairs in sorted(found.items())]


def _thin(points: list, limit: int = POINT_LIMIT) -> list:
    """At most `limit` evenly spaced points, first and last kept: a chart needs the shape, not every sample."""
    if len(points) <= limit:
        return points
    step = (len(points) - 1) / (limit - 1)
    return [points[round(i * step)] for i in range(limit)]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
