"""GGUF files the user already has: the folders where llama.cpp, Hugging Face, LM Studio and
Ollama keep them, plus the spec's model_dir and any folder named on the command line.

A new user's question is "which of my models should I try", and most of them have models on
disk already. This module finds them and says what each is (from its GGUF header), without
changing anything: it never writes, moves, links or deletes in the folders it reads (a file is
linked into model_dir only when a cell runs, by `llmspec.models.files`). Walks are bounded
(depth, entries) and follow no symlinked folder, so a folder with a loop or a huge tree costs
a note, not a hang; an unreadable folder is skipped with a note.

Where each tool keeps its files (as of late 2025):
- Hugging Face hub cache: HF_HUB_CACHE, else HF_HOME/hub, else XDG_CACHE_HOME or ~/.cache, then
  huggingface/hub; `models--<org>--<repo>/snapshots/<commit>/<file>` (symlinks into blobs/),
  `refs/main` holds the commit `main` pointed at. Such files are named by repo, revision and file.
- llama.cpp's download cache (`-hf`): LLAMA_CACHE, else ~/.cache/llama.cpp; flat files named
  `<org>_<repo>_<file>.gguf`, or the hub cache layout in newer versions.
- LM Studio: ~/.lmstudio/models and ~/.cache/lm-studio/models, `<publisher>/<repo>/<file>.gguf`;
  LMSTUDIO_MODELS (llmspec's own variable, LM Studio has none) names another folder.
- Ollama: OLLAMA_MODELS, else ~/.ollama/models; `manifests/<registry>/<namespace>/<model>/<tag>`
  is JSON whose layer of mediaType application/vnd.ollama.image.model names `blobs/sha256-<hex>`,
  a GGUF file without the extension.
"""

from __future__ import annotations

import json
import os
import re
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmspec.models.gguf import read_header
from llmspec.models.identity import metadata_of
from llmspec.models.quants import KNOWN_QUANTS

MAX_DEPTH = 8  # folders below a place; the deepest layout read here (hub snapshots) needs 5
MAX_ENTRIES = 100_000  # directory entries looked at per place before giving up on the rest
OLLAMA_MODEL_LAYER = "application/vnd.ollama.image.model"
OLLAMA_DEFAULT = ("registry.ollama.ai", "library")
SPLIT_RE = re.compile(r"^(?P<stem>.+)-(?P<part>\d{5})-of-(?P<parts>\d{5})\.gguf$", re.IGNORECASE)
# Longest names first, so Q4_K_M is taken whole rather than as Q4_K followed by "_M".
QUANT_RE = re.compile(r"(?<![A-Za-z0-9])(" + "|".join(sorted(map(re.escape, KNOWN_QUANTS), key=len, reverse=True))
                      + r")(?![A-Za-z0-9])", re.IGNORECASE)
NOT_MODELS = {"mmproj": "a vision projector (mmproj), not a model", "adapter": "a LoRA adapter, not a model",
              "clip": "a vision projector (mmproj), not a model", "imatrix": "an importance matrix, not a model"}


@dataclass(frozen=True)
class Place:
    """A folder to look in: which tool's layout it has and how it was chosen (shown to the user)."""

    store: str  # huggingface | llama.cpp | lmstudio | ollama | folder
    path: Path
    why: str  # "HF_HUB_CACHE", "~/.cache/huggingface/hub", "--scan", "model_dir"


@dataclass(frozen=True)
class Found:
    """One usable GGUF model file (for a split model: its first part, with the size of all parts)."""

    path: Path
    place: Place
    group: tuple  # files with the same group are quants of one model
    label: str  # what to call the model (made into a spec name by `model_name`)
    quant: str | None
    size: int
    meta: dict[str, Any]
    repo: str | None = None  # a Hugging Face cache file: repo, commit and file inside the repo
    revision: str | None = None
    file: str | None = None
    tag: str | None = None  # an Ollama model: its tag, e.g. llama3.2:1b
    parts: int = 1  # a split model's number of files (-00001-of-00003.gguf)


@dataclass
class Scan:
    found: list[Found] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # skipped folders and files, limits reached
    counts: dict[Place, int] = field(default_factory=dict)  # usable files per place (missing place: absent)
    again: dict[Place, int] = field(default_factory=dict)  # files a place shares with a place before it


def places(env: Mapping[str, str], model_dir: Path | None = None, extra: list[Path] = ()) -> list[Place]:
    """Every place to look, in the order a file found twice is credited to (the first)."""
    home = Path(env.get("HOME") or Path.home())
    cache = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else home / ".cache"
    out = [Place("folder", Path(p), "--scan") for p in extra]
    if model_dir is not None:
        out.append(Place("folder", model_dir, "model_dir"))
    hub = ((Path(env["HF_HUB_CACHE"]), "HF_HUB_CACHE") if env.get("HF_HUB_CACHE")
           else (Path(env["HF_HOME"]) / "hub", "HF_HOME") if env.get("HF_HOME")
           else (cache / "huggingface" / "hub", "~/.cache/huggingface/hub"))
    out.append(Place("huggingface", *hub))
    out.append(Place("llama.cpp", *((Path(env["LLAMA_CACHE"]), "LLAMA_CACHE") if env.get("LLAMA_CACHE")
                                   else (cache / "llama.cpp", "~/.cache/llama.cpp"))))
    if env.get("LMSTUDIO_MODELS"):
        out.append(Place("lmstudio", Path(env["LMSTUDIO_MODELS"]), "LMSTUDIO_MODELS"))
    out += [Place("lmstudio", home / ".lmstudio" / "models", "~/.lmstudio/models"),
            Place("lmstudio", cache / "lm-studio" / "models", "~/.cache/lm-studio/models")]
    out.append(Place("ollama", *((Path(env["OLLAMA_MODELS"]), "OLLAMA_MODELS") if env.get("OLLAMA_MODELS")
                                else (home / ".ollama" / "models", "~/.ollama/models"))))
    return out


def scan(where: list[Place]) -> Scan:
    """Every usable GGUF file in `where`; a file reached twice (a link, an alias tag) counts once."""
    result, seen = Scan(), set()
    for place in where:
        if not place.path.is_dir():
            continue
        before, again = len(result.found), 0
        for found in _scan_place(place, result.notes):
            real = os.path.realpath(found.path)
            if real not in seen:
                seen.add(real)
                result.found.append(found)
            else:
                again += 1
        result.counts[place] = len(result.found) - before
        result.again[place] = again
    return result


def _scan_place(place: Place, notes: list[str]) -> Iterator[Found]:
    if place.store == "ollama":
        yield from _ollama(place, notes)
        return
    hub_dirs = [d for d in _subdirs(place.path, notes) if d.name.startswith("models--")]
    for repo_dir in hub_dirs:
        yield from _hub_repo(place, repo_dir, notes)
    if place.store == "huggingface":
        return
    skip = {d.resolve() for d in hub_dirs}
    for path in _walk(place.path, notes, skip):
        found = _file(place, path, notes, group=("dir", str(path.parent)),
                      label=_label(place, path))
        if found is not None:
            yield found


# --- the Hugging Face hub cache ---------------------------------------------------------------

def _hub_repo(place: Place, repo_dir: Path, notes: list[str]) -> Iterator[Found]:
    """The GGUF files of one cached repo: each file from the snapshot `main` points at, else
    from the newest snapshot holding it."""
    repo = repo_dir.name.removeprefix("models--").replace("--", "/", 1)
    main = _read_text(repo_dir / "refs" / "main")
    snapshots = sorted(_subdirs(repo_dir / "snapshots", notes),
                       key=lambda d: (d.name != main, -_mtime(d)))
    chosen: dict[str, tuple[str, Path]] = {}
    for snap in snapshots:
        for path in _walk(snap, notes):
            chosen.setdefault(path.relative_to(snap).as_posix(), (snap.name, path))
    stems = {_stem_of(Path(name).name) for name in chosen}
    label = re.sub(r"[-_.]gguf$", "", repo.rpartition("/")[2], flags=re.IGNORECASE)
    for name, (revision, path) in sorted(chosen.items()):
        found = _file(place, path, notes, group=("hf", repo, revision), label=label if len(stems) == 1 else None,
                      repo=repo, revision=revision, file=name)
        if found is not None:
            yield found


def hub_cache(env: Mapping[str, str]) -> Path:
    """The Hugging Face hub cache folder the environment names (as huggingface_hub finds it)."""
    return next(p.path for p in places(env) if p.store == "huggingface")


def cached_hub_file(repo: str, filename: str, revision: str | None, env: Mapping[str, str]) -> Path | None:
    """`filename` of `repo` at `revision` (a commit, or a branch the cache has a ref for) in the
    local hub cache, or None. Read by hand: planning must not import huggingface_hub."""
    repo_dir = hub_cache(env) / f"models--{repo.replace('/', '--')}"
    rev = revision or "main"
    if not re.fullmatch(r"[0-9a-f]{40}", rev):
        rev = _read_text(repo_dir / "refs" / rev)
        if not rev:
            return None
    path = repo_dir / "snapshots" / rev / filename
    return path if path.is_file() else None


# --- Ollama -----------------------------------------------------------------------------------

def _ollama(place: Place, notes: list[str]) -> Iterator[Found]:
    manifests = place.path / "manifests"
    # Aliases ("latest" beside "3b") point at the same blob: the named tag is credited first.
    for manifest in sorted(_walk(manifests, notes, suffix=None), key=lambda p: (p.name == "latest", str(p))):
        parts = manifest.relative_to(manifests).parts
        if len(parts) != 4:
            continue
        registry, namespace, model, tag = parts
        try:
            layers = json.loads(manifest.read_text(encoding="utf-8")).get("layers") or []
            digest = next(layer["digest"] for layer in layers if layer.get("mediaType") == OLLAMA_MODEL_LAYER)
        except (OSError, ValueError, StopIteration, KeyError, TypeError, AttributeError):
            notes.append(f"{manifest}: not an Ollama manifest with a model layer, skipped")
            continue
        blob = place.path / "blobs" / digest.replace(":", "-")
        if not blob.is_file():
            notes.append(f"{manifest}: its model blob {blob.name} is missing, skipped")
            continue
        name = model if (registry, namespace) == OLLAMA_DEFAULT else (
            f"{namespace}/{model}" if registry == OLLAMA_DEFAULT[0] else f"{registry}/{namespace}/{model}")
        full = f"{name}:{tag}"
        base = name if tag == "latest" else f"{name}-{_strip_quant(tag)}"
        found = _file(place, blob, notes, group=("ollama", base), label=base, tag=full)
        if found is not None:
            yield found


# --- one file ---------------------------------------------------------------------------------

def _file(place: Place, path: Path, notes: list[str], group: tuple, label: str | None, **extra) -> Found | None:
    """What `path` is, or None (with a note when it is not a usable model file)."""
    split = SPLIT_RE.match(path.name)
    if split and int(split["part"]) != 1:
        return None  # a later part of a split model: its first part stands for it
    try:
        fields, parameters = read_header(path)
    except (ValueError, OSError, struct.error) as exc:
        notes.append(f"{path}: not a readable GGUF file ({exc}), skipped")
        return None
    meta = metadata_of(fields, parameters)
    kind = fields.get("general.type") if fields.get("general.type") in NOT_MODELS else meta["architecture"]
    if kind in NOT_MODELS:
        notes.append(f"{path}: {NOT_MODELS[kind]}, skipped")
        return None
    size, parts = _sizes(path, split, notes)
    if size is None:
        return None
    quant = meta["file_type"] or _quant_in(extra.get("tag") or path.name)
    label = label or _strip_quant(split["stem"] if split else path.stem)
    return Found(path, place, (*group, _strip_quant(label), parameters), label, quant, size, meta, parts=parts,
                 **extra)


def _sizes(path: Path, split: re.Match | None, notes: list[str]) -> tuple[int | None, int]:
    """(bytes of the file, or of every part of a split model; its number of parts)."""
    if split is None:
        return path.stat().st_size, 1
    count = int(split["parts"])
    names = [f"{split['stem']}-{i:05d}-of-{split['parts']}.gguf" for i in range(1, count + 1)]
    missing = [n for n in names if not (path.parent / n).is_file()]
    if missing:
        notes.append(f"{path}: split model with {len(missing)} of its {count} parts missing "
                     f"(first missing: {missing[0]}), skipped")
        return None, count
    return sum((path.parent / n).stat().st_size for n in names), count


def _quant_in(name: str) -> str | None:
    match = QUANT_RE.search(name)
    return next((q for q in KNOWN_QUANTS if q.lower() == match[1].lower()), None) if match else None


def _strip_quant(text: str) -> str:
    """A file or tag name without its quant: `gemma-3-270m-q4_k_m` and `gemma-3-270m.Q8_0` are both
    `gemma-3-270m`, so they land in one [[models]] entry."""
    stripped = re.sub(r"[-_.]?" + QUANT_RE.pattern, "", text, flags=re.IGNORECASE).strip("-_. ")
    return stripped or text


def _stem_of(name: str) -> str:
    split = SPLIT_RE.match(name)
    return _strip_quant(split["stem"] if split else Path(name).stem)


def _label(place: Place, path: Path) -> str:
    """llama.cpp's cache names files `<org>_<repo>_<file>.gguf`: the file part names the model."""
    split = SPLIT_RE.match(path.name)
    stem = split["stem"] if split else path.stem
    if place.store == "llama.cpp":
        match = re.match(r"^[^_]+_.+?-GGUF_(.+)$", stem, flags=re.IGNORECASE)
        stem = match[1] if match else stem
    return _strip_quant(stem)


def model_name(label: str) -> str:
    """A spec model name (letters, digits, '.', '_', '-') from a label such as `llama3.2:1b`."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-._")
    return re.sub(r"-{2,}", "-", name) or "model"


# --- bounded walking --------------------------------------------------------------------------

def _walk(root: Path, notes: list[str], skip: set[Path] = frozenset(), suffix: str | None = ".gguf") -> Iterator[Path]:
    """Files under root ending in `suffix` (any with None), depth-first, in name order. Symlinked
    files are followed (the hub's snapshots are links); symlinked folders are not (no loops)."""
    budget = MAX_ENTRIES
    stack = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        entries = _entries(folder, notes)
        budget -= len(entries)
        if budget < 0:
            notes.append(f"{root}: stopped after {MAX_ENTRIES:,} entries; name a narrower folder with --scan")
            return
        subfolders = []
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if depth < MAX_DEPTH and entry.name != ".git" and Path(entry.path).resolve() not in skip:
                        subfolders.append((Path(entry.path), depth + 1))
                elif (suffix is None or entry.name.lower().endswith(suffix)) and entry.is_file():
                    yield Path(entry.path)
            except OSError:
                continue  # vanished meanwhile, or a broken link
        stack.extend(reversed(subfolders))


def _entries(folder: Path, notes: list[str]) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except PermissionError:
        notes.append(f"{folder}: not readable (permission denied), skipped")
    except OSError as exc:
        notes.append(f"{folder}: not readable ({exc.strerror or exc}), skipped")
    return []


def _subdirs(folder: Path, notes: list[str]) -> list[Path]:
    if not folder.is_dir():
        return []
    return [Path(e.path) for e in _entries(folder, notes) if e.is_dir(follow_symlinks=False)]


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
