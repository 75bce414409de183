"""Decode and prompt speed predicted before measuring, from this host's bandwidth and its own results.

A token takes file bytes / (bandwidth x 65 %) (60-80 % of the roofline is normal on a CPU) plus a
fixed cost per token, which this host's measured single-user results calibrate where it has any
(the median of measured seconds per token minus the roofline's: tiny models spend most of their
time there, so calibrating the efficiency on them would make every large model look 3x slower
than it is). Prompt speed: this host's effective FLOP rate (measured prompt tokens/s x 2 x
parameters, median) over 2 x parameters per token; none without a measured one.

`llmspec suggest` ranks the catalogue with it, and the runner stores it beside each measured
speed (`predicted_tokens_per_s`, `predicted_prompt_tokens_per_s`), so the report grades it.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

DEFAULT_EFFICIENCY = 0.65  # share of the bandwidth bound decoding reaches (DESIGN: 60-80 %)


@dataclass(frozen=True)
class Speed:
    """How this host turns bandwidth into tokens: the figures and where each came from."""

    gbps: float | None  # measured copy bandwidth, GB/s
    basis: str  # where the bandwidth and the fixed cost come from
    overhead_s: float = 0.0  # per token beside reading the weights, from this host's results
    flops: float | None = None  # effective FLOP/s of prompt processing, from measured results
    prompt_basis: str = "no measured prompt speed on this host"
    efficiency: float = DEFAULT_EFFICIENCY

    def decode(self, size_bytes: int) -> float | None:
        if not self.gbps:
            return None
        return 1 / (self.overhead_s + size_bytes / (self.gbps * 1e9 * self.efficiency))

    def prompt(self, parameters: int) -> float | None:
        return self.flops / (2 * parameters) if self.flops and parameters else None


def calibrate(results: list[dict], gbps: float | None, bandwidth_basis: str) -> Speed:
    """Speed from this host's result files (`ok` ones with tokens_per_s and a model file size)."""
    extra, flops = [], []
    for r in results:
        m, mf = r.get("metrics") or {}, r.get("model_file") or {}
        tps, size = m.get("server_tokens_per_s") or m.get("tokens_per_s"), mf.get("size")
        params = (mf.get("metadata") or {}).get("parameters")
        if not _single_user_cpu(r):
            continue
        if gbps and tps and size:
            extra.append(1 / tps - size / (gbps * 1e9 * DEFAULT_EFFICIENCY))
        if m.get("prompt_tokens_per_s") and params:
            flops.append(m["prompt_tokens_per_s"] * 2 * params)
    bound = f"{bandwidth_basis}, {DEFAULT_EFFICIENCY:.0%} of the bound"
    overhead = max(0.0, statistics.median(extra)) if extra else 0.0
    basis = (f"{bound} + {overhead * 1e3:.1f} ms per token calibrated by {len(extra)} measured result(s) on this "
             f"host" if extra else f"{bound}, uncalibrated (no measured result on this host)")
    prompt_basis = (f"from {len(flops)} measured prompt speed(s) on this host" if flops
                    else "no measured prompt speed on this host")
    return Speed(gbps, basis, overhead, statistics.median(flops) if flops else None, prompt_basis)


def _single_user_cpu(result: dict) -> bool:
    """An `ok` result of the default engine, one request at a time on one default server, no GPU:
    what a suggestion predicts (a load test's per-user speed or a GPU run would mislead it)."""
    from llmspec.engines import DEFAULT
    from llmspec.profiles import PROFILES

    kind = PROFILES.get((result.get("cell") or {}).get("profile"))
    server = result.get("server") or {}
    return (result.get("status") == "ok" and kind is not None and kind.server_overrides is None and not kind.last
            and server.get("engine", DEFAULT) == DEFAULT
            and not (result.get("metrics") or {}).get("gpu_memory_used_gb"))


def host_results(results_root: Path, host_dir: str) -> list[dict]:
    """Every result file of this host (all specs), read without validation; unreadable ones skipped."""
    found = []
    for file in sorted((results_root / host_dir).glob("*/*/*/*.json")):
        try:
            found.append(json.loads(file.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return found


def for_host(results_root: Path, host_dir: str) -> Speed | None:
    """This host's prediction from its cached bandwidth figure and results; None without a figure."""
    from llmspec.machine import bandwidth

    cached = bandwidth.cached(results_root, host_dir)
    if cached is None:
        return None
    basis = f"{cached['copy_gbps']:.0f} GB/s measured {cached['measured_at'][:10]}"
    return calibrate(host_results(results_root, host_dir), cached["copy_gbps"], basis)
