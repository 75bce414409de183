"""Energy and GPU vitals over one cell's measurement, beside whatever the profile measures.

`CellMeter` wraps a profile run: it reads the CPU package energy counters (RAPL) before and after,
and, when nvidia-smi answers, samples every GPU once a second on a small thread. What comes out:

- energy: `energy_j` (CPU packages, plus the GPU's power integrated over time when there is one),
  `cpu_energy_j`, `gpu_energy_j`, `joules_per_token`, `tokens_per_joule`, `power_w`, and the idle
  baseline `idle_power_w` (CPU packages, measured once per run on the quiet machine before its
  first cell; GPU: `gpu_idle_power_w`, its draw just before the cell), reported beside the
  figures, never subtracted. The energy covers the whole profile run, warm-up included, while
  the tokens are those the measured requests generated: joules per token errs high, not low.
- GPU: peak memory used, mean utilization, hottest temperature, mean power and SM clock, and
  `gpu_throttled` (machine/gpu.py).

Where a counter or a GPU is missing, no figure is made up: the result's `host` block says
`energy`: "not available: <why>" / `gpu`: "no GPU: <why>" (facts of the machine, the same for
every cell), and what was read where they are there.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from llmspec.machine import energy, gpu

GPU_SAMPLE_S = 1.0
IDLE_BASELINE_S = 5.0


class CellMeter:
    """Use as a context manager around a profile run; then `metrics(samples)` and `host_facts()`."""

    _idle_w: dict[str, float | None] = {}  # per sysfs root: measured once per run (process)

    def __init__(self, root: Path = Path("/"), gpus: gpu.GpuSource | None = None, sleep=time.sleep,
                 gpu_interval_s: float = GPU_SAMPLE_S):
        self.root, self.gpus, self.sleep = Path(root), gpus or gpu.GpuSource(), sleep
        self.gpu_interval_s = gpu_interval_s
        self.energy_reason = energy.why_not(self.root)
        self.meter = energy.EnergyMeter(self.root) if self.energy_reason is None else None
        self.gpu_series: list[tuple[float, list[gpu.GpuReading]]] = []
        self.gpu_idle_w: float | None = None
        self.cpu_j: float | None = None
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- around the run ----------------------------------------------------------------------
    def __enter__(self) -> CellMeter:
        if self.meter is not None and str(self.root) not in CellMeter._idle_w:
            CellMeter._idle_w[str(self.root)] = energy.idle_baseline(self.root, IDLE_BASELINE_S, self.sleep)
        first = self.gpus.read()
        if first is not None:
            self.gpu_idle_w = gpu.total_power_w(first)
            self._thread = threading.Thread(target=self._sample_gpus, name="llmspec-gpu", daemon=True)
        if self.meter is not None and not self.meter.start():
            self.meter, self.energy_reason = None, energy.why_not(self.root) or "not available: the counter vanished"
        self.t0 = time.perf_counter()
        if self._thread is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.t0
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.meter is not None:
            self.cpu_j = self.meter.stop()

    def _sample_gpus(self) -> None:
        """Once a second; the energy meter is sampled too, so no counter wrap goes unseen."""
        last_energy = time.perf_counter()
        while not self._stop.wait(self.gpu_interval_s):
            readings = self.gpus.read()
            if readings is not None:
                self.gpu_series.append((time.perf_counter() - self.t0, readings))
            if self.meter is not None and time.perf_counter() - last_energy >= energy.SAMPLE_EVERY_S:
                self.meter.sample()
                last_energy = time.perf_counter()

    # --- what it found -----------------------------------------------------------------------
    def metrics(self, samples: list[Any]) -> dict[str, float]:
        """The cell's energy and GPU figures; none of them when nothing measured them. The totals
        need the CPU counters: a GPU-only figure is named as such (`gpu_joules_per_token`)."""
        found = gpu.summary([readings for _, readings in self.gpu_series])
        gpu_j = gpu.energy_j([(t, gpu.total_power_w(r)) for t, r in self.gpu_series])
        cpu_j = self.cpu_j if self.cpu_j is not None and self.cpu_j > 0 else None
        tokens = generated_tokens(samples)
        if cpu_j is not None:
            idle = CellMeter._idle_w.get(str(self.root))
            found |= energy.energy_metrics(cpu_j + (gpu_j or 0.0), tokens, self.seconds, idle, None)[0]
            found["cpu_energy_j"] = cpu_j
        elif gpu_j is not None and tokens:
            found["gpu_joules_per_token"] = gpu_j / tokens
        if gpu_j is not None:
            found["gpu_energy_j"] = gpu_j
            if self.gpu_idle_w is not None:
                found["gpu_idle_power_w"] = self.gpu_idle_w
        return found

    def host_facts(self) -> dict[str, str]:
        """What the machine measures of energy and GPU, in words (the result's `host` block):
        what was read, or "not available: <why>" / "no GPU: <why>"."""
        if self.energy_reason is not None:
            energy_text = self.energy_reason
        else:
            zones = self.meter.zones if self.meter is not None else energy.find_zones(self.root)
            energy_text = f"RAPL counters of {', '.join(z.name for z in zones)}"
        names = sorted({g.name for _, readings in self.gpu_series for g in readings})
        gpu_text = f"{', '.join(names)} (nvidia-smi)" if names else self.gpus.why_not() or "no GPU readings"
        return {"energy": energy_text, "gpu": gpu_text}


def generated_tokens(samples: list[Any]) -> int:
    """Tokens the measured requests generated, by the server's count where it gave one."""
    total = 0
    for sample in samples:
        if not isinstance(sample, dict):
            continue
        timings = sample.get("timings") if isinstance(sample.get("timings"), dict) else {}
        count = timings.get("predicted_n", sample.get("predicted_n", sample.get("completion_tokens")))
        if isinstance(count, (int, float)) and not isinstance(count, bool) and count > 0:
            total += int(count)
    return total
