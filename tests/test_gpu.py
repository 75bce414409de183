"""NVIDIA GPU readers against a fake nvidia-smi that replays recorded output, and the pure
summaries and pre-flight built on their readings (tests/fixtures/nvidia-smi/README.md)."""

import os
import sys
from pathlib import Path

import pytest

from llmspec.machine import gpu
from llmspec.machine.gpu import (
    GpuReading,
    GpuSource,
    energy_j,
    offload_split,
    offloaded_layers,
    parse_query,
    summary,
    total_power_w,
    vram_check,
)

SAMPLES = Path(__file__).parent / "fixtures" / "nvidia-smi"
FAKE_BIN = SAMPLES / "bin"
GB = 2**30
MIB = 2**20

GTX_1080_TI = GpuReading(0, "GeForce GTX 1080 Ti", 11175.0, 2856.0, 8319.0, 36.0, 60.0, 106.56, 1936.0, 5508.0)
GTX_1060 = GpuReading(1, "GeForce GTX 1060 6GB", 6078.0, 4.0, 6074.0, 0.0, 49.0, 5.68, 139.0, 405.0)
GB10 = GpuReading(0, "NVIDIA GB10", None, None, None, 0.0, 36.0, 3.0, None, None)


@pytest.fixture
def fake_smi(monkeypatch):
    """The fake first on PATH; the folder of this Python after it, for the fake's `env python3`."""
    path = os.pathsep.join([str(FAKE_BIN), str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    monkeypatch.setenv("PATH", path)
    monkeypatch.delenv("FAKE_NVIDIA_SMI", raising=False)
    return monkeypatch


def reading(index=0, name="NVIDIA H200", **values) -> GpuReading:
    fields = dict(memory_total_mb=143771.0, memory_used_mb=None, memory_free_mb=None, utilization_pct=None,
                  temperature_c=None, power_w=None, sm_clock_mhz=None, mem_clock_mhz=None)
    return GpuReading(index, name, **{**fields, **values})


# -- parsing


def test_recorded_sample_parses_to_readings():
    assert parse_query((SAMPLES / "two-geforce.csv").read_text()) == [GTX_1080_TI, GTX_1060]


def test_unavailable_fields_are_none_never_zero():
    (found,) = parse_query((SAMPLES / "gb10-unified.csv").read_text())
    assert found == GB10
    assert found.memory_used_mb is None and found.utilization_pct == 0.0  # a real 0 % stays 0


@pytest.mark.parametrize("missing", ["[N/A]", "N/A", "[Not Supported]", "[Unknown Error]", "[Insufficient Permissions]",
                                     "", "nan"])
def test_every_spelling_of_unavailable_reads_as_none(missing):
    (found,) = parse_query(f"3, Tesla T4, 15360, {missing}, 15000, 7, 41, 27.89, 585, 5000\n")
    assert found.index == 3 and found.memory_used_mb is None and found.memory_free_mb == 15000.0


def test_lines_that_are_not_rows_are_skipped_and_a_comma_stays_in_the_name():
    text = ("WARNING: infoROM is corrupted at gpu 0000:01:00.0\n\n"
            "0, Odd, Card, 100, 1, 99, 0, 30, 10.5, 300, 400\n"
            "1, too, few, fields\n")
    (found,) = parse_query(text)
    assert found.name == "Odd, Card" and found.memory_total_mb == 100.0 and found.mem_clock_mhz == 400.0


def test_the_query_reads_the_documented_fields():
    assert gpu.QUERY_FIELDS == ("index", "name", "memory.total", "memory.used", "memory.free", "utilization.gpu",
                                "temperature.gpu", "power.draw", "clocks.sm", "clocks.mem")
    assert gpu.QUERY_ARGS[1] == "--format=csv,noheader,nounits" and gpu.TIMEOUT_S == 5.0


# -- reading through nvidia-smi


def test_read_runs_nvidia_smi_found_on_path(fake_smi):
    source = GpuSource()
    assert source.read() == [GTX_1080_TI, GTX_1060]
    assert source.why_not() is None


def test_read_of_a_unified_memory_gpu(fake_smi):
    fake_smi.setenv("FAKE_NVIDIA_SMI", "gb10-unified.csv")
    assert GpuSource().read() == [GB10]


def test_path_is_looked_up_when_reading_not_when_constructed(fake_smi, tmp_path):
    source = GpuSource()
    fake_smi.setenv("PATH", str(tmp_path))
    assert source.read() is None
    fake_smi.setenv("PATH", os.pathsep.join([str(FAKE_BIN), str(Path(sys.executable).parent)]))
    assert source.read() == [GTX_1080_TI, GTX_1060]


def test_absent_nvidia_smi_gives_none_and_the_reason(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no nvidia-smi anywhere
    source = GpuSource()
    assert source.why_not() == "no GPU: nvidia-smi not found on PATH"  # reads once when nothing was read
    assert source.read() is None


def test_an_explicit_binary_path_is_used(fake_smi):
    source = GpuSource(str(FAKE_BIN / "nvidia-smi"))
    assert source.read() == [GTX_1080_TI, GTX_1060]
    assert GpuSource("nvidia-smi-missing").why_not() == "no GPU: nvidia-smi-missing not found on PATH"


@pytest.mark.parametrize(("mode", "reason"), [
    ("fail", "no GPU: nvidia-smi failed: NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA "
             "driver. Make sure that the latest NVIDIA driver is installed and running."),
    ("mismatch", "no GPU: nvidia-smi failed: Failed to initialize NVML: Driver/library version mismatch"),
])
def test_a_failing_nvidia_smi_gives_none_and_its_first_line(fake_smi, mode, reason):
    fake_smi.setenv("FAKE_NVIDIA_SMI", mode)
    source = GpuSource()
    assert source.read() is None
    assert source.why_not() == reason


def test_a_hanging_nvidia_smi_is_cut_off(fake_smi):
    fake_smi.setenv("FAKE_NVIDIA_SMI", "hang")
    source = GpuSource(timeout_s=0.5)
    assert source.read() is None
    assert source.why_not() == "no GPU: nvidia-smi did not answer within 0.5 s"


def test_a_reading_after_a_failure_clears_the_reason(fake_smi):
    source = GpuSource()
    fake_smi.setenv("FAKE_NVIDIA_SMI", "fail")
    assert source.read() is None and source.why_not() is not None
    fake_smi.delenv("FAKE_NVIDIA_SMI")
    assert source.read() is not None and source.why_not() is None


# -- summaries of a measurement


def _series(gpu1_clocks=(1980.0,) * 6):
    """Six samples of two GPUs; GPU 0's SM clock falls from 1980 to 1500 MHz, some GPU 1 fields drop out."""
    gpu0_clocks = (1980.0, 1980.0, 1980.0, 1600.0, 1500.0, 1500.0)
    gpu1_used = (2048.0, 2048.0, 3072.0, 2048.0, None, 2048.0)
    gpu1_util = (50.0, 50.0, 50.0, 50.0, None, 50.0)
    gpu1_power = (100.0, 120.0, 100.0, None, 100.0, 100.0)
    return [[reading(0, memory_used_mb=1024.0, utilization_pct=90.0, temperature_c=60.0 + i, power_w=300.0,
                     sm_clock_mhz=gpu0_clocks[i]),
             reading(1, memory_used_mb=gpu1_used[i], utilization_pct=gpu1_util[i], temperature_c=55.0,
                     power_w=gpu1_power[i], sm_clock_mhz=gpu1_clocks[i])]
            for i in range(6)]


def test_summary_of_two_gpus_worked_by_hand():
    metrics = summary(_series())
    assert metrics == pytest.approx({
        "gpu_memory_used_gb": 4.0,  # peak total 1024 + 3072 MiB; the sample with GPU 1 unknown is left out
        "gpu_utilization_pct": (6 * 90 + 5 * 50) / 11,
        "gpu_temperature_c": 65.0,
        "gpu_power_w": 404.0,  # totals 400, 420, 400, 400, 400; the sample without GPU 1's power is left out
        "gpu_sm_clock_mhz": (3 * 1980 + 1600 + 2 * 1500 + 6 * 1980) / 12,
        "gpu_throttled": 1.0,  # GPU 0: last third 1500 against 1980 at the start, -24 %
    })


def test_one_gpu_throttling_is_enough_and_steady_clocks_are_not_throttling():
    steady = [[reading(0, sm_clock_mhz=c), reading(1, sm_clock_mhz=1755.0)] for c in (1980.0, 1965.0, 1980.0, 1950.0)]
    assert summary(steady)["gpu_throttled"] == 0.0
    assert summary(_series(gpu1_clocks=(1755.0,) * 6))["gpu_throttled"] == 1.0
    one_dip = [[reading(0, sm_clock_mhz=c)] for c in (1980.0, 1980.0, 1980.0, 345.0, 1980.0, 1980.0)]
    assert summary(one_dip)["gpu_throttled"] == 0.0  # one idle sample between requests is not a trend


def test_missing_readings_leave_metrics_out_not_zero():
    unified = [[GB10], [GB10]]
    assert summary(unified) == {"gpu_utilization_pct": 0.0, "gpu_temperature_c": 36.0, "gpu_power_w": 3.0}
    assert summary([]) == {} and summary([[]]) == {}
    assert "gpu_throttled" not in summary([[reading(0, sm_clock_mhz=1980.0)]])  # one sample shows no trend


def test_total_power_needs_every_gpu():
    assert total_power_w([GTX_1080_TI, GTX_1060]) == pytest.approx(112.24)
    assert total_power_w([GTX_1080_TI, reading(1)]) is None
    assert total_power_w([]) is None


def test_energy_is_the_trapezoid_over_time():
    assert energy_j([(0.0, 100.0), (1.0, 200.0), (3.0, 200.0)]) == pytest.approx(150.0 + 400.0)
    assert energy_j([(3.0, 200.0), (0.0, 100.0), (1.0, 200.0)]) == pytest.approx(550.0)  # order of arrival
    assert energy_j([(0.0, 100.0), (1.0, None), (2.0, 300.0)]) == pytest.approx(400.0)  # a gap is bridged
    assert energy_j([(0.0, 250.0), (10.0, 250.0)]) == pytest.approx(2500.0)


def test_energy_needs_two_usable_samples():
    assert energy_j([]) is None
    assert energy_j([(0.0, 100.0)]) is None
    assert energy_j([(0.0, 100.0), (1.0, None)]) is None


# -- VRAM pre-flight

WEIGHTS, KV, OVERHEAD = 3_200_000_000, 640_000_000, 150_000_000


@pytest.mark.parametrize(("ngl", "vram", "ram"), [
    (0, 0.0, 3_990_000_000),  # all in RAM, the compute buffer too
    (8, 1_110_000_000, 2_880_000_000),  # a quarter of 3.84e9 weights+KV on the GPU, plus the overhead
    (16, 2_070_000_000, 1_920_000_000),
    (32, 3_990_000_000, 0.0),
    (99, 3_990_000_000, 0.0),  # more than the model has: every layer
    ("all", 3_990_000_000, 0.0),
    ("auto", 3_990_000_000, 0.0),  # llama.cpp decides; the estimate assumes the most it may put there
    (None, 3_990_000_000, 0.0),  # unset is llama-server's default, auto
])
def test_offload_split_worked_by_hand(ngl, vram, ram):
    assert offload_split(32, ngl, WEIGHTS, KV, OVERHEAD) == pytest.approx((vram, ram))


@pytest.mark.parametrize("ngl", [-1, "max", True, 2.5])
def test_offload_split_rejects_what_llama_server_would(ngl):
    with pytest.raises(ValueError):
        offload_split(32, ngl, WEIGHTS, KV, OVERHEAD)
    with pytest.raises(ValueError):
        offloaded_layers(0, 0)


def test_vram_fits_in_free_memory_or_says_why_not():
    h200 = reading(0, memory_free_mb=3174.0)  # 3.10 GB free
    need = 5.2 * GB
    assert vram_check(need, [h200], "weights 4.50 GB + KV cache 0.56 GB + overhead") == (
        "needs about 5.20 GB of GPU memory (weights 4.50 GB + KV cache 0.56 GB + overhead), more than the "
        "3.10 GB free on NVIDIA H200 (nvidia-smi)")
    assert vram_check(3174 * MIB, [h200]) is None  # exactly the free memory fits
    assert vram_check(3174 * MIB + 1, [h200]) is not None


def test_vram_is_checked_against_the_free_memory_of_all_gpus():
    two = [reading(0, memory_free_mb=3174.0), reading(1, memory_free_mb=3174.0)]
    assert vram_check(5.2 * GB, two) is None  # neither alone, both together: llama.cpp splits layers
    assert vram_check(7 * GB, two) == ("needs about 7.00 GB of GPU memory, more than the 6.20 GB free on "
                                       "2 GPUs (2 x NVIDIA H200) (nvidia-smi)")
    assert vram_check(20 * GB, [GTX_1080_TI, GTX_1060]).endswith(
        "more than the 14.1 GB free on 2 GPUs (GeForce GTX 1080 Ti, GeForce GTX 1060 6GB) (nvidia-smi)")


def test_unknown_free_memory_cannot_skip():
    assert vram_check(500 * GB, [GB10]) is None  # unified memory: the RAM pre-flight decides
    assert vram_check(500 * GB, []) is None  # no GPU: llama.cpp runs on the CPU
    partly_known = [GB10, reading(1, memory_free_mb=3174.0)]
    assert vram_check(7 * GB, partly_known).endswith("3.10 GB free on NVIDIA H200 (nvidia-smi)")


def test_preflight_on_the_recorded_sample():
    """15 GiB of weights and 1 GiB of KV cache against the two GeForce cards' 8319 + 6074 MiB free."""
    gpus = parse_query((SAMPLES / "two-geforce.csv").read_text())
    vram, ram = offload_split(40, "all", 15 * GB, 1 * GB, OVERHEAD)
    assert (vram, ram) == pytest.approx((16 * GB + OVERHEAD, 0.0))
    assert vram_check(vram, gpus).startswith("needs about 16.1 GB of GPU memory, more than the 14.1 GB free on 2 GPUs")
    vram, ram = offload_split(40, 20, 15 * GB, 1 * GB, OVERHEAD)
    assert (vram, ram) == pytest.approx((8 * GB + OVERHEAD, 8 * GB))
    assert vram_check(vram, gpus) is None
