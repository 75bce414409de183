"""CPU energy per cell from the RAPL package counters the kernel exposes under /sys/class/powercap.

Joules per token is only worth reporting when a counter measured it, so every reader returns None
when the machine cannot tell, and `why_not` says why in words a user can act on; the metrics then
carry a "not available" flag and no number, never a 0. Readers take a `root` so tests point them at
a fixture tree (tests/fixtures/rapl).

What is counted: the top-level `intel-rapl:N` zones named `package-N` (or `package-N-die-M` on
multi-die CPUs; AMD CPUs use the same names since the intel_rapl_msr driver covers them). Not
counted, because each would count the same joules twice or measure something else:
- subzones `intel-rapl:N:M` (core, uncore, dram): core and uncore are parts of their package;
  dram is memory, not the CPU package the issue asks for;
- `psys` (an `intel-rapl:N` zone on laptops): the whole platform, which contains the package;
- `intel-rapl-mmio:N`: the same package counter read through another register path.

The counters wrap to 0 after `max_energy_range_uj`: on a typical CPU 262143328850 uJ, which a
60 W package passes in about 73 minutes and a 250 W one in about 17. One reading pair can only see
one wrap, so long runs call `EnergyMeter.sample()` at least every few minutes (SAMPLE_EVERY_S).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llmspec.machine.sensors import read_text

POWERCAP = Path("sys/class/powercap")
PACKAGE_ZONE = re.compile(r"intel-rapl:(\d+)")  # top level only: a subzone is intel-rapl:N:M
# Far inside one wrap at any real package power (262143 J / 60 s = 4369 W), and cheap to read.
SAMPLE_EVERY_S = 60.0
NEEDS_ROOT = ("not available: the energy counters need root to read (Linux >= 5.10 restricts energy_uj, "
              "CVE-2020-8694); e.g. sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj")
NO_POWERCAP = "not available: this machine has no RAPL energy counters (/sys/class/powercap absent)"
NO_PACKAGE = ("not available: /sys/class/powercap has no CPU package zone (intel-rapl:N named package-N); "
              "the RAPL driver does not cover this CPU or this is a virtual machine")


@dataclass(frozen=True)
class Zone:
    """One CPU package counter: its sysfs folder, its kernel name and where its counter wraps."""

    path: Path
    name: str
    max_range_uj: int


def find_zones(root: Path = Path("/")) -> list[Zone]:
    """The package zones whose name and wrap point can be read, in the kernel's order."""
    found = []
    for path in (Path(root) / POWERCAP).glob("intel-rapl:*"):
        match = PACKAGE_ZONE.fullmatch(path.name)
        name = (read_text(path / "name") or "").strip()
        max_range = _read_int(path / "max_energy_range_uj")
        if match and name.startswith("package-") and max_range:
            found.append((int(match.group(1)), Zone(path, name, max_range)))
    return [zone for _, zone in sorted(found, key=lambda pair: pair[0])]


def why_not(root: Path = Path("/")) -> str | None:
    """None when every package counter reads; otherwise the reason energy cannot be measured.

    Every package, not at least one: summing the readable sockets of a two-socket machine would
    report half its energy as if it were all of it.
    """
    if not (Path(root) / POWERCAP).is_dir():
        return NO_POWERCAP
    zones = find_zones(root)
    if not zones:
        return NO_PACKAGE
    problems = (_counter_problem(zone) for zone in zones)
    return next((problem for problem in problems if problem), None)


def delta_uj(before: int, after: int, max_range_uj: int) -> int:
    """Microjoules between two readings of one counter, across at most one wrap to 0.

    The kernel wraps at max_range plus one raw unit (about 61 uJ); the unit is not exposed, and
    that much per wrap is far below anything reported.
    """
    return after - before if after >= before else after + max_range_uj - before


class EnergyMeter:
    """Joules all CPU packages used between `start()` and `stop()`.

    The meter keeps the last reading and adds each step, so calling `sample()` at least every
    SAMPLE_EVERY_S catches every wrap of a long run. A reading that fails loses the whole run
    (None): a total with a gap in it would understate the energy without saying so.
    """

    def __init__(self, root: Path = Path("/")):
        self.zones = find_zones(root)
        self._last: list[int] | None = None
        self._total_uj = 0

    def start(self) -> bool:
        """Take the first reading; False when the counters cannot be read."""
        self._total_uj = 0
        self._last = self._read()
        return self._last is not None

    def sample(self) -> float | None:
        """Joules since `start()` so far; None when not started or a reading failed."""
        if self._last is None:
            return None
        now = self._read()
        if now is None:
            self._last = None
            return None
        self._total_uj += sum(delta_uj(before, after, zone.max_range_uj)
                              for before, after, zone in zip(self._last, now, self.zones))
        self._last = now
        return self._total_uj / 1e6

    def stop(self) -> float | None:
        """Joules since `start()`; the meter must be started again before it measures again."""
        joules = self.sample()
        self._last = None
        return joules

    def _read(self) -> list[int] | None:
        values = [_read_int(zone.path / "energy_uj") for zone in self.zones]
        return values if values and all(v is not None for v in values) else None


def idle_baseline(root: Path = Path("/"), seconds: float = 10.0,
                  sleep: Callable[[float], None] = time.sleep) -> float | None:
    """Watts the CPU packages draw over `seconds` while nothing of ours runs.

    It includes whatever else the machine does, which is why it is reported beside a cell's power
    and never subtracted from it. Watts are joules over the requested `seconds`: the reads sit right
    around the sleeps, and a sleep's overshoot (about a millisecond) is lost in the counter's noise.
    """
    meter = EnergyMeter(root)
    if seconds <= 0 or not meter.start():
        return None
    left = seconds
    while left > 0:
        step = min(left, SAMPLE_EVERY_S)
        sleep(step)
        left -= step
        if meter.sample() is None:
            return None
    joules = meter.stop()
    return joules / seconds if joules is not None else None


def energy_metrics(joules: float | None, tokens: int, seconds: float, idle_w: float | None,
                   reason: str | None) -> tuple[dict[str, float], list[str]]:
    """A cell's energy figures and flags; no figures at all when no counter measured the cell.

    `power_w` is the mean over the cell including idle draw; `idle_power_w` is the baseline beside
    it, so a reader can subtract it knowingly. A counter that did not move over a cell is broken,
    not a cell that cost nothing, so it gets the "not available" flag too.
    """
    if reason is not None or joules is None or joules <= 0:
        why = reason or ("no energy reading was taken" if joules is None else "the energy counter did not advance")
        return {}, [f"energy: not available ({why.removeprefix('not available: ')})"]
    metrics = {"energy_j": joules, "tokens_per_joule": tokens / joules}
    if tokens > 0:
        metrics["joules_per_token"] = joules / tokens
    if seconds > 0:
        metrics["power_w"] = joules / seconds
    if idle_w is None:
        return metrics, ["energy: no idle baseline was measured, so power_w cannot be told from idle draw"]
    metrics["idle_power_w"] = idle_w
    return metrics, []


def _counter_problem(zone: Zone) -> str | None:
    try:
        int((zone.path / "energy_uj").read_text(encoding="ascii").strip())
    except PermissionError:
        return NEEDS_ROOT
    except OSError as err:
        return f"not available: the {zone.name} energy counter could not be read ({err.strerror or err})"
    except ValueError:
        return f"not available: the {zone.name} energy counter holds no number"
    return None


def _read_int(path: Path) -> int | None:
    text = read_text(path)
    try:
        return int(text.strip()) if text is not None else None
    except ValueError:
        return None
