"""report.html: the page a person reads, one table per profile, self-contained.

Autoescaping is on because reasons and flags carry text from outside llmspec (server errors,
model output); a `<script>` in a reason must show as text, never run. The page has no external
resources so it opens offline and can be archived or mailed as one file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import polars as pl

from llmspec.rating import interpret, rated_metrics
from llmspec.report.frame import hosts, metric_columns, rating_of
from llmspec.spec import PROFILE_ORDER, Spec

TEMPLATES = Path(__file__).parent / "templates"
# Shown for every profile after the rated metrics, when a profile recorded them.
COMMON_METRICS = ("peak_rss_gb", "load_time_s")


def generate_html(frame: pl.DataFrame, spec: Spec, generated_at: str) -> str:
    """HTML text of a frame prepared by `frame.for_spec`."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.get_template("report.html").render(
        spec=spec, generated_at=generated_at, hosts=hosts(frame),
        thresholds=spec.thresholds.model_dump(), tables=_tables(frame, spec), count=frame.height,
    )


def _tables(frame: pl.DataFrame, spec: Spec) -> list[dict[str, Any]]:
    present = set(frame["profile"].unique())
    names = [p for p in PROFILE_ORDER if p in present] + sorted(present - set(PROFILE_ORDER))
    return [_table(frame.filter(pl.col("profile") == name), name, spec) for name in names]


def _table(rows: pl.DataFrame, profile: str, spec: Spec) -> dict[str, Any]:
    recorded = metric_columns(rows)
    shown = [m for m in (*rated_metrics(profile), *COMMON_METRICS) if m in recorded]
    return {
        "profile": profile,
        "metrics": shown,
        "many_hosts": rows["host"].n_unique() > 1,
        "rows": [_row(row, shown, spec) for row in rows.iter_rows(named=True)],
    }


def _row(row: dict[str, Any], shown: list[str], spec: Spec) -> dict[str, Any]:
    rating = rating_of(row, spec)
    return {
        "host": row["host"], "model": row["model"], "quant": row["quant"],
        "status": row["status"], "reason": row["reason"], "flags": row["flags"] or [],
        "cells": [_cell(name, row[name]) for name in shown],
        "rating": rating.label, "rating_title": rating.summary(),
    }


def _cell(metric: str, value: float | None) -> dict[str, str]:
    text = "" if value is None else f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return {"text": text, "title": interpret(metric, value)}
