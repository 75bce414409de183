"""Sensor readers against fixture sysfs trees, and the pure decisions built on their readings."""

from collections import namedtuple
from pathlib import Path

import psutil
import pytest

from llmspec.machine import sensors
from llmspec.machine.sensors import (
    SensorSource,
    drop_pct,
    is_throttled,
    pick_cpu,
    read_scaling_freqs,
    read_thermal_zones,
    should_abort,
    thirds,
)

SYSFS = Path(__file__).parent / "fixtures" / "sysfs"
shwtemp = namedtuple("shwtemp", "label current high critical")
scpufreq = namedtuple("scpufreq", "current min max")


def test_thermal_zones_are_read_in_degrees_and_broken_zones_skipped():
    zones = read_thermal_zones(SYSFS / "cool")
    assert zones == {"x86_pkg_temp": [47.0], "acpitz": [41.5], "iwlwifi_1": [52.0]}  # pch zone unreadable


def test_cpu_temperature_prefers_cpu_sensors_over_hotter_others():
    assert SensorSource(SYSFS / "cool").temperature_c() == 47.0  # not the 52 C Wi-Fi chip
    assert SensorSource(SYSFS / "hot").temperature_c() == 95.5


def test_pick_cpu_falls_back_to_any_sensor_and_to_none():
    assert pick_cpu({"nvme": [38.0, 44.0]}) == 44.0
    assert pick_cpu({"coretemp": [60.0, 71.0], "nvme": [80.0]}) == 71.0
    assert pick_cpu({}) is None
    assert pick_cpu({"coretemp": []}) is None


def test_cpu_frequency_is_the_mean_of_cpus_in_mhz():
    assert read_scaling_freqs(SYSFS / "cool") == [2400.0, 2200.0]  # the cpufreq/policy0 folder is no CPU
    assert SensorSource(SYSFS / "cool").cpu_freq_mhz() == 2300.0
    assert SensorSource(SYSFS / "hot").cpu_freq_mhz() == 1200.0


@pytest.mark.parametrize("root", [SYSFS / "bare", Path("/nonexistent/llmspec-sysfs")])
def test_missing_files_read_as_none(root):
    source = SensorSource(root)
    assert read_thermal_zones(root) == {}
    assert read_scaling_freqs(root) == []
    assert source.temperature_c() is None
    assert source.cpu_freq_mhz() is None


def test_fixture_root_never_consults_psutil(monkeypatch):
    """psutil reads the real /sys; with a fixture root that would mix two machines."""
    monkeypatch.setattr(psutil, "sensors_temperatures", lambda: {"coretemp": [shwtemp("Package", 99.0, 100, 100)]})
    monkeypatch.setattr(psutil, "cpu_freq", lambda: scpufreq(3000.0, 0.0, 0.0))
    source = SensorSource(SYSFS / "cool")
    assert source.temperature_c() == 47.0
    assert source.cpu_freq_mhz() == 2300.0


def test_psutil_first_then_sysfs_fallback(monkeypatch):
    source = SensorSource(SYSFS / "cool", use_psutil=True)
    monkeypatch.setattr(psutil, "sensors_temperatures", lambda: {"coretemp": [shwtemp("Core 0", 63.0, 100, 100)]})
    assert source.temperature_c() == 63.0
    monkeypatch.setattr(psutil, "sensors_temperatures", lambda: {})  # this machine: no sensors
    assert source.temperature_c() == 47.0
    monkeypatch.setattr(psutil, "cpu_freq", lambda: scpufreq(3100.0, 0.0, 0.0))
    assert source.cpu_freq_mhz() == 3100.0
    monkeypatch.setattr(psutil, "cpu_freq", lambda: None)
    assert source.cpu_freq_mhz() == 2300.0


def test_real_machine_readers_do_not_fail():
    """Whatever this machine has; here psutil finds no temperature sensor at all."""
    source = SensorSource()
    temp = source.temperature_c()
    assert temp is None or 0 < temp < 150
    assert source.cpu_freq_mhz() is None or source.cpu_freq_mhz() > 0
    assert source.swap_used_bytes() >= 0


@pytest.mark.parametrize(("temp", "limit", "expected"), [
    (None, 90.0, False),  # no sensor never aborts
    (89.9, 90.0, False),
    (90.0, 90.0, True),  # at the limit
    (95.5, 90.0, True),
    (95.5, 100.0, False),
])
def test_should_abort(temp, limit, expected):
    assert should_abort(temp, limit) is expected


def test_thirds_keep_at_least_one_value_each():
    assert thirds([1, 2]) == ([1], [2])
    assert thirds([1, 2, 3, 4, 5, 6, 7]) == ([1, 2], [6, 7])


def test_throttling_is_a_sustained_drop_against_the_start():
    steady = [2400.0, 2390.0, 2410.0, 2400.0, 2380.0, 2400.0]
    assert is_throttled(steady) is False
    throttled = [2400.0, 2400.0, 2400.0, 2100.0, 1800.0, 1700.0, 1700.0, 1700.0, 1700.0]
    assert is_throttled(throttled) is True  # last third 1700 vs first 2400: -29%
    one_dip = [2400.0, 2400.0, 2400.0, 1200.0, 2400.0, 2400.0]
    assert is_throttled(one_dip) is False  # a single low sample is not throttling
    exactly_ten = [2000.0, 2000.0, 1800.0, 1800.0]
    assert is_throttled(exactly_ten) is False  # must be more than 10%
    assert is_throttled([]) is None and is_throttled([2400.0]) is None
    assert is_throttled([None, 2400.0, None]) is None  # one readable sample shows no change


def test_drift_is_the_percent_drop_from_first_to_last_third():
    assert drop_pct([100.0, 100.0, 100.0, 90.0, 80.0, 80.0]) == pytest.approx(20.0)
    assert drop_pct([80.0, 80.0, 90.0, 100.0, 100.0, 100.0]) == pytest.approx(-25.0)  # faster at the end
    assert drop_pct([100.0, None, 50.0]) == pytest.approx(50.0)  # untimed requests are skipped
    assert drop_pct([100.0]) is None
    assert drop_pct([]) is None


def test_constants_match_the_issue():
    assert sensors.THROTTLE_DROP_PCT == 10.0
