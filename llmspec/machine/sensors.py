"""Machine vitals for the stress profile: CPU temperature, CPU frequency and swap.

Every reader returns None when the machine cannot tell (no sensors, no cpufreq driver), because
a missing sensor is a fact to report, never a zero to rate. Readers take a `root` so tests point
them at a fixture sysfs tree; psutil is consulted only when reading the real machine (it always
reads the real /sys, so mixing it with a fixture root would mix two machines).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import psutil

THERMAL = Path("sys/class/thermal")
CPUS = Path("sys/devices/system/cpu")
# Sensor names that measure the CPU package or cores (psutil keys and thermal-zone `type` files).
# When present they win over others (NVMe, Wi-Fi, GPU), which would misstate "CPU temperature".
CPU_SENSORS = ("coretemp", "k10temp", "zenpower", "cpu_thermal", "cpu-thermal", "x86_pkg_temp",
               "soc_thermal", "soc-thermal", "acpitz")
THROTTLE_DROP_PCT = 10.0


@dataclass(frozen=True)
class SensorSource:
    """Where vitals are read from: the real machine (root "/") or a fixture tree."""

    root: Path = Path("/")
    use_psutil: bool | None = None  # default: only when root is the real "/"

    @property
    def _psutil(self) -> bool:
        return self.use_psutil if self.use_psutil is not None else Path(self.root) == Path("/")

    def temperature_c(self) -> float | None:
        """Hottest CPU sensor now: psutil's drivers first, then the kernel's thermal zones."""
        found = pick_cpu(_psutil_temperatures()) if self._psutil else None
        return found if found is not None else pick_cpu(read_thermal_zones(self.root))

    def cpu_freq_mhz(self) -> float | None:
        """Mean current CPU frequency: psutil first, then cpufreq's scaling_cur_freq files."""
        if self._psutil:
            freq = _psutil_freq()
            if freq:
                return freq
        freqs = read_scaling_freqs(self.root)
        return statistics.fmean(freqs) if freqs else None

    def swap_used_bytes(self) -> int | None:
        """System-wide swap in use (any process swapping slows inference, not only ours)."""
        try:
            return int(psutil.swap_memory().used)
        except (OSError, RuntimeError):
            return None


def read_thermal_zones(root: Path = Path("/")) -> dict[str, list[float]]:
    """Degrees C by zone type from thermal_zone*/temp (the kernel reports millidegrees)."""
    found: dict[str, list[float]] = {}
    for zone in sorted((Path(root) / THERMAL).glob("thermal_zone*")):
        value = _read_number(zone / "temp")
        if value is None or value <= 0:  # unreadable or a broken sensor reporting 0 / negative
            continue
        kind = (read_text(zone / "type") or zone.name).strip()
        found.setdefault(kind, []).append(value / 1000.0)
    return found


def read_scaling_freqs(root: Path = Path("/")) -> list[float]:
    """Current frequency of each CPU in MHz from cpufreq (the kernel reports kHz)."""
    freqs = []
    for path in sorted((Path(root) / CPUS).glob("cpu[0-9]*/cpufreq/scaling_cur_freq")):
        value = _read_number(path)
        if value is not None and value > 0:
            freqs.append(value / 1000.0)
    return freqs


def pick_cpu(readings: dict[str, list[float]]) -> float | None:
    """Hottest CPU-named sensor, or the hottest of all when none is named like a CPU."""
    cpu = [v for name, values in readings.items() if name.lower() in CPU_SENSORS for v in values]
    every = [v for values in readings.values() for v in values]
    chosen = cpu or every
    return max(chosen) if chosen else None


def should_abort(temperature_c: float | None, limit_c: float) -> bool:
    """Stop at the limit (docs/profiles.md, stress); an unknown temperature never aborts."""
    return temperature_c is not None and temperature_c >= limit_c


def thirds(values: list[float]) -> tuple[list[float], list[float]]:
    """First and last third of a series (at least one value each), for start/end comparisons."""
    k = max(1, len(values) // 3)
    return values[:k], values[-k:]


def drop_pct(values: list[float | None]) -> float | None:
    """Percent the median of the last third lies below the median of the first third.

    Medians of thirds, not first and last points, so one slow sample is not a trend. None with
    fewer than two values: a single point shows no change either way.
    """
    present = [v for v in values if v is not None]
    if len(present) < 2:
        return None
    first, last = (statistics.median(part) for part in thirds(present))
    return (first - last) / first * 100 if first > 0 else None


def is_throttled(freqs_mhz: list[float | None], drop_limit_pct: float = THROTTLE_DROP_PCT) -> bool | None:
    """A sustained frequency drop of more than `drop_limit_pct` against the start; None if unknown."""
    drop = drop_pct(freqs_mhz)
    return None if drop is None else drop > drop_limit_pct


def _psutil_temperatures() -> dict[str, list[float]]:
    try:
        sensors = psutil.sensors_temperatures() or {}
    except (AttributeError, OSError, RuntimeError):  # not every platform has it
        return {}
    return {name: [t.current for t in entries if t.current and t.current > 0]
            for name, entries in sensors.items() if entries}


def _psutil_freq() -> float | None:
    try:
        freq = psutil.cpu_freq()
    except (AttributeError, OSError, RuntimeError, NotImplementedError):
        return None
    return float(freq.current) if freq and freq.current and freq.current > 0 else None


def read_text(path: Path) -> str | None:
    """A sysfs file's text, or None when it cannot be read (shared with machine/energy.py)."""
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None


def _read_number(path: Path) -> float | None:
    text = read_text(path)
    try:
        return float(text.strip()) if text is not None else None
    except ValueError:
        return None
