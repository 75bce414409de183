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


# Approximate bits per weight of llama.cpp quant types (llama-quantize's table): to guess a derived
# file's size before it exists, and to order quants by precision (the most precise is the reference).
BITS_PER_WEIGHT = {
    "F32": 32, "F16": 16, "BF16": 16, "Q8_0": 8.5, "Q6_K": 6.56, "Q5_1": 6.0, "Q5_K_M": 5.69, "Q5_K_S": 5.54,
    "Q5_0": 5.5, "Q4_1": 5.0, "Q4_K_M": 4.85, "Q4_K_S": 4.58, "Q4_0": 4.5, "IQ4_XS": 4.25, "IQ4_NL": 4.5,
    "Q3_K_L": 4.27, "Q3_K_M": 3.91, "Q3_K_S": 3.5, "IQ3_M": 3.66, "IQ3_S": 3.44, "IQ3_XS": 3.3,
    "IQ3_XXS": 3.06, "Q2_K": 2.63, "Q2_K_S": 2.56, "IQ2_M": 2.7, "IQ2_S": 2.5, "IQ2_XS": 2.31,
    "IQ2_XXS": 2.06, "IQ1_M": 1.75, "IQ1_S": 1.56, "TQ1_0": 1.69, "TQ2_0": 2.06,
}
