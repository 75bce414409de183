"""Reference logits: what the divergence profile compares every quant of a model with.

`llama-perplexity --kl-divergence-base FILE` runs the reference quant over the text once and
writes, for every scored position, the log-probabilities of the whole vocabulary (2 bytes each);
each quant's divergence cell then reads that file instead of running the reference again. The
file is large (scored tokens x vocabulary x 2 bytes: about 200 MB for SmolLM2's 49k vocabulary
and 1 GB for gemma-3's 262k at 2,000 scored tokens), so it lives under build/cache/ (never
committed) and is rebuilt only when what it depends on changes: the reference file, the text,
ctx, chunks and the llama.cpp build. This module plans it (pure); the runner builds it with
`llmspec.run.perplexity.write_logits` (`llmspec.run.runner.ensure_reference`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmspec.fingerprint import digest
from llmspec.freshness import UP_TO_DATE, Freshness
from llmspec.models.files import ModelFile
from llmspec.profiles.divergence import scored_per_chunk

HEADER_BYTES = 8 + 4 + 4 + 4  # "_logits_", n_ctx, n_vocab, n_chunk


@dataclass(frozen=True)
class Reference:
    """The reference logits of one model in one spec (see module doc)."""

    spec: str
    model: str
    quant: str
    file: ModelFile  # the reference quant's model file
    ctx: int
    chunks: int
    text: dict[str, str]  # text file name -> content hash (what the logits were computed over)
    path: Path  # build/cache/divergence/<spec>/<model>@<quant>.logits
    text_folder: str = ""  # where that text is (`LogitsNeed.text`); not fingerprinted, the hashes are

    @property
    def meta_path(self) -> Path:
        return self.path.with_suffix(".json")

    @property
    def scored_tokens(self) -> int:
        return self.chunks * scored_per_chunk(self.ctx)

    def size_bytes(self, vocab: int) -> int:
        """The file llama-perplexity writes: header, the chunks' tokens, then per scored position
        the vocabulary's log-probabilities as uint16 (padded to even) plus 8 bytes of scale."""
        per_position = 2 * (2 * ((vocab + 1) // 2) + 4)
        return HEADER_BYTES + 4 * self.ctx * self.chunks + self.scored_tokens * per_position

    def inputs(self, identity: dict[str, Any] | None, version: str | None) -> dict[str, Any]:
        """Everything the logits depend on; a change rebuilds them (and re-measures the cells)."""
        return {"quant": self.quant, "model": identity, "source": self.file.source, "text": self.text,
                "ctx": self.ctx, "chunks": self.chunks, "llama_cpp": version}

    def stored(self) -> dict[str, Any] | None:
        """The facts written next to the logits (inputs, perplexity, size), or None."""
        try:
            return json.loads(self.meta_path.read_text())
        except (OSError, ValueError):
            return None

    def state(self, identity: dict[str, Any] | None, version: str | None) -> Freshness:
        """Up to date when the logits exist, whole, and were made from these inputs."""
        stored = self.stored()
        if stored is None or not self.path.exists():
            return Freshness.stale("no reference logits yet")
        if stored.get("bytes") != self.path.stat().st_size:
            return Freshness.stale("the reference logits file is incomplete")
        if stored.get("fingerprint") != digest(self.inputs(identity, version)):
            return Freshness.stale("the reference, its text or its settings changed")
        return UP_TO_DATE
