"""CPU energy readers against fixture powercap trees, and the metrics built on their readings."""

import os
import shutil
from pathlib import Path

import pytest

from llmspec.machine import energy
from llmspec.machine.energy import (
    NEEDS_ROOT,
    NO_PACKAGE,
    NO_POWERCAP,
    EnergyMeter,
    delta_uj,
    energy_metrics,
    find_zones,
    idle_baseline,
    why_not,
)

RAPL = Path(__file__).parent / "fixtures" / "rapl"
WRAP = 262143328850  # max_energy_range_uj of the fixture packages


@pytest.fixture
def server(tmp_path) -> Path:
    """A copy of the two-socket tree whose counters a test may rewrite."""
    root = tmp_path / "server"
    shutil.copytree(RAPL / "server", root)
    return root


def counter(root: Path, zone: str) -> Path:
    return root / energy.POWERCAP / zone / "energy_uj"


def put(root: Path, **values: int) -> None:
    """Set counters by zone, e.g. put(root, rapl_0=5): intel-rapl:0 reads 5 uJ."""
    for key, value in values.items():
        counter(root, key.replace("rapl_", "intel-rapl:").replace("_", ":")).write_text(f"{value}\n")


def test_only_top_level_packages_count_on_a_server():
    zones = find_zones(RAPL / "server")
    assert [(z.path.name, z.name, z.max_range_uj) for z in zones] == [
        ("intel-rapl:0", "package-0", WRAP), ("intel-rapl:1", "package-1", WRAP)]  # no dram subzones


def test_laptop_counts_its_package_not_psys_nor_the_mmio_twin():
    zones = find_zones(RAPL / "laptop")
    assert [(z.path.name, z.name) for z in zones] == [("intel-rapl:0", "package-0")]


@pytest.mark.parametrize("root", [RAPL / "no-zones", Path("/nonexistent/llmspec-rapl")])
def test_no_package_zone_finds_nothing(root):
    assert find_zones(root) == []


def test_zones_keep_the_kernels_numeric_order(tmp_path):
    for index in (10, 2):
        zone = tmp_path / energy.POWERCAP / f"intel-rapl:{index}"
        zone.mkdir(parents=True)
        (zone / "name").write_text(f"package-{index}\n")
        (zone / "max_energy_range_uj").write_text(f"{WRAP}\n")
    assert [z.name for z in find_zones(tmp_path)] == ["package-2", "package-10"]  # not text order


@pytest.mark.parametrize(("before", "after", "max_range", "expected"), [
    (100, 250, 1000, 150),
    (250, 250, 1000, 0),
    (900, 100, 1000, 200),  # wrapped: 100 to the top, 100 from 0
    (WRAP - 5_000_000, 7_000_000, WRAP, 12_000_000),
])
def test_delta_uj(before, after, max_range, expected):
    assert delta_uj(before, after, max_range) == expected


def test_meter_sums_packages_across_a_wrap_and_ignores_subzones(server):
    put(server, rapl_0=1_000_000, rapl_1=WRAP - 2_000_000, rapl_0_0=0)
    meter = EnergyMeter(server)
    assert meter.start() is True
    put(server, rapl_0=31_000_000, rapl_1=3_000_000, rapl_0_0=50_000_000)  # package-1 wrapped
    assert meter.stop() == pytest.approx(30.0 + 5.0)  # dram's 50 J is not package energy
    assert meter.stop() is None  # stopped: nothing to measure until started again


def test_sampling_catches_more_than_one_wrap(server):
    for zone in ("intel-rapl:0", "intel-rapl:1"):
        (server / energy.POWERCAP / zone / "max_energy_range_uj").write_text("1000000\n")  # wraps every 1 J
    put(server, rapl_0=900_000, rapl_1=0)
    meter = EnergyMeter(server)
    meter.start()
    put(server, rapl_0=600_000, rapl_1=500_000)
    assert meter.sample() == pytest.approx(0.7 + 0.5)
    put(server, rapl_0=300_000, rapl_1=100_000)
    assert meter.sample() == pytest.approx(1.4 + 1.1)
    put(server, rapl_0=500_000, rapl_1=200_000)
    assert meter.stop() == pytest.approx(1.6 + 1.2)  # one reading pair would have said 0.6 + 0.2


def test_meter_without_counters_measures_nothing(tmp_path):
    meter = EnergyMeter(tmp_path)
    assert meter.start() is False
    assert meter.sample() is None and meter.stop() is None
    assert EnergyMeter(RAPL / "server").stop() is None  # never started


def test_a_failed_reading_loses_the_run_rather_than_understating_it(server):
    meter = EnergyMeter(server)
    meter.start()
    counter(server, "intel-rapl:1").unlink()
    assert meter.sample() is None
    put(server, rapl_1=37719003121)  # readable again: the gap is still unknown
    assert meter.stop() is None


def test_why_not_names_each_missing_piece(tmp_path):
    assert why_not(tmp_path) == NO_POWERCAP  # this project's machines: no /sys/class/powercap
    assert NO_POWERCAP.startswith("not available:")
    assert why_not(RAPL / "no-zones") == NO_PACKAGE
    assert why_not(RAPL / "server") is None
    assert why_not(RAPL / "laptop") is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a mode-000 file anyway, so this cannot imitate a "
                    "root-only energy_uj; test_why_not_needs_root_when_reading_is_refused covers it as root")
def test_why_not_needs_root_for_an_unreadable_counter(server):
    counter(server, "intel-rapl:1").chmod(0)
    assert why_not(server) == NEEDS_ROOT
    assert find_zones(server)  # name and max_energy_range_uj stay readable to everyone
    assert EnergyMeter(server).start() is False


def test_why_not_needs_root_when_reading_is_refused(server, monkeypatch):
    """What Linux >= 5.10 does to a user reading energy_uj (mode 0400, owner root)."""
    read_text = Path.read_text

    def refuse(path, *args, **kwargs):
        if path.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(path))
        return read_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", refuse)
    assert why_not(server) == NEEDS_ROOT
    assert "sudo chmod o+r /sys/class/powercap/intel-rapl:*/energy_uj" in NEEDS_ROOT
    assert EnergyMeter(server).start() is False


def test_why_not_for_a_counter_that_is_no_number(server):
    counter(server, "intel-rapl:0").write_text("\n")
    assert why_not(server) == "not available: the package-0 energy counter holds no number"
    counter(server, "intel-rapl:0").unlink()
    assert why_not(server).startswith("not available: the package-0 energy counter could not be read (")


def test_idle_baseline_is_joules_over_the_requested_seconds(server):
    put(server, rapl_0=WRAP - 1_000_000, rapl_1=0)
    watts = {"intel-rapl:0": 7_000_000, "intel-rapl:1": 5_000_000}  # uJ per second
    slept = []

    def sleep(seconds):  # the counters advance while "nothing of ours runs"
        slept.append(seconds)
        for zone, rate in watts.items():
            now = int(counter(server, zone).read_text())
            counter(server, zone).write_text(f"{(now + int(rate * seconds)) % WRAP}\n")

    assert idle_baseline(server, 150.0, sleep=sleep) == pytest.approx(12.0)  # package-0 wrapped on the way
    assert slept == [60.0, 60.0, 30.0]  # sampled every SAMPLE_EVERY_S


def test_idle_baseline_without_counters_is_none(tmp_path):
    never = lambda seconds: pytest.fail("nothing to wait for")
    assert idle_baseline(tmp_path, 10.0, sleep=never) is None
    assert idle_baseline(RAPL / "server", 0.0, sleep=never) is None


def test_energy_metrics_worked_by_hand():
    metrics, flags = energy_metrics(joules=300.0, tokens=600, seconds=12.0, idle_w=8.5, reason=None)
    assert metrics == {"energy_j": 300.0, "joules_per_token": 0.5, "tokens_per_joule": 2.0, "power_w": 25.0,
                       "idle_power_w": 8.5}  # 25 W including idle, the baseline beside it, not subtracted
    assert flags == []


def test_energy_metrics_without_a_counter_have_no_numbers_and_say_why():
    metrics, flags = energy_metrics(joules=None, tokens=600, seconds=12.0, idle_w=None, reason=NO_POWERCAP)
    assert metrics == {}
    assert flags == ["energy: not available (this machine has no RAPL energy counters (/sys/class/powercap absent))"]
    metrics, flags = energy_metrics(joules=0.0, tokens=600, seconds=12.0, idle_w=8.5, reason=None)
    assert metrics == {} and flags == ["energy: not available (the energy counter did not advance)"]
    assert energy_metrics(joules=None, tokens=600, seconds=12.0, idle_w=None, reason=None)[0] == {}


def test_energy_metrics_edge_cases():
    metrics, flags = energy_metrics(joules=40.0, tokens=0, seconds=4.0, idle_w=None, reason=None)
    assert metrics == {"energy_j": 40.0, "tokens_per_joule": 0.0, "power_w": 10.0}  # no joules for 0 tokens
    assert len(flags) == 1 and flags[0].startswith("energy: no idle baseline")


def test_real_machine_readers_do_not_fail():
    """Whatever this machine has; here there is no /sys/class/powercap at all."""
    reason = why_not()
    assert reason is None or reason.startswith("not available: ")
    assert EnergyMeter().start() is (reason is None)
