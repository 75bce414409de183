"""Smart termination: which cells not to run, decided before any server starts.

Pure functions of the spec, the host's memory and the results on disk (`Evidence`), so every
rule is unit-tested with result sets made in the test. The rules (docs/smart-termination.md):

1. memory pre-flight   estimated need (weights + KV cache + compute buffers, never below size x 1.2)
                       above what the host has or the spec allows; never below the peak seen when
                       the kernel killed this file's server (out of memory?) at this context or less
3. threshold failure   a smaller model already failed the interactive thresholds at this quant
4. quantization path   Q4, Q5 and Q6 all failed for this model, so Q8 will too
5. memory trend        peak RSS observed so far, fitted against file size, predicts no fit

(Rule 2, load failure, is observed at run time by the runner.) A skip is a result with
status "skipped", the reason and `skip_evidence` (what it rests on, without fluctuating
numbers); the planner compares that evidence with today's, so a skip is re-decided as soon as
the results it was based on change.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmspec.machine.gpu import GpuReading
from llmspec.models.memory import GB, KV_BYTES, OVERHEAD_BYTES, Estimate, estimate_memory  # noqa: F401 (re-exported)
from llmspec.models.quants import BITS_PER_WEIGHT
from llmspec.profiles import role
from llmspec.rating import best_label, rate_many
from llmspec.text import gb


@dataclass(frozen=True)
class Decision:
    rule: str | None  # None: run it; else memory | threshold | quant_path | memory_trend
    reason: str = ""
    evidence: str = ""  # what the decision rests on, fingerprinted (no fluctuating numbers)
    predicted_peak_gb: float | None = None

    @property
    def skip(self) -> bool:
        return self.rule is not None


@dataclass
class Evidence:
    """What is known when deciding: results on disk, model files, this host's memory."""

    limit_gb: float  # the smaller of available RAM and limits.max_memory_gb
    limit_text: str
    ratings: dict[tuple[str, str], str | None] = field(default_factory=dict)  # (model, quant) -> interactive label
    observed: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict)  # (file GB, peak RSS GB)
    sizes: dict[tuple[str, str], int] = field(default_factory=dict)  # file bytes, known or estimated
    meta: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    gpus: list[GpuReading] | None = None  # read only when a variant offloads layers (n_gpu_layers)
    killed: dict[tuple[str, str, int], float] = field(default_factory=dict)  # (model, quant, ctx) -> peak GB

    def killed_at(self, model: str, quant: str, ctx_size: int) -> float:
        """The most memory this file's server was seen to hold when killed at `ctx_size` or a smaller
        context (a larger context needs at least as much); 0 when it never was."""
        return max((peak for (m, q, ctx), peak in self.killed.items() if (m, q) == (model, quant) and ctx <= ctx_size),
                   default=0.0)


def derived_size(base_bytes: int, base_quant: str, quant: str) -> int | None:
    if base_quant not in BITS_PER_WEIGHT or quant not in BITS_PER_WEIGHT:
        return None
    return int(base_bytes * BITS_PER_WEIGHT[quant] / BITS_PER_WEIGHT[base_quant])


def fit_memory(observed: list[tuple[float, float]]) -> tuple[float, float] | None:
    """Least-squares peak RSS = a * file size + b; one point gives a ratio through the origin."""
    if not observed:
        return None
    if len({x for x, _ in observed}) < 2:
        x, y = observed[-1]
        return (y / x, 0.0) if x > 0 else None
    n = len(observed)
    mx = sum(x for x, _ in observed) / n
    my = sum(y for _, y in observed) / n
    sxx = sum((x - mx) ** 2 for x, _ in observed)
    a = sum((x - mx) * (y - my) for x, y in observed) / sxx
    return a, my - a * mx


def decide(model, quant: str, ev: Evidence, ctx_size: int, larger_than,
           cache_types: tuple[str | None, str | None] = (None, None), n_gpu_layers: int | str | None = None,
           overhead_bytes: float = OVERHEAD_BYTES) -> Decision:
    """The first rule that says skip, or run. `larger_than(other_model) -> bool` orders sizes."""
    size = ev.sizes.get((model.name, quant))
    prediction = _predict(ev, size)
    if size is not None:
        misfit = memory_check(size, ev.meta.get((model.name, quant)), ctx_size, ev.limit_gb, ev.limit_text,
                              cache_types, n_gpu_layers, ev.gpus, overhead_bytes,
                              ev.killed_at(model.name, quant, ctx_size))
        if misfit is not None:
            return Decision(misfit[0], misfit[1], misfit[0], prediction)
    for (other, other_quant), label in sorted(ev.ratings.items()):
        if other_quant == quant and other != model.name and label == "Failed" and larger_than(other):
            return Decision("threshold", f"the smaller {other} already failed the interactive thresholds at "
                                         f"{quant}; a larger model at the same quant would too",
                            f"threshold:{other}@{quant}", prediction)
    if quant == "Q8_0":
        failed = _failed_q456(model, ev)
        if failed:
            return Decision("quant_path", f"{', '.join(failed)} all failed the interactive thresholds for "
                                          f"{model.name}; Q8_0 is slower still", f"quant_path:{','.join(failed)}",
                            prediction)
    if prediction is not None and prediction > ev.limit_gb:
        return Decision("memory_trend", f"predicted peak memory {gb(prediction)} from {len(ev.observed)} measured "
                                        f"configuration(s) exceeds {ev.limit_text}", "memory_trend", prediction)
    return Decision(None, predicted_peak_gb=prediction)


def memory_limit(available_gb: float, max_memory_gb: float | None) -> tuple[float, str]:
    """(GB a server may take, how to say where that figure comes from): the RAM available now,
    or `limits.max_memory_gb` where the spec sets less."""
    if max_memory_gb is not None and max_memory_gb < available_gb:
        return max_memory_gb, f"limits.max_memory_gb = {max_memory_gb:g}"
    return available_gb, f"the {available_gb:.1f} GB of RAM available"


def memory_check(size_bytes: int, meta: dict[str, Any] | None, ctx_size: int, limit_gb: float, limit_text: str,
                 cache_types: tuple[str | None, str | None] = (None, None), n_gpu_layers: int | str | None = None,
                 gpus: list[GpuReading] | None = None,
                 overhead_bytes: float = OVERHEAD_BYTES, killed_gb: float = 0.0) -> tuple[str, str] | None:
    """The memory pre-flight of one model file: None when it fits, else (rule, reason), the rule
    being "vram" (the offloaded part does not fit the GPUs) or "memory" (the rest does not fit
    `limit_gb`). The planner asks it before starting a server; `llmspec init` before listing a file.
    `overhead_bytes`: the engine's own runtime beside weights and KV cache (`Engine.overhead_bytes`).
    `killed_gb`: the peak seen when this file's server was killed (out of memory?): the need is at least
    that, whatever the estimate says (`Evidence.killed_at`)."""
    est = estimate_memory(size_bytes, meta, ctx_size, cache_types, overhead_bytes)
    split = _split(est, meta, n_gpu_layers, gpus)
    if split is not None and split[0] is not None:
        return "vram", split[0]
    host_gb, detail = (split[1], f"the part left in RAM of {est.detail}") if split else (est.total_gb, est.detail)
    if killed_gb > host_gb:
        host_gb, detail = killed_gb, f"its server was killed (out of memory?) holding {gb(killed_gb)} before"
    if host_gb > limit_gb:
        return "memory", f"needs about {gb(host_gb)} ({detail}), more than {limit_text}"
    return None


def _split(est: Estimate, meta: dict[str, Any] | None, n_gpu_layers: int | str | None,
           gpus: list[GpuReading] | None) -> tuple[str | None, float] | None:
    """For a variant that offloads layers to a GPU nvidia-smi sees: (why it would not fit in the
    GPUs' free memory or None, the GB left in host RAM). The estimate splits by layer: the
    offloaded layers' weights and KV cache and the compute buffers on the GPU, the rest in RAM.
    None when nothing is offloaded, no GPU answered or the file does not say its layer count."""
    if n_gpu_layers in (None, 0) or not gpus or not (meta or {}).get("layers"):
        return None
    from llmspec.machine.gpu import offload_split, offloaded_layers, vram_check

    layers = meta["layers"]
    vram, ram = offload_split(layers, n_gpu_layers, int(est.weights_bytes), est.kv_bytes, OVERHEAD_BYTES)
    detail = f"{offloaded_layers(layers, n_gpu_layers)} of {layers} layers with their KV cache + compute buffers"
    return vram_check(vram, gpus, detail), ram / GB


def need_text(size_bytes: int, meta: dict[str, Any] | None, ctx_size: int, cache_types, n_gpu_layers,
              gpus: list[GpuReading] | None, overhead_bytes: float = OVERHEAD_BYTES, killed_gb: float = 0.0) -> str:
    """What `llmspec plan` shows: "0.31 GB", or "0.24 GB GPU + 0.07 GB RAM" for an offloading variant;
    "1.20 GB (killed at)" where its server was killed holding more than the estimate (`memory_check`)."""
    est = estimate_memory(size_bytes, meta, ctx_size, cache_types, overhead_bytes)
    split = _split(est, meta, n_gpu_layers, gpus)
    if split is None:
        return f"{killed_gb:.2f} GB (killed at)" if killed_gb > est.total_gb else f"{est.total_gb:.2f} GB"
    from llmspec.machine.gpu import offload_split

    vram, _ = offload_split(meta["layers"], n_gpu_layers, int(est.weights_bytes), est.kv_bytes, OVERHEAD_BYTES)
    return f"{vram / GB:.2f} GB GPU + {split[1]:.2f} GB RAM"


def _predict(ev: Evidence, size: int | None) -> float | None:
    fit = fit_memory(list(ev.observed.values()))
    if fit is None or size is None:
        return None
    a, b = fit
    return max(0.0, a * size / GB + b)


def _failed_q456(model, ev: Evidence) -> list[str]:
    """Q4*, Q5* and Q6* quants of this model, if each level was measured and every one failed."""
    levels = {level: [q for q in model.quants if q.startswith(level)] for level in ("Q4", "Q5", "Q6")}
    if not all(levels.values()):
        return []
    labels = {q: ev.ratings.get((model.name, q)) for qs in levels.values() for q in qs}
    return sorted(labels) if all(label == "Failed" for label in labels.values()) else []


def interactive_labels(stored: dict, thresholds) -> dict:
    """(model, quant) -> the best label among its variants' stored results of the profile whose
    ratings drive the skips (the `skip_judge` role: interactive; None: none measured), rated in
    one `rate_many` call, the function the report uses."""
    judge = role("skip_judge")
    measured = [(key, r) for key, results in stored.items() for c, r in results.items()
                if judge is not None and c.profile == judge.name and r is not None and r.ok]
    ratings = rate_many([(judge.name, r.figures()) for _, r in measured], thresholds)
    labels: dict = {key: [] for key in stored}
    for (key, _), rating in zip(measured, ratings):
        labels[key].append(rating.label)
    return {key: best_label(found) for key, found in labels.items()}
