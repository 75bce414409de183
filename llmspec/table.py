"""Plain-text tables for the console: columns padded to width, a dashed rule under the header."""

from __future__ import annotations


def format_table(rows: list[tuple] | list[list]) -> str:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
