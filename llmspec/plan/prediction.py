"""Decode and prompt speed predicted before measuring, from this host's bandwidth and its own results.

A token takes file bytes / (bandwidth x 65 %) (60-80 % of the roofline is normal on a CPU) plus a
fixed cost per token, which this host's measured single-user results calibrate where it has any
(the median of measured seconds per token minus the roofline's: tiny models spend most of their
time there, so calibrating the efficiency on them would make every large model look 3x slower
than it is).

Prompt speed: this host's effective FLOP rate over 2 x the weights a prompt token is multiplied
through (`prompt_parameters`): not the embedding table, whose rows a prompt only looks up, nor the
output matrix, which llama-server applies to a prompt's last token only. Counting them made
gemma-3-270m (262k-token vocabulary: 168 M of its 268 M parameters are the table) look twice as
heavy as SmolLM2-135M, when both multiply through about 100 M per token (demo: -33 % and +116 %
errors before, see `calibrate`). The rate comes from this host's measured prompt speeds, of the
same quant type where it has one (llama.cpp's matrix kernels differ by type: SmolLM2 Q4_1 204 t/s,
Q8_0 355 on the demo host), else the median of all; none without a measured one.

On a GPU the same roofline holds with the GPU's memory bandwidth, looked up by its name
(`machine.gpu_bandwidth`, sourced): uncalibrated, and said so, until this host has results with
every layer offloaded (`gpu_layers_share` 1), whose per-token cost then calibrates it as the CPU's
results do. A partial offload reads its GPU layers, then its CPU layers, for every token: the two
times add up.

Each basis says what calibrated it and, with two or more configurations measured, the
leave-one-out error: every configuration predicted from the others' results against what it
measured, which is the error to expect for a model this host has not run yet.

`llmspec suggest` ranks the catalogue with it, and the runner stores it beside each measured
speed (`predicted_tokens_per_s`, `predicted_prompt_tokens_per_s`), so the report grades it.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_EFFICIENCY = 0.65  # share of the bandwidth bound decoding reaches (DESIGN: 60-80 %)


@dataclass(frozen=True)
class GpuSpeed:
    """The GPUs' memory bandwidth, looked up by name (`machine.gpu_bandwidth`), and the per-token cost
    beside it once this host has fully offloaded results (`calibrated`)."""

    shares: tuple[tuple[float, float], ...]  # per GPU: (share of the offloaded layers, GB/s)
    basis: str
    overhead_s: float = 0.0  # per token beside reading the weights, from this host's GPU results

    def seconds(self, nbytes: float, efficiency: float) -> float:
        """Reading `nbytes` spread over the GPUs by layer, one GPU after the other (llama.cpp's layer split)."""
        return sum(share * nbytes / (gbps * 1e9 * efficiency) for share, gbps in self.shares)

    def calibrated(self, results: list[dict]) -> GpuSpeed:
        """The same, plus the per-token cost this host's fully offloaded results show, as for the CPU."""
        extra = []
        for r in results:
            m, mf = r.get("metrics") or {}, r.get("model_file") or {}
            tps, size = m.get("server_tokens_per_s") or m.get("tokens_per_s"), mf.get("size")
            if _single_user(r) and m.get("gpu_layers_share") == 1 and tps and size:
                extra.append(((mf.get("name"), size, None), 1 / tps - self.seconds(size, DEFAULT_EFFICIENCY)))
        if not extra:
            return self
        overhead = max(0.0, statistics.median(v for _, v in extra))
        basis = self.basis.replace("uncalibrated (no GPU result on this host)",
                                   f"+ {overhead * 1e3:.1f} ms per token calibrated by {len(extra)} measured GPU "
                                   f"result(s) on this host{_loo_text(_decode_loo(extra, self.seconds))}")
        return GpuSpeed(self.shares, basis, overhead)


def gpu_speed(gpus: list | None) -> tuple[GpuSpeed | None, str]:
    """The GPUs' bandwidth from the table of known GPUs, or None and why not.

    The layers spread over the GPUs in proportion to their free memory (llama.cpp's default split)."""
    from llmspec.machine.gpu_bandwidth import lookup

    if not gpus:
        return None, "no GPU"
    found = [(g, lookup(g.name)) for g in gpus]
    unknown = [g.name for g, hit in found if hit is None]
    if unknown:
        return None, f"memory bandwidth of {', '.join(unknown)} not known (machine/gpu_bandwidth.py)"
    free = [g.memory_free_mb or 0 for g in gpus]
    weights = [f / sum(free) for f in free] if sum(free) else [1 / len(gpus)] * len(gpus)
    shares = tuple((w, hit[0]) for w, (_, hit) in zip(weights, found, strict=True))
    named = "; ".join(f"{g.name} {hit[0]:.0f} GB/s ({hit[1]})" for g, hit in found)
    return GpuSpeed(shares, f"GPU: {named}, {DEFAULT_EFFICIENCY:.0%} of the bound, uncalibrated (no GPU "
                            f"result on this host)"), ""


@dataclass(frozen=True)
class Speed:
    """How this host turns bandwidth into tokens: the figures and where each came from."""

    gbps: float | None  # measured copy bandwidth, GB/s
    basis: str  # where the bandwidth and the fixed cost come from
    overhead_s: float = 0.0  # per token beside reading the weights, from this host's results
    flops: float | None = None  # effective FLOP/s of prompt processing, from measured results
    prompt_basis: str = "no measured prompt speed on this host"
    efficiency: float = DEFAULT_EFFICIENCY
    flops_by_type: dict[str, float] = field(default_factory=dict)  # the same, per quant type measured
    gpu: GpuSpeed | None = None
    gpu_note: str = "no GPU"  # why the GPU's speed is not predicted, when it is not

    def decode(self, size_bytes: int, gpu_bytes: float = 0.0) -> float | None:
        """Tokens/s reading `size_bytes` of weights per token, `gpu_bytes` of them from the GPUs'
        memory (offloaded layers). The GPU part and the CPU part run one after the other for each
        token (llama.cpp evaluates the layers in order), so their times add up: a partial offload
        is as slow as its two parts together, which the slower part dominates."""
        cpu_bytes = size_bytes - gpu_bytes
        if gpu_bytes and self.gpu is None or cpu_bytes > 0 and not self.gbps:
            return None
        seconds = self.gpu.overhead_s + self.gpu.seconds(gpu_bytes, self.efficiency) if gpu_bytes else 0.0
        if cpu_bytes > 0:
            seconds += self.overhead_s + cpu_bytes / (self.gbps * 1e9 * self.efficiency)
        return 1 / seconds if seconds > 0 else None

    def prompt(self, meta: dict | None) -> float | None:
        """Prompt tokens/s on the CPU for a model file's metadata (its quant type's rate where measured)."""
        meta = meta or {}
        rate = self.flops_by_type.get(meta.get("file_type") or "", self.flops)
        work = prompt_parameters(meta)
        return rate / (2 * work) if rate and work else None


def prompt_parameters(meta: dict | None) -> float | None:
    """The weights each prompt token is multiplied through: all parameters but the token embedding
    table (vocabulary x embedding; a prompt looks up its rows) and the output matrix, which
    llama-server applies to the last prompt token only. A model with a separate output tensor
    (untied embeddings) counts it in its parameters: the GGUF header says how big it is
    (`output_parameters`, 0 when tied). Where that is not known (the catalogue's facts, metadata
    read before llmspec kept it) an untied output still counts as work, and the prompt speed comes
    out low by its share (7 % for an 8B model with a 128k vocabulary)."""
    meta = meta or {}
    params = meta.get("parameters")
    if not params:
        return None
    rest = (params - (meta.get("vocab_size") or 0) * (meta.get("embedding_length") or 0)
            - (meta.get("output_parameters") or 0))
    return rest if rest > 0 else params


def calibrate(results: list[dict], gbps: float | None, bandwidth_basis: str, gpus: list | None = None) -> Speed:
    """Speed from this host's result files (`ok` ones with tokens_per_s and a model file size)."""
    extra, flops = [], []  # (configuration, value)
    for r in results:
        m, mf = r.get("metrics") or {}, r.get("model_file") or {}
        tps, size = m.get("server_tokens_per_s") or m.get("tokens_per_s"), mf.get("size")
        if not _single_user_cpu(r):
            continue
        config = (mf.get("name"), size, (mf.get("metadata") or {}).get("file_type") or mf.get("quant"))
        if gbps and tps and size:
            extra.append((config, 1 / tps - size / (gbps * 1e9 * DEFAULT_EFFICIENCY)))
        work = prompt_parameters(mf.get("metadata"))
        if m.get("prompt_tokens_per_s") and work:
            flops.append((config, m["prompt_tokens_per_s"] * 2 * work))
    bound = f"{bandwidth_basis}, {DEFAULT_EFFICIENCY:.0%} of the bound"
    overhead = max(0.0, statistics.median(v for _, v in extra)) if extra else 0.0
    basis = (f"{bound} + {overhead * 1e3:.1f} ms per token calibrated by {len(extra)} measured result(s) on this "
             f"host{_loo_text(_decode_loo(extra, lambda size, eff: size / (gbps * 1e9 * eff)))}" if extra
             else f"{bound}, uncalibrated (no measured result on this host)")
    by_type = {t: statistics.median(v for (_, _, q), v in flops if q == t) for (_, _, t) in {c for c, _ in flops} if t}
    prompt_basis = (f"FLOP rate over the weights a prompt token goes through (not the embedding table), from "
                    f"{len(flops)} measured prompt speed(s) on this host, of the same quant type where measured"
                    f"{_loo_text(_prompt_loo(flops))}" if flops else "no measured prompt speed on this host")
    gpu, gpu_note = gpu_speed(gpus)
    gpu = gpu.calibrated(results) if gpu else None
    return Speed(gbps, basis, overhead, statistics.median(v for _, v in flops) if flops else None, prompt_basis,
                 flops_by_type=by_type, gpu=gpu, gpu_note=gpu_note)


def _decode_loo(extra: list[tuple[tuple, float]], read_s) -> list[float]:
    """Each configuration's decode speed predicted from the other configurations' results, error in %.
    `read_s(size, efficiency)`: the seconds reading the weights takes (the roofline)."""
    errors = []
    for config in {c for c, _ in extra}:
        rest = [v for c, v in extra if c != config]
        if not rest:
            continue
        roofline = read_s(config[1], DEFAULT_EFFICIENCY)
        measured = 1 / (statistics.median(v for c, v in extra if c == config) + roofline)
        predicted = 1 / (max(0.0, statistics.median(rest)) + roofline)
        errors.append((predicted - measured) / measured * 100)
    return errors


def _prompt_loo(flops: list[tuple[tuple, float]]) -> list[float]:
    """Each configuration's prompt speed predicted from the others' (same quant type where there is
    one, as `Speed.prompt` does), error in %: the rates compare as the speeds do (same work)."""
    errors = []
    for config in {c for c, _ in flops}:
        rest = [(c, v) for c, v in flops if c != config]
        if not rest:
            continue
        same = [v for c, v in rest if c[2] == config[2]] or [v for _, v in rest]
        measured = statistics.median(v for c, v in flops if c == config)
        errors.append((statistics.median(same) - measured) / measured * 100)
    return errors


def _loo_text(errors: list[float]) -> str:
    if not errors:
        return " (one configuration: no leave-one-out error yet)"
    return (f"; leave-one-out error {min(errors):+.0f} % to {max(errors):+.0f} % over {len(errors)} "
            f"configurations")


def _single_user_cpu(result: dict) -> bool:
    """An `ok` single-user result (`_single_user`) with no GPU: what a CPU prediction is calibrated by."""
    metrics = result.get("metrics") or {}
    return _single_user(result) and not metrics.get("gpu_memory_used_gb") and not metrics.get("gpu_layers_share")


def _single_user(result: dict) -> bool:
    """An `ok` result of the default engine, one request at a time on one default server: what a
    suggestion predicts (a load test's per-user speed would mislead it)."""
    from llmspec.engines import DEFAULT
    from llmspec.profiles import PROFILES

    kind = PROFILES.get((result.get("cell") or {}).get("profile"))
    server = result.get("server") or {}
    return (result.get("status") == "ok" and kind is not None and kind.server_overrides is None and not kind.last
            and server.get("engine", DEFAULT) == DEFAULT)


class HostResults:
    """This host's result files, each parsed once and again only when it changed on disk.

    The runner predicts every cell's speed from all of this host's results; reading and parsing
    them all again per cell costs a run's length times the files. A file is re-read when its size
    inode or modification time changed, and a new one (the cell just measured) is read when it appears,
    so what a prediction sees is exactly what a fresh read would."""

    def __init__(self) -> None:
        self._files: dict[Path, tuple[tuple[int, int, int], dict | None]] = {}
        self.parsed = 0  # files parsed so far (read again only when they changed)

    def read(self, results_root: Path, host_dir: str) -> list[dict]:
        found = []
        for file in sorted((results_root / host_dir).glob("*/*/*/*.json")):
            try:
                st = file.stat()
            except OSError:
                continue
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            known = self._files.get(file)
            if known is None or known[0] != stamp:
                known = (stamp, _parse(file))
                self._files[file] = known
                self.parsed += 1
            if known[1] is not None:
                found.append(known[1])
        return found


KEPT = ("status", "cell", "server", "metrics", "model_file")  # what a prediction reads of a result


def _parse(file: Path) -> dict | None:
    """The parts of a result file a prediction reads: the samples (most of a file) are not kept."""
    try:
        found = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {k: found[k] for k in KEPT if k in found} if isinstance(found, dict) else None


def host_results(results_root: Path, host_dir: str, cache: HostResults | None = None) -> list[dict]:
    """Every result file of this host (all specs), read without validation, as far as a prediction
    reads it (`KEPT`); unreadable ones skipped."""
    return (cache or HostResults()).read(results_root, host_dir)


def for_host(results_root: Path, host_dir: str, cache: HostResults | None = None,
             gpus: list | None = None) -> Speed | None:
    """This host's prediction from its cached bandwidth figure and results; None without a figure."""
    from llmspec.machine import bandwidth

    cached = bandwidth.cached(results_root, host_dir)
    if cached is None:
        return None
    basis = f"{cached['copy_gbps']:.0f} GB/s measured {cached['measured_at'][:10]}"
    return calibrate(host_results(results_root, host_dir, cache), cached["copy_gbps"], basis, gpus)
