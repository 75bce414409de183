"""`llmspec catalogue refresh`: the snapshot rebuilt from the hub, without downloading a model.

For each entry's repo it lists the files with their sizes (the hub's tree API, through
huggingface_hub), keeps one .gguf per quant the entry names, and reads that file's GGUF header
with HTTP range requests: the first 2 MiB, doubled until the header ends (a 262k-token
vocabulary takes about 8 MiB), never the weights. What the header says replaces the entry's
architecture, parameters and chat-template facts, each then sourced "gguf header: repo/file";
file sizes become read ones. Facts a header cannot tell (tools, reasoning, license where absent)
keep their earlier source.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llmspec.catalogue.entry import Catalogue, Entry
from llmspec.catalogue.load import SNAPSHOT, describe, load_catalogue
from llmspec.errors import UserError
from llmspec.models.gguf import Truncated, parse_header
from llmspec.models.identity import metadata_of

FIRST_RANGE = 2 << 20
MAX_HEADER = 64 << 20  # no GGUF header is this long; past it the file is not what it claims
ARCH_KEYS = ("architecture", "layers", "heads", "kv_heads", "embedding_length", "key_length", "value_length",
             "feed_forward_length", "sliding_window", "context_length", "vocab_size", "output_parameters")


def read_remote_header(url: str) -> tuple[dict[str, Any], int]:
    """The GGUF header at `url`, from as few leading bytes as it takes."""
    want = FIRST_RANGE
    while True:
        request = urllib.request.Request(url, headers={"Range": f"bytes=0-{want - 1}"})
        with urllib.request.urlopen(request, timeout=60) as response:
            if response.status != 206:
                raise UserError(f"{url}: the server ignored the byte range (HTTP {response.status}); "
                                f"refresh reads headers only and will not download whole files")
            buf = response.read()
        try:
            return parse_header(buf)
        except Truncated:
            if len(buf) < want or want >= MAX_HEADER:
                raise UserError(f"{url}: no complete GGUF header in its first {len(buf)} bytes") from None
            want *= 2


def refresh(endpoint: str | None = None, source: Path | None = None, output: Path | None = None,
            log=print) -> Catalogue:
    """Every entry of `source` (the bundled snapshot) refreshed from the hub, written to `output`."""
    from huggingface_hub import HfApi

    from llmspec.models.hub import hub_endpoint

    endpoint = hub_endpoint(endpoint)
    api = HfApi(endpoint=endpoint)
    catalogue = load_catalogue(source)
    entries = []
    for entry in catalogue.models:
        try:
            listing = {f.path: f.size for f in api.list_repo_tree(entry.repo, recursive=True)}
        except Exception as exc:  # noqa: BLE001 - any hub failure leaves this entry as it was, said once
            log(f"{entry.name}: kept as it was ({entry.repo}: {str(exc).splitlines()[0][:120]})")
            entries.append(entry)
            continue
        entries.append(_refreshed(entry, listing, endpoint, log))
    fresh = Catalogue(about=catalogue.about, models=entries)
    out = output or source or SNAPSHOT
    out.write_text(json.dumps(fresh.model_dump(exclude_none=True), indent=1, sort_keys=True) + "\n")
    return fresh


def _refreshed(entry: Entry, listing: dict[str, int], endpoint: str, log) -> Entry:
    raw = entry.model_dump(exclude_none=True)
    files, header_of = {}, None
    for quant, known in entry.files.items():
        name = known.file if known.file in listing else None
        if name is None:
            log(f"{entry.name}: {quant}: {known.file} is not in {entry.repo}; kept as it was")
            files[quant] = known.model_dump(exclude_none=True)
            continue
        files[quant] = {"file": name, "size": listing[name]}
        header_of = header_of or name
    raw["files"] = files
    sources = dict(entry.sources)
    if any(not f.get("size_computed") for f in files.values()):
        kept = [q for q, f in files.items() if f.get("size_computed")]
        sources["files"] = (f"{endpoint}/api/models/{entry.repo}/tree/main (file sizes as listed"
                            + (f"; {', '.join(kept)} not there, their sizes computed)" if kept else ")"))
    if header_of:
        fields, parameters = read_remote_header(f"{endpoint}/{entry.repo}/resolve/main/{header_of}")
        meta = metadata_of(fields, parameters)
        raw["architecture"] = {k: meta[k] for k in ARCH_KEYS if meta.get(k) is not None}
        raw["parameters"] = parameters
        raw["capabilities"]["chat_template"] = meta["has_chat_template"]
        raw["capabilities"]["vision"] = raw["capabilities"]["vision"] or any("mmproj" in f for f in listing)
        where = f"gguf header: {entry.repo}/{header_of} (range request)"
        sources |= {"architecture": where, "parameters": where + ", sum of tensor shapes"}
        if isinstance(fields.get("general.license"), str):
            raw["license"], sources["license"] = fields["general.license"], where
        log(f"{entry.name}: {len(files)} file(s), header of {header_of}")
    raw["sources"] = sources
    try:
        return Entry.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{entry.repo}: the hub's facts make no valid entry: "
                        f"{describe(exc, {'models': [raw]}).removeprefix('models[0] ')}") from None
