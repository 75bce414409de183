"""Result files -> rows: each file parsed once, the frame built once, column by column.

Reading is the slow part of a report with thousands of cells, so each file is parsed once with
plain `json.loads` (without its raw `samples`: they are large and the report needs only the
metrics computed from them) and the frame is built from the parsed rows. Thousands of files are
spread over processes (`parse`): `json.loads` holds the GIL, so threads would take turns.

This module imports only polars and llmspec.results, so a worker process starts in a fifth of a second.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from llmspec.report.child import Child, cores
from llmspec.results import FOR_REPORTS, Result, ResultPath, unreadable

log = logging.getLogger(__name__)

FILES_PER_WORKER = 2000  # fewer files than this per process are parsed here, as a worker costs ~0.25 s to start
HEAD_START = 3500  # files this process parses more than a worker, which starts first: both end together
MAX_WORKERS = 7

BASE_SCHEMA: dict[str, pl.DataType] = {
    "host": pl.String, "spec": pl.String, "model": pl.String, "quant": pl.String, "variant": pl.String,
    "config": pl.String,  # the quant slot of the result path: `Q4_1`, or `Q4_1+t2-fa` for a variant
    "profile": pl.String, "status": pl.String, "reason": pl.String, "started_at": pl.String,
    "duration_s": pl.Float64, "model_size_bytes": pl.Int64, "server_version": pl.String,
    "flags": pl.List(pl.String), "host_info": pl.String, "items": pl.String,
    "model_sha256": pl.String,  # the model file's identity: the same file across hosts (report/fleet.py)
}


def _parse(paths: list[str], warn: Callable[[str, str], None] | None = None) -> pl.DataFrame:
    """The rows of the files that parse, each with its file in `_path`; a file that does not is
    told to `warn(path, why)` (by default, the log)."""
    rows: list[dict[str, Any]] = []
    metrics: list[dict[str, Any]] = []
    host_info: dict[str, str] = {}
    parsed: list[str] = []
    for path in paths:
        result = _read(path, warn or _warn)
        if result is not None:
            rows.append(_row(path, result, host_info))
            metrics.append(result.figures())
            parsed.append(path)
    return _build(rows, metrics).with_columns(pl.Series("_path", parsed, pl.String))


def _read(path: str, warn: Callable[[str, str], None]) -> Result | None:
    result = Result.load(path, FOR_REPORTS)
    if result is None and (why := unreadable(path)):
        warn(path, why)
    return result


def _warn(path: str, why: str) -> None:
    log.warning("cannot read the result %s: %s; it is left out of the report, and `doit` measures that cell "
                "again", os.path.relpath(path), why)


def _row(path: str, result: Result, host_info: dict[str, str]) -> dict[str, Any]:
    where = ResultPath.parse(path)  # result_paths lists only paths it parses
    host_dir = where.host
    if host_dir not in host_info:  # one host, one hardware; serialised once per host
        host_info[host_dir] = json.dumps(result.host, sort_keys=True)
    return {
        "host": host_dir, "spec": where.spec, "model": where.model, "quant": where.quant,
        "variant": where.variant, "config": where.config, "profile": where.profile,
        "status": result.status, "reason": result.reason,
        "started_at": result.started_at or None, "duration_s": result.duration_s,
        "model_size_bytes": (result.model_file or {}).get("size"),
        "model_sha256": (result.model_file or {}).get("sha256"),
        "server_version": result.server.get("version"),
        "flags": [str(f) for f in result.flags],
        # JSON text, so every hardware field a result records reaches the report as is.
        "host_info": host_info[host_dir],
        # Per-item right/wrong of a quality result, JSON text: the paired test against the reference.
        "items": json.dumps(result.items, sort_keys=True) if result.items else None,
    }


def _build(rows: list[dict[str, Any]], metrics: list[dict[str, Any]]) -> pl.DataFrame:
    """Columns built once; metric columns are Float64 with null where a file lacks the metric."""
    columns = {name: _series(name, [row[name] for row in rows], dtype) for name, dtype in BASE_SCHEMA.items()}
    names = sorted({key for m in metrics for key in m} - columns.keys())
    return pl.DataFrame(columns).hstack(_metric_series(metrics, names)) if names else pl.DataFrame(columns)


def _metric_series(metrics: list[dict[str, Any]], names: list[str]) -> list[pl.Series]:
    """polars reads the dicts itself (3x faster); a value that is no number (a hand-edited file)
    makes it give up, and then each column is built on its own with such values as null."""
    try:
        return pl.from_dicts(metrics, schema=dict.fromkeys(names, pl.Float64), strict=False).get_columns()
    except (pl.exceptions.PolarsError, TypeError, ValueError):
        return [pl.Series(name, [m.get(name) for m in metrics], dtype=pl.Float64, strict=False) for name in names]


def _series(name: str, values: list[Any], dtype: pl.DataType) -> pl.Series:
    """A list column given its dtype up front is built element by element (30x slower)."""
    if dtype == pl.List(pl.String):
        return _string_lists(name, values)
    return pl.Series(name, values, dtype=dtype, strict=False)


def _string_lists(name: str, values: list[list[str]]) -> pl.Series:
    """A list-of-strings column from one flat column and each string's row: polars builds a
    Series per inner list otherwise, 0.1 s for the flags of 14,700 results."""
    flat = pl.DataFrame({"_row": pl.Series([i for i, strings in enumerate(values) for _ in strings], dtype=pl.UInt32),
                         name: pl.Series([s for strings in values for s in strings], dtype=pl.String)})
    rows = pl.DataFrame({"_row": pl.int_range(len(values), dtype=pl.UInt32, eager=True)})
    lists = rows.join(flat.group_by("_row", maintain_order=True).agg(name), on="_row", how="left",
                      maintain_order="left")
    return lists[name].fill_null(pl.lit([], pl.List(pl.String)))


def parse(paths: list[str], workers: int | None = None, head_start: int = HEAD_START) -> pl.DataFrame:
    """`_parse(paths)`, the same frame, with the files spread over `workers` more processes when
    there are thousands (default: one per further core, at least FILES_PER_WORKER files each).
    The files stay in order: this process parses the first share, `head_start` files larger than
    a worker's, while the workers start; their unreadable files are warned about here. A worker
    that cannot start or fails leaves its share to this process: the frame is the same."""
    if workers is None:
        workers = min(cores() - 1, len(paths) // FILES_PER_WORKER - 1, MAX_WORKERS)
    if workers < 1 or len(paths) < 2:
        return _parse(paths)
    share = max(1, (len(paths) - head_start) // (workers + 1))
    first = max(1, len(paths) - share * workers)
    bounds = [(first + i * share, first + (i + 1) * share if i < workers - 1 else len(paths)) for i in range(workers)]
    with tempfile.TemporaryDirectory(prefix="llmspec-parse-") as folder:
        jobs: list[_Worker] = []
        try:
            for i, (start, end) in enumerate(bounds):
                jobs.append(_Worker(Path(folder) / str(i), paths[start:end]))
            frames = [_parse(paths[:first]), *(job.frame() for job in jobs)]
        finally:
            for job in jobs:
                job.stop()
    return in_order(pl.concat(frames, how="diagonal_relaxed"))


def in_order(rows: pl.DataFrame) -> pl.DataFrame:
    """Rows put together from pieces (several processes' shares, the index and fresh files) as one
    process parsing every file in path order makes them: the base columns, the metrics sorted by
    name, `_path` last where there is one, and each host's card as its first file recorded it."""
    metrics = sorted(c for c in rows.columns if c not in BASE_SCHEMA and c != "_path")
    tail = ["_path"] if "_path" in rows.columns else []
    return rows.select(*BASE_SCHEMA, *metrics, *tail).with_columns(pl.col("host_info").first().over("host"))


class _Worker:
    """`python -m llmspec.report.rows PATHS OUT` (report/child.py): a share of the files parsed in
    another process, the frame handed back as an Arrow file and the unreadable files as JSON."""

    def __init__(self, stem: Path, paths: list[str]) -> None:
        self.stem, self.paths = stem, paths
        stem.with_suffix(".paths").write_text(json.dumps(paths))
        self.child = Child("llmspec.report.rows", [str(stem.with_suffix(".paths")), str(stem)],
                           stem.with_suffix(".err"))

    def frame(self) -> pl.DataFrame:
        why = self.child.failure()
        if why is None:
            try:
                unread = json.loads(self.stem.with_suffix(".json").read_text())
                frame = pl.read_ipc(self.stem.with_suffix(".arrow"))
            except (OSError, ValueError, pl.exceptions.PolarsError) as error:
                why = f"left an unreadable frame ({error})"
            else:
                for path, reason in unread:
                    _warn(path, reason)
                return frame
        log.info("parsing %d result files here: the worker %s", len(self.paths), why)
        return _parse(self.paths)

    def stop(self) -> None:
        """No worker outlives the report (Ctrl+C, an error here)."""
        self.child.stop()


def _main(paths_file: str, stem: str) -> None:
    unread: list[tuple[str, str]] = []
    frame = _parse(json.loads(Path(paths_file).read_text()), lambda path, why: unread.append((path, why)))
    frame.write_ipc(f"{stem}.arrow", compression="uncompressed")
    Path(f"{stem}.json").write_text(json.dumps(unread))


if __name__ == "__main__":
    gc.disable()  # a worker lives for one parse, whose rows hold no cycles (see report.without_gc)
    _main(*sys.argv[1:3])
