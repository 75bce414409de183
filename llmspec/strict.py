"""Strict settings models and the one-line messages their errors become.

Validation is strict (`extra="forbid"`) because a typo in a threshold name that is silently
ignored produces a confident, wrong recommendation. The spec, the profiles' settings and the
quality test files share these pieces so every bad input reads the same way.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """`allow_inf_nan=False`: TOML can spell `nan` and `inf`, and a threshold of inf passes every
    check (a confident "Excellent" from a figure nobody judged)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


def format_loc(loc: list[Any]) -> str:
    """pydantic's error location as a TOML/JSON reader writes it: `models[1].quants[0]`."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
