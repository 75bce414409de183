"""results.xlsx: the CSV's table for spreadsheet users, one sheet per profile plus a summary.

Written with polars' own Excel writer (its engine, xlsxwriter, is the dependency), into a temp
file that is renamed into place, as every report file is. The summary sheet is the
configurations table (csv.py's columns); each profile's sheet holds that profile's status,
rating, metrics and reason per configuration, so a sheet never carries another profile's empty
columns. Sheet names are the profile names (Excel allows 31 characters).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import polars as pl

from llmspec.report.csv import CONFIG_COLUMNS, _profile_columns, _profiles
from llmspec.report.frame import KEYS


def sheets(frame: pl.DataFrame, configs: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Sheet name -> table: "summary" first, then one per profile present, in run order."""
    summary = configs.select(*KEYS, *(pl.col(c).alias(name) for c, name in CONFIG_COLUMNS.items()))
    found = {"summary": summary}
    for profile in _profiles(frame) if frame.height else []:
        table = _profile_columns(frame, profile)
        found[profile[:31]] = table.rename({c: c.removeprefix(f"{profile}_") for c in table.columns if c not in KEYS})
    return found


def write_xlsx(path: Path, tables: dict[str, pl.DataFrame]) -> None:
    """Every table as its own sheet, atomically (temp file + rename)."""
    import xlsxwriter

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with xlsxwriter.Workbook(tmp) as workbook:
            for name, table in tables.items():
                table.write_excel(workbook=workbook, worksheet=name, autofit=table.height <= 1000)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
