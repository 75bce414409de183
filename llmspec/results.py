"""Result files: one JSON per cell, written atomically, read back to decide what is stale.

A result holds facts only (measurements, samples, what was measured with what); ratings are
computed at report time. Keys are sorted and floats rounded so results diff cleanly in git.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from llmspec.fingerprint import digest, explain_change, fill_missing_model

STATUSES = ("ok", "skipped", "error")


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Sorted keys, indent 1 (the report's fast loader relies on this layout), written atomically."""
    assert result.get("status") in STATUSES, result.get("status")
    write_text_atomic(path, json.dumps(_rounded(result), sort_keys=True, indent=1, ensure_ascii=False) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    """Write via a temp file, fsync and rename, so a killed run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results and reports are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_result(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def freshness(path: Path, current_inputs: dict[str, Any]) -> tuple[bool, str]:
    """(up to date?, why) for one cell, decided from its result file alone.

    Error results are never up to date: a failed measurement is not a finished artifact, and
    the next run should try again.
    """
    stored = read_result(path)
    if stored is None:
        return False, "no result yet"
    stored_inputs = stored.get("fingerprint_inputs") or {}
    current = fill_missing_model(current_inputs, stored_inputs)
    if stored.get("fingerprint") != digest(current):
        return False, explain_change(stored_inputs, current)
    if stored.get("status") == "error":
        return False, f"last run failed: {stored.get('reason', 'unknown error')}"
    return True, "up to date"


def _rounded(value: Any) -> Any:
    """Six significant digits: more would be noise in a measurement and churn in git."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value
