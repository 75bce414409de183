"""results.csv: one row per (host, model, quant), profiles side by side, for spreadsheets.

After the model file's size come its peak memory and derived scores (report/configs.py), then
columns `<profile>_<metric>` (the README, "Reports") so one row compares a model file
across use cases; a spreadsheet user sorts by any of them. Rows keep the spec's run order per host
so the file is stable between report runs and diffs cleanly.
"""

from __future__ import annotations

import polars as pl

from llmspec.profiles import ORDER, PROFILES
from llmspec.report.frame import KEYS, metric_columns

# configs column -> CSV column, after the keys.
CONFIG_COLUMNS = {
    "model_size_gb": "model_size_gb", "peak_memory_gb": "memory_gb", "efficiency_score": "efficiency_score",
    "cost_benefit_score": "cost_benefit_score", "quality_degradation_pts": "quality_degradation_pts",
    "quality_loss_p": "quality_loss_p",
    "roofline_pct": "roofline_pct",
}


def generate_csv(frame: pl.DataFrame, configs: pl.DataFrame) -> str:
    """CSV text of a `frame.for_spec` frame (ordered, rated) and its `configs` table."""
    table = configs.select(*KEYS, *(pl.col(c).alias(name) for c, name in CONFIG_COLUMNS.items()))
    table = table.with_columns(pl.col("model_size_gb").round(3))
    for profile in _profiles(frame):
        table = table.join(_profile_columns(frame, profile), on=KEYS, how="left", maintain_order="left")
    return table.write_csv()


def _profiles(frame: pl.DataFrame) -> list[str]:
    present = set(frame["profile"].unique())
    return [p for p in ORDER if p in present] + sorted(present - set(ORDER))


def _profile_columns(frame: pl.DataFrame, profile: str) -> pl.DataFrame:
    """This profile's status, rating, metrics and reason, prefixed with the profile name."""
    rows = frame.filter(pl.col("profile") == profile)
    recorded = metric_columns(rows)
    rated = [m for m in (PROFILES[profile].rated_metrics if profile in PROFILES else ()) if m in recorded]
    values = ["status", "rating", *rated, *(m for m in recorded if m not in rated), "reason"]
    return rows.select(*KEYS, *(pl.col(v).alias(f"{profile}_{v}") for v in values))
