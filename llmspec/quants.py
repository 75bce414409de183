"""Quantization names, taken from llama.cpp's own list (gguf.LlamaFileType) so they never drift."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from pydantic_core import PydanticCustomError


def gguf_constants() -> ModuleType:
    """`gguf.constants` without running `gguf/__init__`, which imports numpy and the whole
    reader (0.3 s of every `doit` run, even one with nothing to do). constants.py itself needs
    only the standard library; once the real package is loaded, its module is used."""
    if "gguf.constants" in sys.modules:
        return sys.modules["gguf.constants"]
    name = "llmspec._gguf_constants"
    if name not in sys.modules:
        package = importlib.util.find_spec("gguf")
        path = Path(next(iter(package.submodule_search_locations))) / "constants.py"
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


LlamaFileType = gguf_constants().LlamaFileType
KNOWN_QUANTS: tuple[str, ...] = tuple(
    t.name.removeprefix("MOSTLY_").removeprefix("ALL_") for t in LlamaFileType if t.name != "GUESSED"
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
        name = LlamaFileType(file_type).name
    except (ValueError, TypeError):
        return None
    return None if name == "GUESSED" else name.removeprefix("MOSTLY_").removeprefix("ALL_")
