"""Result files -> one polars frame, the single input every report writer reads.

The files are parsed by rows.py, or read back from the index of parsed results (parsed.py).
Ratings are added here (not stored in results) so that editing a threshold and re-running the
report re-rates without re-measuring.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from llmspec.plan.cells import expand
from llmspec.profiles import KINDS
from llmspec.rating import CHECK_LINE_FIELDS, check_line, checks_json, rate_frame
from llmspec.report.memo import NO_MEMO, Memo
from llmspec.report.rows import BASE_SCHEMA, in_order, parse
from llmspec.results import BOUND, result_paths, result_stats
from llmspec.spec import Spec

DERIVED = ("order", "rating", "rating_summary", "rating_checks")  # added by for_spec, not read from files
KEYS = ["host", "model", "quant", "variant"]  # one configuration: what a user chooses between


def load_frame(results_root: Path, spec_name: str, index: Path | None = None,
               stats: dict[str, tuple[int, int]] | None = None) -> pl.DataFrame:
    """Every result of `spec_name` on every host, one row per file, metrics as columns.

    The cell identity comes from the path (the contract), not from the file's content.
    Unreadable files are skipped with a warning: one torn file must not hide a whole report.
    With `index` (a file beside the reports, see parsed.py) only files changed since it was
    written are parsed; the frame is the same either way. `stats`: `result_stats` already taken.
    """
    if index is None:
        return parse(result_paths(Path(results_root), spec_name)).drop("_path")  # str, not Path: 10k Paths cost 0.3 s
    from llmspec.report.parsed import indexed

    return in_order(indexed(stats if stats is not None else result_stats(Path(results_root), spec_name), index, parse))


def metric_columns(frame: pl.DataFrame) -> list[str]:
    """Metric columns that hold at least one value (a profile's own metrics, after filtering)."""
    skip = {*BASE_SCHEMA, *DERIVED}
    return [c for c in frame.columns if c not in skip and BOUND not in c and frame[c].null_count() < frame.height]


def for_spec(frame: pl.DataFrame, spec: Spec, memo: Memo = NO_MEMO) -> tuple[pl.DataFrame, int]:
    """Rows of the spec's current cells in run order per host, rated.

    Results of cells the spec no longer has (a removed model or quant) are left out, and
    counted, so the report describes the spec as it is now. Each row is rated once, here:
    `rating` (the label), `rating_summary` (one line per check, for tooltips) and
    `rating_checks` (the checks as JSON text, for results.json and the recommendations' words:
    text, because every writer turns rows into Python objects and structs cost 10x more there).
    Each profile is rated apart, through `memo`: a threshold edit rates only its own profile again.
    """
    host_cores = _host_cores(frame)
    by_cores = {cores: _order(spec, cores) for cores in set(host_cores.values())}
    orders = {host: by_cores[cores] for host, cores in host_cores.items()}
    keys = zip(frame["host"], frame["model"], frame["quant"], frame["variant"], frame["profile"])
    index = pl.Series("order", [orders[h].get(tuple(k)) for h, *k in keys], dtype=pl.Int64)
    kept = frame.with_columns(index).filter(pl.col("order").is_not_null()).sort(["host", "order"])
    return _rated(kept, spec, memo), frame.height - kept.height


RATED_BY = ("profile", "status")  # with the metrics, all that rating and re-deriving read: the memo's key


def _rated(kept: pl.DataFrame, spec: Spec, memo: Memo) -> pl.DataFrame:
    """`kept` with each profile's rows re-derived (`_rederived`) and rated (`_rate`), one profile at a
    time, and the rows put back in their order."""
    if not kept.height:
        return kept.with_columns(*_rate(kept, {}))
    parts, places, redone = [], [], {}  # redone: re-derived metric -> the profiles that re-derived it
    for (profile,), rows in kept.with_row_index("_i").partition_by("profile", as_dict=True,
                                                                   maintain_order=True).items():
        limits = getattr(spec.thresholds, profile, None)
        thresholds = {profile: limits} if limits is not None else {}
        inputs = rows.select(*RATED_BY, *(c for c in rows.columns if c not in BASE_SCHEMA and c not in DERIVED
                                          and c != "_i"))
        part = memo.frame(f"rated-{profile}", filled(inputs),
                          limits.model_dump_json() if limits is not None else "",
                          lambda rows, thresholds=thresholds: _rate(rows, thresholds))
        for name in part.columns:
            if name not in DERIVED:
                redone.setdefault(name, []).append(profile)
        parts.append(part)
        places.append(rows["_i"])
    derived = (pl.concat(parts, how="diagonal_relaxed").with_columns(pl.concat(places).alias("_i"))
               .sort("_i").drop("_i"))
    return kept.with_columns(  # a re-derived metric: its new value in the profiles that re-derive it
        *(pl.when(pl.col("profile").is_in(profiles)).then(derived[name])
          .otherwise(pl.col(name) if name in kept.columns else None).cast(pl.Float64).alias(name)
          for name, profiles in redone.items()),
        *derived.select(DERIVED[1:]))


def _rate(rows: pl.DataFrame, thresholds: dict) -> pl.DataFrame:
    """Re-derived metrics (`_rederived`), `rating`, `rating_summary` and `rating_checks` of `rows`
    against `thresholds` ({profile: its thresholds}), a row each, in order."""
    rows, redone = _rederived(rows, thresholds)
    rated = rate_frame(rows, thresholds, pl.col("status") == "ok")
    return pl.DataFrame([
        *(rows[name] for name in redone), rated["rating"], _summaries(rated["rating_checks"]),
        rated.select(checks_json(pl.col("rating_checks"))).to_series().alias("rating_checks"),
    ])


def _summaries(checks: pl.Series) -> pl.Series:
    """`rating.summary` of each row's checks as `rating_summary`, one `check_line` per check.
    Turning a list-of-structs column into Python dicts cost more than the words (0.1 s at 14,700
    rows): the checks are read as flat columns and handed back to each row in order."""
    flat = (checks.alias("c").to_frame().with_row_index("_row").explode("c")
            .filter(pl.col("c").is_not_null()).unnest("c"))
    per_row: list[list[str]] = [[] for _ in range(checks.len())]
    for row, *fields in zip(*(flat[name].to_list() for name in ("_row", *CHECK_LINE_FIELDS))):
        per_row[row].append(check_line(*fields))
    return pl.Series("rating_summary", ["; ".join(lines) for lines in per_row], dtype=pl.String)


def _rederived(frame: pl.DataFrame, thresholds: dict) -> tuple[pl.DataFrame, list[str]]:
    """Metrics a profile computes again from its stored figures against today's thresholds (the
    load profile's `max_users_at_slo` from its levels), so a changed threshold re-rates it; and
    the names of the metrics computed again."""
    redone = []
    for kind in (k for k in KINDS if k.rederive is not None):
        mask = (frame["profile"] == kind.name) & (frame["status"] == "ok")
        if not mask.any() or thresholds.get(kind.name) is None:
            continue
        rows = filled_dicts(frame.filter(mask))
        found = [kind.rederive(row, thresholds[kind.name]) for row in rows]
        for name in sorted({n for f in found for n in f}):
            values = iter([f.get(name, row.get(name)) for f, row in zip(found, rows)])
            column = frame[name] if name in frame.columns else pl.Series(name, [None] * frame.height, pl.Float64)
            frame = frame.with_columns(pl.Series(name, [next(values) if m else v for m, v in zip(mask, column)],
                                                 dtype=pl.Float64))
            redone.append(name)
    return frame, redone


def filled(rows: pl.DataFrame) -> pl.DataFrame:
    """`rows` without the metric columns none of them has a value in: one profile's rows carry its
    40 metrics, not every profile's 240."""
    return rows.select(c for c in rows.columns if c in BASE_SCHEMA or c in DERIVED
                       or rows[c].null_count() < rows.height)


def filled_dicts(rows: pl.DataFrame) -> list[dict[str, Any]]:
    """`rows.to_dicts()` of `filled` rows (a missing key reads as None with `.get`): at fleet scale
    turning every profile's 240 metrics into dicts, and scanning those, took a second."""
    return filled(rows).to_dicts()


def _host_cores(frame: pl.DataFrame) -> dict[str, int | None]:
    """Each host's logical cores as its results recorded them: `threads = "sweep"` expands to
    thread counts up to the measuring host's cores, not the reading one's."""
    pairs = frame.select("host", "host_info").unique("host").iter_rows()
    return {host: json.loads(info or "{}").get("cores_logical") for host, info in pairs}


def _order(spec: Spec, cores: int | None) -> dict[tuple[str, str, str, str], int]:
    return {(c.model, c.quant, c.variant, c.profile): i for i, c in enumerate(expand(spec, cores))}


def hosts(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """The hardware of each host in the frame, as its results recorded it (`id` is the folder)."""
    unique = frame.select("host", "host_info").unique("host", keep="first", maintain_order=True).sort("host")
    return [{**json.loads(info or "{}"), "id": host} for host, info in unique.iter_rows()]
