"""Quantization names, taken from llama.cpp's own list (gguf.LlamaFileType) so they never drift."""

from __future__ import annotations

import gguf
from pydantic_core import PydanticCustomError

KNOWN_QUANTS: tuple[str, ...] = tuple(
    t.name.removeprefix("MOSTLY_").removeprefix("ALL_") for t in gguf.LlamaFileType if t.name != "GUESSED"
)


def check_quant(value: str) -> str:
    if value not in KNOWN_QUANTS:
        raise PydanticCustomError(
            "unknown_quant",
            "'{value}' is not a known quantization (known: {known})",
            {"value": value, "known": ", ".join(KNOWN_QUANTS)},
        )
    return value


def quant_of_file_type(file_type: int | None) -> str | None:
    """The quant name a GGUF declares in general.file_type, for checking files against the spec."""
    try:
        name = gguf.LlamaFileType(file_type).name
    except (ValueError, TypeError):
        return None
    return None if name == "GUESSED" else name.removeprefix("MOSTLY_").removeprefix("ALL_")
