"""The index of parsed results: the report frame's rows kept beside the reports, so a re-render
whose result files did not change reads one file instead of every result.

At fleet scale (14,700 results of 420 hosts) parsing the files is most of a report's time, and a
threshold edit, the step a user repeats, changes no result. Each row is stored with its file's
path, size and modification time; a file whose size or time differs from its row, or which has no
row, is parsed again, and rows of files that are gone are dropped. The rows are exactly what
parsing gives (frame.py builds both), so a report from the index equals one from the files.

The file's name carries a digest of the code that makes the rows (rows.py, frame.py, results.py), so an
index written by another version of llmspec is never read: it is rebuilt and the old one removed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path

import polars as pl

from llmspec.report.memo import keep

PREFIX = ".results-index"
STAMP = ("_path", "_size", "_mtime_ns")  # per row: the file it was parsed from, as stat() saw it


def index_path(folder: Path) -> Path:
    """The index's file in a spec's reports folder, named after the code that makes its rows."""
    here = Path(__file__).parent
    digest = hashlib.sha256()
    for source in (here / "frame.py", here / "rows.py", here.parent / "results.py", Path(__file__)):
        digest.update(source.read_bytes())
    return Path(folder) / f"{PREFIX}-{digest.hexdigest()[:12]}.arrow"


def indexed(stats: Mapping[str, tuple[int, int]], index: Path, parse: Callable[[list[str]], pl.DataFrame]
            ) -> pl.DataFrame:
    """`parse(paths)` (a frame with each row's file in `_path`) of the files in `stats` (results.result_stats),
    reading from `index` every row whose file is unchanged; the index is brought up to date when any
    file was parsed or dropped. Rows come in path order, without `_path`."""
    current = pl.DataFrame({"_path": list(stats), "_size": [s for s, _ in stats.values()],
                            "_mtime_ns": [t for _, t in stats.values()]},
                           schema={"_path": pl.String, "_size": pl.Int64, "_mtime_ns": pl.Int64})
    old = _read(index)
    kept = old.join(current, on=list(STAMP), how="semi") if old is not None else None
    known = set(kept["_path"].to_list()) if kept is not None else set()
    todo = [p for p in stats if p not in known]
    if kept is not None and not todo and kept.height == old.height:
        return kept.drop(STAMP)  # nothing changed: rows as stored, already in path order
    # parse() names each row's file in `_path`; a file that did not parse (torn, hand-edited) has
    # no row, was warned about, and is parsed, and warned about, again next time.
    fresh = parse(todo).join(current, on="_path", how="left")
    merged = pl.concat([kept, fresh], how="diagonal_relaxed") if kept is not None and kept.height else fresh
    merged = merged.sort("_path")
    _write(index, merged)
    return merged.drop(STAMP)


def _read(index: Path) -> pl.DataFrame | None:
    try:
        frame = pl.read_ipc(index)
    except (OSError, pl.exceptions.PolarsError, ValueError):
        return None
    return frame if all(c in frame.columns for c in STAMP) else None


def _write(index: Path, frame: pl.DataFrame) -> None:
    """Atomically, and only this version's index: older ones are removed."""
    keep(index, frame, f"{PREFIX}-*.arrow")
