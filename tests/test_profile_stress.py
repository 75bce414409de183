"""The stress profile with real and fixture sensors.

The sustained run is measured on the real llama-server on SmolLM2 and, for its bookkeeping alone,
on the fake llama-server (tests/fakeserver.py); the sampler, the abort at temperature, Ctrl+C and
the external endpoint are llmspec's own logic and run against the fake only. The fake runs as a
process that llmspec's `Server` starts and watches, so server memory is real there too.
"""

import json
import shutil
import threading
import time
from pathlib import Path

import pytest

from llmspec.errors import CellError
from llmspec.machine.sensors import SensorSource, drop_pct
from llmspec.profiles import ProfileContext, median, stress
from llmspec.profiles.stress import StressProfile
from llmspec.run.client import ChatClient

REPO = Path(__file__).resolve().parent.parent
SYSFS = Path(__file__).parent / "fixtures" / "sysfs"
GIB = 2**30
NO_SENSOR_FLAG = "temperature: not available on this machine (no sensors)"


@pytest.fixture(scope="module")
def server(make_server):
    with make_server(ctx_size=512) as srv:
        yield srv


@pytest.fixture(scope="module")
def fake(make_fake_server):
    """32 tokens in about 0.16 s, so a few requests fit between samples."""
    with make_fake_server(ctx_size=512, extra=("--fake-token-delay-s", "0.005")) as srv:
        yield srv


def measure(server, sensors=None, progress=print, managed=True, **settings):
    settings = StressProfile(**{"duration_s": 6, "sample_interval_s": 1, "max_tokens": 32, **settings})
    client = ChatClient(server.url)
    ctx = ProfileContext(client, settings, REPO, progress=progress, server=server if managed else None)
    try:
        return stress.run(ctx, sensors)
    finally:
        client.close()


def split(outcome):
    vitals = [s for s in outcome.samples if s["kind"] == "vitals"]
    requests = [s for s in outcome.samples if s["kind"] == "request"]
    return vitals, requests


@pytest.mark.parametrize("which", [pytest.param("server", marks=pytest.mark.server), "fake"])
def test_sustained_run_on_this_machine(which, request, tmp_path):
    """Short prompts, so that even a machine shared with other work fits several requests in 6 s; the fake
    answers 32 tokens in about 0.16 s, so half the time and samples twice as often give it as many."""
    server = request.getfixturevalue(which)
    for i, text in enumerate(["Tell me a story about a fox.", "Describe a lighthouse in a storm."]):
        (tmp_path / f"{i}.txt").write_text(text)
    lines = []
    duration, every = (6, 1) if which == "server" else (3, 0.5)
    outcome = measure(server, progress=lines.append, prompts=str(tmp_path), duration_s=duration,
                      sample_interval_s=every)
    m, (vitals, requests) = outcome.metrics, split(outcome)
    print(m, outcome.flags)
    assert m["aborted"] == 0.0
    json.dumps([m, outcome.samples], allow_nan=False)  # goes into the result file as it is
    assert m["samples_taken"] == len(vitals) >= 3
    assert m["duration_s"] >= duration and vitals[-1]["elapsed_s"] >= duration  # the end state is sampled
    assert [v["elapsed_s"] for v in vitals] == sorted(v["elapsed_s"] for v in vitals)
    assert m["requests"] == len(requests) >= 2
    assert [r["prompt_name"] for r in requests[:2]] == ["0.txt", "1.txt"]
    assert any("requests" in line for line in lines)
    for r in requests:
        assert r["timings"]["cache_n"] == 0
        assert r["completion_tokens"] == r["timings"]["predicted_n"] == 32  # ignore_eos
        recomputed = (r["completion_tokens"] - 1) / (r["last_chunk_s"] - r["first_chunk_s"])
        assert r["decode_tokens_per_s"] == pytest.approx(recomputed)
    decode = [r["decode_tokens_per_s"] for r in requests]
    assert m["tokens_per_s"] == pytest.approx(median(decode)) and m["tokens_per_s"] > 0
    if len(decode) >= 2:
        spread = outcome.intervals["tokens_per_s"]
        assert spread.n == len(decode) and min(decode) <= spread.low <= m["tokens_per_s"] <= spread.high <= max(decode)
    assert m["server_tokens_per_s"] == pytest.approx(median([r["timings"]["predicted_per_second"] for r in requests]))
    assert isinstance(m["drift_pct"], float) and m["drift_pct"] == pytest.approx(drop_pct(decode))
    assert m["rss_peak_gb"] > 0
    assert m["rss_peak_gb"] == pytest.approx(max(v["rss_bytes"] for v in vitals) / GIB)
    swap = [v["swap_used_bytes"] for v in vitals]
    assert m["swap_peak_gb"] == pytest.approx((max(swap) - swap[0]) / GIB)
    assert vitals[-1]["tokens_per_s"] in decode  # the chart's series is the latest finished request
    temps = [v["temperature_c"] for v in vitals if v["temperature_c"] is not None]
    if temps:  # a machine with a sensor
        assert m["max_temperature_c"] == max(temps) and NO_SENSOR_FLAG not in outcome.flags
        assert m["mean_temperature_c"] == pytest.approx(sum(temps) / len(temps))
    else:  # this build machine: psutil finds none and /sys/class/thermal is empty
        assert m["max_temperature_c"] is None and m["mean_temperature_c"] is None
        assert NO_SENSOR_FLAG in outcome.flags
    freqs = [v["cpu_freq_mhz"] for v in vitals if v["cpu_freq_mhz"] is not None]
    assert (m["throttled"] is None) == (len(freqs) < 2)
    assert m["throttled"] in (0.0, 1.0, None)
    assert (m["cpu_freq_start_mhz"] is None) == (not freqs)


def test_fixture_sensors_report_temperature_and_frequency(fake):
    outcome = measure(fake, SensorSource(SYSFS / "cool"), duration_s=1, sample_interval_s=0.5)
    m = outcome.metrics
    assert m["max_temperature_c"] == 47.0 and m["mean_temperature_c"] == 47.0
    assert NO_SENSOR_FLAG not in outcome.flags
    assert m["cpu_freq_start_mhz"] == m["cpu_freq_end_mhz"] == 2300.0
    assert m["throttled"] == 0.0 and m["aborted"] == 0.0


class SwappingHost(SensorSource):
    """Swap cannot exist here (no swap device): 2 GiB in use when the cell starts sampling, 0.5 GiB
    more from half a second on (the samples come at 0 s, 1 s, 2 s, ...)."""

    def __init__(self):
        super().__init__(SYSFS / "cool")
        self.first = None

    def swap_used_bytes(self) -> int:
        self.first = self.first or time.monotonic()
        return 2 * GIB + (GIB // 2 if time.monotonic() - self.first > 0.5 else 0)


def test_swap_peak_is_the_swap_the_run_caused_not_the_systems(fake):
    outcome = measure(fake, SwappingHost(), duration_s=3)
    vitals, _ = split(outcome)
    assert [v["swap_used_bytes"] for v in vitals][:2] == [2 * GIB, 2 * GIB + GIB // 2], vitals
    assert outcome.metrics["swap_peak_gb"] == pytest.approx(0.5)


def test_abort_at_the_first_sample_is_an_outcome_not_an_error(fake):
    outcome = measure(fake, SensorSource(SYSFS / "hot"))  # 95.5 C against the default 90 C
    m, (vitals, requests) = outcome.metrics, split(outcome)
    assert m["aborted"] == 1.0
    assert len(vitals) == 1 and m["samples_taken"] == 1.0 and not requests  # nothing was generated
    assert m["max_temperature_c"] == 95.5
    assert m["tokens_per_s"] is None and m["drift_pct"] is None
    assert m["duration_s"] < 6
    assert any(f.startswith("aborted: CPU temperature 95.5 C reached the 90 C limit") for f in outcome.flags)
    assert m["rss_peak_gb"] > 0  # the vitals are still recorded


def test_heat_during_the_run_stops_it_between_requests(fake, tmp_path):
    root = tmp_path / "sysfs"
    shutil.copytree(SYSFS / "cool", root)
    zone = root / "sys/class/thermal/thermal_zone0/temp"

    def heat_up(line):  # the machine heats up once measured requests are under way
        if not line.startswith("warm-up"):
            zone.write_text("93000\n")

    outcome = measure(fake, SensorSource(root), progress=heat_up, duration_s=120)
    m, (vitals, requests) = outcome.metrics, split(outcome)
    assert m["aborted"] == 1.0 and requests
    assert vitals[0]["temperature_c"] == 47.0 and vitals[-1]["temperature_c"] == 93.0
    assert m["max_temperature_c"] == 93.0
    assert m["duration_s"] < 120
    assert any("93.0 C reached the 90 C limit" in f for f in outcome.flags)


def test_keyboard_interrupt_stops_the_sampler_and_propagates(fake):
    def interrupt(line):
        if line.startswith("warm-up"):
            return
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        measure(fake, progress=interrupt, duration_s=60)
    assert not [t for t in threading.enumerate() if t.name == "llmspec-stress-vitals"]


def test_external_endpoint_has_no_server_memory(fake):
    outcome = measure(fake, managed=False, duration_s=1, sample_interval_s=0.5)
    assert outcome.metrics["rss_peak_gb"] is None
    assert outcome.metrics["tokens_per_s"] > 0


def test_unreachable_server_is_a_cell_error():
    class Gone:
        url = "http://127.0.0.1:9"

    with pytest.raises(CellError, match="warm-up request failed"):
        measure(Gone(), managed=False)
    assert not [t for t in threading.enumerate() if t.name == "llmspec-stress-vitals"]


def test_inputs_fingerprint_settings_and_prompts():
    got = stress.KIND.inputs(StressProfile(), REPO)
    assert got["duration_s"] == 1800.0 and got["abort_temperature_c"] == 90.0
    assert set(got["prompt_files"]) == {p.name for p in (REPO / "prompts/interactive").glob("*.txt")}


def test_the_vitals_series_carries_the_gpu_when_nvidia_smi_answers(monkeypatch, tmp_path):
    """A fake nvidia-smi first on PATH replays two real GeForce cards (tests/fixtures/nvidia-smi)."""
    import os

    from llmspec.machine.gpu import GpuSource
    from llmspec.machine.sensors import SensorSource
    from llmspec.profiles.stress import Sampler

    fake = Path(__file__).parent / "fixtures" / "nvidia-smi" / "bin"
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    sample = Sampler(SensorSource(tmp_path), None, 90.0, GpuSource()).take()
    assert sample["gpu_power_w"] == pytest.approx(106.56 + 5.68) and sample["gpu_temperature_c"] == 60
    assert sample["gpu_memory_used_gb"] == pytest.approx((2856 + 4) / 1024)
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi: the samples say nothing of a GPU
    assert not any(k.startswith("gpu_") for k in Sampler(SensorSource(tmp_path), None, 90.0, GpuSource()).take())
