"""NVIDIA GPU vitals (memory, utilization, temperature, power, clocks) and the VRAM pre-flight.

Read through `nvidia-smi --query-gpu ... --format=csv,noheader,nounits` rather than NVML bindings:
nvidia-smi ships with every driver, costs no dependency, and a test can put a fake that replays
recorded output first on PATH (tests/fixtures/nvidia-smi). Only `GpuSource.read` runs a program;
everything else is a pure function of readings.

As with the CPU sensors, a value the driver cannot give is None, never 0. nvidia-smi writes
"[N/A]" or "[Not Supported]" (bare "N/A" on older drivers) for such fields, and some are routine:
a unified-memory GB10 (DGX Spark) reports no memory figures at all, and 0 MiB used would read as
an empty card.

Units follow nvidia-smi: memory in MiB (the `_mb` fields), clocks in MHz, power in W. Reported
metrics use GB = 2**30 bytes like the rest of llmspec (`peak_rss_gb`, the memory pre-flight).
"""

from __future__ import annotations

import math
import shutil
import statistics
import subprocess
from dataclasses import dataclass

from llmspec.machine.sensors import is_throttled
from llmspec.text import gb

# The fields read, in the order nvidia-smi prints them back. clocks.sm and clocks.mem are the
# documented short names of clocks.current.sm and clocks.current.memory (nvidia-smi --help-query-gpu).
QUERY_FIELDS = ("index", "name", "memory.total", "memory.used", "memory.free", "utilization.gpu",
                "temperature.gpu", "power.draw", "clocks.sm", "clocks.mem")
QUERY_ARGS = (f"--query-gpu={','.join(QUERY_FIELDS)}", "--format=csv,noheader,nounits")
BINARY = "nvidia-smi"
# A healthy nvidia-smi answers in well under a second (about 1-2 s on its first call without
# persistence mode); one that hangs (a GPU fallen off the bus) must not stall a sampler.
TIMEOUT_S = 5.0
MIB = 2**20
GB = 2**30
LAYER_CHOICES = ("all", "auto")


@dataclass(frozen=True)
class GpuReading:
    """One GPU at one moment, as nvidia-smi saw it; None where the driver could not say."""

    index: int
    name: str
    memory_total_mb: float | None  # MiB
    memory_used_mb: float | None
    memory_free_mb: float | None
    utilization_pct: float | None
    temperature_c: float | None
    power_w: float | None
    sm_clock_mhz: float | None
    mem_clock_mhz: float | None


def parse_query(text: str) -> list[GpuReading]:
    """Readings from csv,noheader,nounits output of QUERY_FIELDS, one line per GPU.

    A line whose index is not a number (a warning nvidia-smi printed among the rows) is skipped,
    not guessed at. A comma inside a GPU name stays in the name: every other field is numeric.
    """
    readings = []
    numeric = len(QUERY_FIELDS) - 2
    for line in text.splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) < len(QUERY_FIELDS) or not (parts[0].isascii() and parts[0].isdigit()):
            continue
        name = ", ".join(parts[1:len(parts) - numeric])
        readings.append(GpuReading(int(parts[0]), name, *(_number(part) for part in parts[-numeric:])))
    return readings


class GpuSource:
    """nvidia-smi on this machine: `read()` samples every GPU, `why_not()` says why it could not.

    The binary is looked up on PATH at each call (not at construction), so a PATH set later, as
    a test's fake nvidia-smi is, wins. `binary` may be a name or a path.
    """

    def __init__(self, binary: str | None = None, timeout_s: float = TIMEOUT_S):
        self.binary = binary or BINARY
        self.timeout_s = timeout_s
        self._why: str | None = None
        self._tried = False

    def read(self) -> list[GpuReading] | None:
        """Every GPU now; None when nvidia-smi is absent, fails, hangs or lists no GPU."""
        self._tried = True
        readings, self._why = self._run()
        return readings

    def why_not(self) -> str | None:
        """The plain reason the last `read()` gave None (reading once if none was taken); None if it worked."""
        if not self._tried:
            self.read()
        return self._why

    def _run(self) -> tuple[list[GpuReading] | None, str | None]:
        path = shutil.which(self.binary)
        if path is None:
            return None, f"no GPU: {self.binary} not found on PATH"
        try:
            proc = subprocess.run([path, *QUERY_ARGS], capture_output=True, text=True, errors="replace",
                                  timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            return None, f"no GPU: nvidia-smi did not answer within {self.timeout_s:g} s"
        except OSError as err:
            return None, f"no GPU: nvidia-smi could not be started ({err.strerror or err})"
        if proc.returncode != 0:
            said = _first_line(proc.stderr) or _first_line(proc.stdout) or f"exit status {proc.returncode}"
            return None, f"no GPU: nvidia-smi failed: {said}"
        readings = parse_query(proc.stdout)
        if not readings:
            return None, f"no GPU: nvidia-smi listed none ({_first_line(proc.stdout) or 'no output'})"
        return readings, None


def total_power_w(sample: list[GpuReading]) -> float | None:
    """Watts all GPUs drew in one sample; None unless every GPU reported, since a partial sum
    would understate the draw without saying so."""
    watts = [gpu.power_w for gpu in sample]
    return sum(watts) if watts and None not in watts else None


def summary(series: list[list[GpuReading]]) -> dict[str, float]:
    """A cell's GPU metrics from the samples taken while it measured (each sample: every GPU).

    Memory is the peak of the per-sample total over GPUs (what the cell needed at once); power is
    the mean per-sample total (every GPU costs energy); utilization and SM clock are means over
    GPUs and samples; temperature is the hottest reading. A metric no sample could give is left
    out, never 0. `gpu_throttled` is 1.0 when any GPU's SM clock shows the sustained drop the CPU
    rule looks for (sensors.is_throttled), which only means something under sustained load: a GPU
    idling between requests drops its clock too.
    """
    used = [_sum_if_all(gpu.memory_used_mb for gpu in sample) for sample in series]
    metrics = {
        "gpu_memory_used_gb": _peak([mib * MIB / GB for mib in used if mib is not None]),
        "gpu_utilization_pct": _mean(gpu.utilization_pct for sample in series for gpu in sample),
        "gpu_temperature_c": _peak([gpu.temperature_c for sample in series for gpu in sample]),
        "gpu_power_w": _mean(total_power_w(sample) for sample in series),
        "gpu_sm_clock_mhz": _mean(gpu.sm_clock_mhz for sample in series for gpu in sample),
        "gpu_throttled": _throttled(series),
    }
    return {name: value for name, value in metrics.items() if value is not None}


def energy_j(samples: list[tuple[float, float | None]]) -> float | None:
    """Joules from (time_s, power_w) samples by the trapezoid rule; None with under two usable.

    A sample without power is skipped and its neighbours joined by a straight line: interpolating
    a gap estimates it, where dropping the interval would count it as zero watts.
    """
    usable = sorted((t, w) for t, w in samples if w is not None and math.isfinite(w) and math.isfinite(t))
    if len(usable) < 2:
        return None
    return sum((t1 - t0) * (w0 + w1) / 2 for (t0, w0), (t1, w1) in zip(usable, usable[1:]))


def offloaded_layers(n_layers: int, n_gpu_layers: int | str | None) -> int:
    """How many of `n_layers` repeating layers llama.cpp puts on the GPU for `-ngl`.

    "all", any number of at least n_layers, and "auto" or unset (llama-server's default) count as
    every layer: "auto" lets llama.cpp fit what it can, and the pre-flight assumes the most it may
    try, so a cell that might not fit is caught rather than found out at load time.
    """
    if n_layers <= 0:
        raise ValueError(f"n_layers must be positive, not {n_layers}")
    if n_gpu_layers is None or n_gpu_layers in LAYER_CHOICES:
        return n_layers
    if isinstance(n_gpu_layers, bool) or not isinstance(n_gpu_layers, int) or n_gpu_layers < 0:
        raise ValueError(f"n_gpu_layers must be 0 or more, 'auto' or 'all', not {n_gpu_layers!r}")
    return min(n_gpu_layers, n_layers)


def offload_split(n_layers: int, n_gpu_layers: int | str | None, weights_bytes: int, kv_bytes: float,
                  overhead_bytes: float) -> tuple[float, float]:
    """(GPU bytes, host RAM bytes) a llama-server needs with `n_gpu_layers` of `n_layers` offloaded.

    Weights and KV cache split in proportion to the offloaded layers: each repeating layer holds
    its own weights and its own slice of the cache. The output layer and token embeddings are not
    treated apart (a few percent of a model). The overhead (compute buffers) is counted once, on
    the GPU whenever anything is offloaded, because the GPU backend allocates its compute buffer
    there; with nothing offloaded it is host memory. A partial offload also keeps a smaller host
    compute buffer, which this leaves out.
    """
    share = offloaded_layers(n_layers, n_gpu_layers) / n_layers
    vram = (weights_bytes + kv_bytes) * share + (overhead_bytes if share > 0 else 0.0)
    ram = (weights_bytes + kv_bytes) * (1 - share) + (overhead_bytes if share == 0 else 0.0)
    return vram, ram


def vram_check(vram_needed_bytes: float, gpus: list[GpuReading], detail: str | None = None) -> str | None:
    """None when the GPU part fits in the GPUs' free memory; otherwise the reason, in one line.

    The free memory of all GPUs is summed: llama.cpp's default split mode (layer) spreads the
    layers over every GPU it sees, in proportion to their free memory. Layer granularity and a
    compute buffer per GPU make the sum slightly optimistic, which the overhead in the estimate
    partly covers. GPUs whose free memory is unknown ([N/A] on unified-memory parts) add nothing;
    when none reports it the check cannot tell and does not skip (None), as an unknown
    temperature never aborts a stress run. nvidia-smi lists every GPU, so `gpus` should already
    be the ones the server may use (CUDA_VISIBLE_DEVICES).
    """
    known = [gpu for gpu in gpus if gpu.memory_free_mb is not None]
    if not known or vram_needed_bytes <= 0:
        return None
    free = sum(gpu.memory_free_mb for gpu in known) * MIB
    if vram_needed_bytes <= free:
        return None
    what = f" ({detail})" if detail else ""
    return (f"needs about {gb(vram_needed_bytes / GB)} of GPU memory{what}, more than the {gb(free / GB)} free on "
            f"{_describe(known)} (nvidia-smi)")


def _describe(gpus: list[GpuReading]) -> str:
    """'NVIDIA H200', or '2 GPUs (2 x NVIDIA H100 80GB HBM3)', or '2 GPUs (A, B)'."""
    names = [gpu.name for gpu in gpus]
    if len(names) == 1:
        return names[0]
    listed = f"{len(names)} x {names[0]}" if len(set(names)) == 1 else ", ".join(names)
    return f"{len(names)} GPUs ({listed})"


def _throttled(series: list[list[GpuReading]]) -> float | None:
    by_gpu: dict[int, list[float | None]] = {}
    for sample in series:
        for gpu in sample:
            by_gpu.setdefault(gpu.index, []).append(gpu.sm_clock_mhz)
    verdicts = [v for clocks in by_gpu.values() if (v := is_throttled(clocks)) is not None]
    return float(any(verdicts)) if verdicts else None


def _sum_if_all(values) -> float | None:
    values = list(values)
    return sum(values) if values and None not in values else None


def _peak(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return max(present) if present else None


def _mean(values) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def _number(text: str) -> float | None:
    """A reading, or None for "[N/A]", "[Not Supported]", "[Unknown Error]" and the like."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _first_line(text: str | None) -> str:
    return next((line.strip() for line in (text or "").splitlines() if line.strip()), "")
