"""What a model file is: its name, size and sha256, and its GGUF metadata, cached beside it.

Hashing a multi-GB file takes a while and reading GGUF metadata with gguf's reader takes seconds,
so both are cached in `<file>.identity.json`, keyed by the file's size and mtime: a changed file
is read again, an unchanged one never.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import struct
from pathlib import Path
from typing import Any

from llmspec.errors import UserError

log = logging.getLogger(__name__)


def identity(path: Path) -> dict[str, Any]:
    """{name, size, sha256}; the hash is cached beside the file, keyed by size and mtime."""
    facts = _cached_facts(path, "sha256", lambda real: sha256_file(real))
    return {"name": path.name, "size": facts["size"], "sha256": facts["sha256"]}


METADATA_KEY = "metadata.v5"  # bump when _read_metadata reads more, so cached facts refresh


def metadata(path: Path) -> dict[str, Any]:
    """GGUF metadata, cached like the hash: gguf's reader decodes every tokenizer array (seconds)."""
    return _cached_facts(path, METADATA_KEY, _read_metadata)[METADATA_KEY]


def _cached_facts(path: Path, key: str, compute) -> dict[str, Any]:
    real = path.resolve()
    stat = real.stat()
    cache = path.with_name(path.name + ".identity.json")
    try:
        facts = json.loads(cache.read_text())
        if facts["size"] != stat.st_size or facts["mtime_ns"] != stat.st_mtime_ns:
            facts = {}
    except (OSError, ValueError, KeyError):
        facts = {}
    if key not in facts:
        log.info("reading %s of %s (%.0f MB, once)", key, path.name, stat.st_size / 1e6)
        facts = {**facts, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, key: compute(real)}
        with contextlib.suppress(OSError):
            cache.write_text(json.dumps(facts, sort_keys=True))
    return facts


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(8 << 20):
            digest.update(block)
    return digest.hexdigest()


def _read_metadata(path: Path) -> dict[str, Any]:
    """Architecture, parameters, context length, layers, heads and file type of a GGUF file."""
    from llmspec.models.gguf import read_header

    try:
        fields, parameters = read_header(path)
    except (ValueError, struct.error, OSError) as exc:
        raise UserError(f"{path.name}: not a readable GGUF file ({exc})") from None
    return metadata_of(fields, parameters)


def metadata_of(fields: dict[str, Any], parameters: int) -> dict[str, Any]:
    """The facts llmspec keeps about a model file, from its GGUF header (`gguf.read_header`)."""
    from llmspec.models.quants import quant_of_file_type

    arch = fields.get("general.architecture")
    return {
        "architecture": arch,
        "parameters": parameters,
        "context_length": fields.get(f"{arch}.context_length"),
        "layers": fields.get(f"{arch}.block_count"),
        "heads": fields.get(f"{arch}.attention.head_count"),
        "kv_heads": fields.get(f"{arch}.attention.head_count_kv"),
        "embedding_length": fields.get(f"{arch}.embedding_length"),
        "key_length": fields.get(f"{arch}.attention.key_length"),
        "value_length": fields.get(f"{arch}.attention.value_length"),
        # The memory estimate's compute buffers and sliding-window layers (llmspec.models.memory).
        "feed_forward_length": _scalar(fields.get(f"{arch}.feed_forward_length")),
        "sliding_window": fields.get(f"{arch}.attention.sliding_window"),
        "file_type": quant_of_file_type(fields.get("general.file_type")),
        "has_chat_template": "tokenizer.chat_template" in fields,
        # Tokens in the vocabulary: reference logits for KL divergence take 2 bytes per token per position.
        "vocab_size": _vocab_size(fields, arch),
        # The output matrix's elements, 0 when tied to the embedding table: neither runs per prompt token.
        "output_parameters": getattr(parameters, "output", None),
    }


def _scalar(value: Any) -> Any:
    """A per-layer array (some architectures vary the FFN size by layer) stands in as None."""
    from llmspec.models.gguf import ArrayLength

    return None if isinstance(value, ArrayLength) else value


def _vocab_size(fields: dict[str, Any], arch: str | None) -> int | None:
    tokens = fields.get("tokenizer.ggml.tokens")
    found = fields.get(f"{arch}.vocab_size") or (int(tokens) if tokens is not None else None)
    return int(found) if found else None


def metadata_or_none(path: Path, cached: bool = True) -> dict[str, Any] | None:
    """The metadata, or None when the file is missing or no readable GGUF (planning goes on without it).

    `cached=False` reads the header (milliseconds) and writes nothing: for a file in a folder that
    is not llmspec's (another tool's store, a user's download folder), which stays as it was.
    """
    try:
        return metadata(path) if cached else _read_metadata(path.resolve())
    except (UserError, OSError):
        return None
