"""Energy and GPU figures of a cell: the RAPL counters of a fixture sysfs tree (these machines have
none) and a fake nvidia-smi on PATH that replays recorded output (tests/fixtures/nvidia-smi)."""

import os
import shutil
import time
from pathlib import Path

import pytest

from llmspec.run.meter import CellMeter, generated_tokens

FIXTURES = Path(__file__).parent / "fixtures"
FAKE_BIN = FIXTURES / "nvidia-smi" / "bin"
ZONES = ("intel-rapl:0", "intel-rapl:1")  # the two packages of the "server" tree


@pytest.fixture
def sysfs(tmp_path):
    root = tmp_path / "server"
    shutil.copytree(FIXTURES / "rapl" / "server", root)
    return root


def advance(root: Path, joules_each: float) -> None:
    """Both packages' counters move on by `joules_each` (wrapping as the kernel's do)."""
    for zone in ZONES:
        folder = root / "sys/class/powercap" / zone
        top = int((folder / "max_energy_range_uj").read_text())
        now = int((folder / "energy_uj").read_text())
        (folder / "energy_uj").write_text(str((now + int(joules_each * 1e6)) % top))


@pytest.fixture
def no_gpu(monkeypatch, tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_energy_per_token_with_the_idle_baseline_beside_it(sysfs, no_gpu):
    CellMeter._idle_w.clear()
    meter = CellMeter(sysfs, sleep=lambda s: advance(sysfs, 10.0 * s / 2))  # idle: 10 W over both packages
    with meter:
        advance(sysfs, 150.0)  # the cell: 300 J over both packages
    samples = [{"timings": {"predicted_n": 96}, "completion_tokens": 95}, {"predicted_n": 104}, "not a sample"]
    m = meter.metrics(samples)
    assert generated_tokens(samples) == 200  # the server's count first
    assert m["cpu_energy_j"] == pytest.approx(300.0) and m["energy_j"] == pytest.approx(300.0)
    assert m["joules_per_token"] == pytest.approx(1.5) and m["tokens_per_joule"] == pytest.approx(200 / 300)
    assert m["idle_power_w"] == pytest.approx(10.0)  # beside the figures, not subtracted from them
    assert m["power_w"] == pytest.approx(300.0 / meter.seconds)
    assert meter.host_facts() == {"gpu": "no GPU: nvidia-smi not found on PATH",
                                  "energy": "RAPL counters of package-0, package-1"}


def test_a_counter_wrapping_during_the_cell_is_counted_once(sysfs, no_gpu):
    CellMeter._idle_w.clear()
    for zone in ZONES:  # just below the wrap point
        folder = sysfs / "sys/class/powercap" / zone
        (folder / "energy_uj").write_text(str(int((folder / "max_energy_range_uj").read_text()) - 5_000_000))
    meter = CellMeter(sysfs, sleep=lambda s: None)
    with meter:
        advance(sysfs, 20.0)
    assert meter.metrics([])["cpu_energy_j"] == pytest.approx(40.0)


def test_no_counters_means_no_energy_figures_and_the_reason(tmp_path, no_gpu):
    meter = CellMeter(tmp_path)  # no /sys/class/powercap at all, as on these machines
    with meter:
        pass
    m = meter.metrics([{"predicted_n": 50}])
    assert not any("energy" in k or "joule" in k or "power" in k for k in m)  # never a 0
    assert meter.host_facts()["energy"].startswith("not available: this machine has no RAPL energy counters")


def test_gpu_vitals_and_energy_from_nvidia_smi(sysfs, monkeypatch):
    monkeypatch.setenv("PATH", f"{FAKE_BIN}{os.pathsep}{os.environ['PATH']}")
    CellMeter._idle_w.clear()
    meter = CellMeter(sysfs, sleep=lambda s: None, gpu_interval_s=0.05)
    with meter:
        advance(sysfs, 50.0)
        deadline = time.time() + 10
        while len(meter.gpu_series) < 4 and time.time() < deadline:
            time.sleep(0.05)
    m = meter.metrics([{"predicted_n": 100}])
    # two-geforce.csv: 2856 + 4 MiB used, 106.56 + 5.68 W, 60 and 49 C, utilization 36 and 0 %
    assert m["gpu_memory_used_gb"] == pytest.approx(2860 / 1024)
    assert m["gpu_power_w"] == pytest.approx(112.24) and m["gpu_idle_power_w"] == pytest.approx(112.24)
    assert m["gpu_temperature_c"] == 60 and m["gpu_utilization_pct"] == pytest.approx(18.0)
    assert m["gpu_throttled"] == 0.0
    (t0, _), (t1, _) = meter.gpu_series[0], meter.gpu_series[-1]
    assert m["gpu_energy_j"] == pytest.approx(112.24 * (t1 - t0))
    assert m["energy_j"] == pytest.approx(100.0 + m["gpu_energy_j"])  # CPU packages plus the GPU
    assert meter.host_facts()["gpu"] == "GeForce GTX 1060 6GB, GeForce GTX 1080 Ti (nvidia-smi)"


def test_a_failing_nvidia_smi_says_why(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{FAKE_BIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_NVIDIA_SMI", "fail")
    meter = CellMeter(tmp_path)
    with meter:
        pass
    assert not any(k.startswith("gpu_") for k in meter.metrics([]))
    assert meter.host_facts()["gpu"].startswith("no GPU: nvidia-smi failed: NVIDIA-SMI has failed because")
