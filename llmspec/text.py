"""How numbers and tables read on the console and in reports: one formatter for each, used everywhere."""

from __future__ import annotations

import math
from typing import Any


def format_table(rows: list[tuple] | list[list]) -> str:
    """Plain-text table: columns padded to width, a dashed rule under the header."""
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool, not NaN): what a metric must be to be shown or judged."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def figure(value: float) -> str:
    """A measured figure: three significant digits below 100, whole numbers above (62.4, 0.94, 1053)."""
    if not math.isfinite(value):
        return str(value)
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def gb(value: float) -> str:
    """A memory figure in GB: two decimals below 10 GB, where 0.3 vs 0.34 matters; one above."""
    return f"{value:.2f} GB" if value < 10 else f"{value:.1f} GB"
