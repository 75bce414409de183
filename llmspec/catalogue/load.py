"""The catalogue as a validated list: the bundled snapshot, or a file `refresh` wrote.

A malformed entry stops the load with one line naming the entry (by position and name) and the
fact that is wrong, so a hand edit or a bad refresh never silently drops a model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llmspec.catalogue.entry import Catalogue
from llmspec.errors import UserError
from llmspec.strict import format_loc

SNAPSHOT = Path(__file__).with_name("snapshot.json")


def load_catalogue(path: Path | None = None) -> Catalogue:
    path = path or SNAPSHOT
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"{path}: cannot read the catalogue ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise UserError(f"{path}: not JSON ({exc})") from None
    try:
        return Catalogue.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{path}: {describe(exc, raw)}") from None


def describe(exc: ValidationError, raw: Any) -> str:
    """`models[3] (Qwen2.5-7B-Instruct): architecture.layers: Input should be greater than 0`."""
    first = exc.errors()[0]
    loc = [part for part in first["loc"] if part != "[key]"]
    message = "is required" if first["type"] == "missing" else first["msg"].removeprefix("Value error, ")
    if len(loc) >= 2 and loc[0] == "models" and isinstance(loc[1], int):
        entry = raw["models"][loc[1]] if isinstance(raw, dict) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        where = f"models[{loc[1]}]" + (f" ({name})" if isinstance(name, str) else "")
        rest = format_loc(loc[2:])
        text = f"{where}: {rest + ': ' if rest else ''}{message}"
    else:
        text = f"{format_loc(loc) or 'the file'}: {message}"
    more = len(exc.errors()) - 1
    return text + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")
