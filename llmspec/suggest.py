"""`llmspec suggest`: which catalogue models and quants are worth downloading for this host and use.

Each (model, quant) of the catalogue goes through the planner's memory pre-flight at the use's
context (`plan.termination.memory_check`, GPU offload included) and the free disk; what fits gets
a predicted decode speed from the memory-bandwidth roofline: a token takes file bytes / (bandwidth x
65 %) (60-80 % of the bound is normal on a CPU) plus a fixed cost per token, which this host's own
measured results calibrate where it has any (the median of measured seconds per token minus the
roofline's; tiny models spend most of their time there, so calibrating the efficiency on them would
make every large model look 3x slower than it is); on a GPU the same bound from the GPU's published
bandwidth, uncalibrated; a predicted prompt speed where this host measured one (its effective FLOP
rate over the weights a prompt token is multiplied through, `plan.prediction`); and the quality cost of the
quant from llama.cpp's published KL-divergence scale. Each model gets the most precise quant that
still reaches `SPEED_TARGET`, models are ranked largest first, and the few best make the
shortlist; the rest say why not.

Everything is read from the bundled catalogue, this host's cached bandwidth figure and result
files: no network, and well under a second.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from llmspec.catalogue.entry import Entry
from llmspec.errors import UserError
from llmspec.models.memory import GB
from llmspec.models.quants import BITS_PER_WEIGHT
from llmspec.plan.prediction import Speed, calibrate, host_results  # noqa: F401 (re-exported)
from llmspec.plan.termination import estimate_memory, memory_check
from llmspec.starter import CTX_SIZE, LONG_SIZES, USES, Host, _profile, line, size_class

SPEED_TARGET = 10.0  # decode tokens/s a person reads along with comfortably; below it a row says "slow"
SHORTLIST = 5
MARGIN = 0.1  # room a suggestion keeps beyond the estimate (which is within 5 % of the demo's peaks)
# Mean KL divergence against FP16, LLaMA 3 8B on wikitext-2, no importance matrix (llama.cpp's
# scoreboard). Other models lose more or less at the same quant; the order and the bands hold.
KLD = {"F16": 0.0, "BF16": 0.0, "Q8_0": 0.001391, "Q6_K": 0.005669, "Q5_K_M": 0.011093, "Q5_K_S": 0.017177,
       "Q5_1": 0.018485, "Q5_0": 0.022964, "Q4_K_M": 0.032032, "Q4_K_S": 0.044040, "Q4_1": 0.072530,
       "Q4_0": 0.073598, "Q3_K_L": 0.088558, "Q3_K_M": 0.103797, "Q3_K_S": 0.236401, "Q2_K": 0.457258}
KLD_SOURCE = ("llama.cpp tools/perplexity/README.md, LLaMA 3 8B scoreboard (mean KLD vs FP16, wikitext-2): "
              "https://github.com/ggml-org/llama.cpp/blob/master/tools/perplexity/README.md")
KLD_WORDS = ((0.01, "negligible"), (0.05, "small"), (0.15, "moderate"), (0.5, "large"), (float("inf"), "severe"))


def quality_cost(quant: str) -> tuple[float | None, str]:
    kld = KLD.get(quant)
    if kld is None:
        return None, "unknown"
    return kld, next(word for bound, word in KLD_WORDS if kld < bound)


@dataclass
class Candidate:
    entry: Entry
    quant: str
    size: int
    ctx_size: int
    need_gb: float
    room_gb: float  # what is left of the limit (RAM, or the GPU's free memory) once loaded
    where: str  # "CPU" or "GPU"
    decode_tps: float | None
    prompt_tps: float | None
    kld: float | None
    cost: str

    @property
    def slow(self) -> bool:
        return self.decode_tps is not None and self.decode_tps < SPEED_TARGET


@dataclass
class Suggestion:
    shortlist: list[Candidate]
    others: list[Candidate]  # fit, but a larger/faster pick of the same size class or model came first
    unfit: list[tuple[Entry, str]]  # model, why none of its quants was suggested
    speed: Speed
    uses: tuple[str, ...]


def use_ctx(uses: tuple[str, ...], entry: Entry) -> int:
    """The context a use runs at: the long-context test's longest size the model was trained for."""
    if "long-context" in uses:
        return max([s for s in LONG_SIZES if s <= entry.architecture.context_length] or [CTX_SIZE])
    return CTX_SIZE


def suits(entry: Entry, uses: tuple[str, ...]) -> str | None:
    """Why the model does not serve these uses, or None."""
    if not entry.capabilities.chat_template:
        return "no chat template (a base model)"
    if {"agent"} & set(uses) and not entry.capabilities.tools:
        return "its chat template declares no tools"
    if "long-context" in uses and entry.architecture.context_length < 32768:
        return f"trained for {entry.architecture.context_length} tokens, less than 32768"
    return None


def evaluate(entries: list[Entry], host: Host, uses: tuple[str, ...], speed: Speed,
             disk_free_gb: float) -> Suggestion:
    picked, others, unfit = [], [], []
    for entry in entries:
        why = suits(entry, uses)
        if why:
            unfit.append((entry, why))
            continue
        fitting, reasons = [], []
        for quant, f in sorted(entry.files.items(), key=lambda kv: -BITS_PER_WEIGHT.get(kv[0], 0)):
            if f.size / GB > disk_free_gb:
                reasons.append(f"{quant}: the {f.size / 1e9:.1f} GB download exceeds the {disk_free_gb:.1f} GB "
                               f"free disk")
                continue
            c, reason = _fit(entry, quant, f.size, host, uses, speed)
            if c and c.room_gb < MARGIN * c.need_gb:
                c, reason = None, (f"needs about {c.need_gb:.1f} GB on the {c.where}, leaving under "
                                   f"{MARGIN:.0%} of that to spare")
            (fitting.append(c) if c else reasons.append(f"{quant}: {reason}"))
        if not fitting:
            unfit.append((entry, reasons[-1] if reasons else "no file"))
            continue
        fast = [c for c in fitting if not c.slow]
        best = fast[0] if fast else fitting[-1]  # the most precise fast one, else the smallest
        picked.append(best)
        others += [c for c in fitting if c is not best]
    picked.sort(key=lambda c: (c.where != "GPU", c.slow, -(c.decode_tps or 0) if c.slow else -c.entry.parameters,
                               c.kld or 0))
    shortlist, seen = [], {}
    for c in picked:  # the few best per size class: at most two models of one class
        cls = _size_bucket(c.entry.parameters)
        if seen.get(cls, 0) < 2 and len(shortlist) < SHORTLIST:
            shortlist.append(c)
            seen[cls] = seen.get(cls, 0) + 1
        else:
            others.append(c)
    return Suggestion(shortlist, others, unfit, speed, uses)


def _size_bucket(parameters: int) -> str:
    return next(name for bound, name in ((1.5e9, "tiny"), (4.5e9, "small"), (10e9, "medium"), (float("inf"), "large"))
                if parameters < bound)


def _fit(entry: Entry, quant: str, size: int, host: Host, uses, speed: Speed) -> tuple[Candidate | None, str]:
    meta = {**entry.meta, "file_type": quant}
    ctx = use_ctx(uses, entry)
    need = estimate_memory(size, meta, ctx).total_gb
    kld, cost = quality_cost(quant)
    if host.gpus:
        if memory_check(size, meta, ctx, host.limit_gb, host.limit_text, n_gpu_layers="all", gpus=host.gpus) is None:
            free = sum(g.memory_free_mb or 0 for g in host.gpus) * 2**20 / GB
            return Candidate(entry, quant, size, ctx, need, free - need, "GPU", speed.decode(size, gpu_bytes=size),
                             None, kld, cost), ""
    problem = memory_check(size, meta, ctx, host.limit_gb, host.limit_text)
    if problem:
        return None, problem[1]
    return Candidate(entry, quant, size, ctx, need, host.limit_gb - need, "CPU", speed.decode(size),
                     speed.prompt(meta), kld, cost), ""


# --- output ---------------------------------------------------------------------------------------

def table(s: Suggestion) -> list[tuple[str, ...]]:
    rows = [("model", "quant", "download", "fits (room)", "decode t/s", "prompt t/s", "quality cost")]
    for c in s.shortlist:
        rows.append((c.entry.name, c.quant, f"{c.size / 1e9:.1f} GB", f"{c.where} {c.need_gb:.1f} GB "
                     f"({c.room_gb:.1f} GB left)", _tps(c.decode_tps) + (" slow" if c.slow else ""),
                     _tps(c.prompt_tps), f"{c.cost}" + (f" (KLD {c.kld:.3f})" if c.kld else "")))
    return rows


def _tps(value: float | None) -> str:
    return f"~{value:.0f}" if value is not None else "-"


def notes(s: Suggestion) -> list[str]:
    out = [f"decode: bandwidth roofline, {s.speed.basis}; prompt: {s.speed.prompt_basis}",
           f"quality cost: mean KL divergence of the quant on LLaMA 3 8B ({KLD_SOURCE})"]
    if any(c.where == "GPU" for c in s.shortlist):
        out.append(f"GPU rows: decode from the {s.speed.gpu.basis}; prompt not predicted (no GPU result on this "
                   f"host); measure them" if s.speed.gpu else
                   f"GPU rows: speed not predicted ({s.speed.gpu_note}); measure them")
    for entry, why in s.unfit:
        out.append(f"not suggested: {entry.name}: {why}")
    return out


def write_spec(name: str, root: Path, s: Suggestion, host: Host) -> Path:
    """specs/<name>.toml with the shortlist as repo/file entries, checked like `llmspec init`'s."""
    import re

    from llmspec.plan.planner import Plan
    from llmspec.spec import spec_from_text
    from llmspec.spec.schema import NAME_RE

    if not re.match(NAME_RE, name):
        raise UserError(f"suggest --write: {name!r} is not a spec name (letters, digits, '.', '_' and '-')")
    if not s.shortlist:
        raise UserError("suggest --write: nothing fits this host, so there is no spec to write")
    target = root / "specs" / f"{name}.toml"
    if not target.parent.is_dir():
        raise UserError(f"suggest --write: {target.parent} does not exist; run it in the project folder")
    if target.exists():
        raise UserError(f"suggest --write: specs/{name}.toml already exists; choose another name or remove it")
    text = render_spec(name, s, host)
    spec = spec_from_text(text, target)
    Plan(spec)
    with open(target, "x", encoding="utf-8") as fh:
        fh.write(text)
    return target


def render_spec(name: str, s: Suggestion, host: Host) -> str:
    from llmspec.profiles import ORDER

    profiles = [p for p in ORDER if any(p in USES[u] for u in s.uses)]
    ctx = max(c.ctx_size for c in s.shortlist)
    gpu = all(c.where == "GPU" for c in s.shortlist)
    out = ["#:schema ./llmspec.schema.json",
           f"# Written by `llmspec suggest --use {','.join(s.uses)} --write {name}`: the catalogue's best candidates",
           f"# for this host ({host.cpu}, {host.ram_gb:.0f} GB RAM, GPU: {host.gpu_note}). Downloads happen when",
           f"# cells run (size and disk checked then). Measure with `doit spec={name}`.",
           line("description", f"Suggested for {', '.join(s.uses)}"), "", "[server]",
           line("ctx_size", ctx, "the context the suggestion's memory check assumed")]
    if gpu:
        out.append(line("n_gpu_layers", "all", "every layer on the GPU"))
    out += ["", "[limits]"]
    out.append(line("max_memory_gb", host.memory_gb, "--memory-gb") if host.memory_gb is not None
               else f"# max_memory_gb = {host.available_gb:.0f}")
    out.append("")
    for profile in profiles:
        out += _profile(profile, host, []) + [""]
    for c in s.shortlist:
        f = c.entry.files[c.quant]
        pred = (f"predicted: {c.need_gb:.2f} GB" + (f", decode ~{c.decode_tps:.0f} t/s" if c.decode_tps else "")
                + f", quality cost {c.cost}")
        out += ["[[models]]", f"# {pred}", line("name", c.entry.name), line("size", size_class(c.entry.parameters)),
                line("quants", [c.quant]), line("repo", c.entry.repo), f'files = {{ {c.quant} = "{f.file}" }}', ""]
    return "\n".join(out).rstrip("\n") + "\n"


def disk_free_gb(path: Path) -> float:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return shutil.disk_usage(probe).free / GB
