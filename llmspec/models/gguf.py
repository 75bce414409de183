"""GGUF metadata in milliseconds: header scalars and tensor shapes, skipping the vocabulary.

gguf.GGUFReader (llama.cpp's own reader) turns every vocabulary entry into a numpy view: 28 s
for gemma-3's 262k-token vocabulary and 7 s for SmolLM2 on 2 cores, paid by the first
`llmspec plan`. A metadata scan only needs the scalar keys and the tensor shapes, so it walks
the header with llama.cpp's type codes (gguf.GGUFValueType) and steps over arrays.
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path
from typing import Any

from llmspec.models.quants import gguf_constants

GGUF_MAGIC = gguf_constants().GGUF_MAGIC
GGUFValueType = gguf_constants().GGUFValueType

SCALARS = {
    GGUFValueType.UINT8: "<B", GGUFValueType.INT8: "<b", GGUFValueType.UINT16: "<H", GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I", GGUFValueType.INT32: "<i", GGUFValueType.FLOAT32: "<f", GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q", GGUFValueType.INT64: "<q", GGUFValueType.FLOAT64: "<d",
}


class ArrayLength(int):
    """An array's element count, standing in for the array (e.g. the vocabulary's size)."""


class ParameterCount(int):
    """The sum of every tensor's elements, and in `output` those of the output matrix (`output.weight`;
    0 when the model reuses its embedding table for it, "tied" embeddings). A prompt token is not
    multiplied through either table (`plan.prediction.prompt_parameters`)."""

    output: int = 0


def _parameters(total: int, output: int) -> ParameterCount:
    found = ParameterCount(total)
    found.output = output
    return found


class _Cursor:
    def __init__(self, buf):
        self.buf, self.pos = buf, 0

    def unpack(self, fmt: str):
        value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        n = self.unpack("<Q")
        self.pos += n
        return bytes(self.buf[self.pos - n:self.pos]).decode("utf-8", "replace")

    def value(self, vtype: int) -> Any:
        """A scalar or string; arrays are stepped over and read as their length (an `ArrayLength`)."""
        if vtype == GGUFValueType.STRING:
            return self.string()
        if vtype == GGUFValueType.ARRAY:
            etype, count = self.unpack("<I"), self.unpack("<Q")
            if etype in SCALARS:
                self.pos += struct.calcsize(SCALARS[GGUFValueType(etype)]) * count
            else:
                for _ in range(count):
                    self.value(etype)
            return ArrayLength(count)
        return self.unpack(SCALARS[GGUFValueType(vtype)])


def read_header(path: Path) -> tuple[dict[str, Any], ParameterCount]:
    """(scalar and string key/values, total parameter count) of a GGUF file."""
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        view = memoryview(buf)
        try:
            return _parse(_Cursor(view))
        except (struct.error, ValueError, IndexError, UnicodeDecodeError) as exc:
            error = f"{exc}"  # raised below, once no traceback holds a view of the mapping
        finally:
            view.release()
    raise ValueError(error)


def _parse(cur: _Cursor) -> tuple[dict[str, Any], ParameterCount]:
    if cur.unpack("<I") != GGUF_MAGIC:
        raise ValueError("no GGUF magic number")
    cur.unpack("<I")  # version
    n_tensors, n_kv = cur.unpack("<Q"), cur.unpack("<Q")
    fields = {}
    for _ in range(n_kv):
        key = cur.string()
        fields[key] = cur.value(cur.unpack("<I"))
    params = output = 0
    for _ in range(n_tensors):
        name = cur.string()
        count = 1
        for _ in range(cur.unpack("<I")):
            count *= cur.unpack("<Q")
        cur.pos += 4 + 8  # tensor type, data offset
        params += count
        output += count if name == "output.weight" else 0
    return fields, _parameters(params, output)


class Truncated(ValueError):
    """The bytes end before the header does: read more of the file."""


def parse_header(buf: bytes) -> tuple[dict[str, Any], ParameterCount]:
    """`read_header` for the first bytes of a file (a range request): Truncated when they end too soon."""
    cur = _Cursor(buf)
    try:
        found = _parse(cur)
    except (struct.error, IndexError) as exc:
        raise Truncated(f"header longer than {len(buf)} bytes") from exc
    if cur.pos > len(buf):
        raise Truncated(f"header longer than {len(buf)} bytes")
    return found
