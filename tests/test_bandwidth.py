"""The host's bandwidth is measured once, cached per host folder, and turned into percent of bound."""

import json
import math
import statistics

import pytest

from llmspec.machine import bandwidth

SMALL_MB = 32  # enough to exercise the threads; the figure's accuracy is not under test here


def test_measure_gives_a_consistent_positive_figure():
    found = bandwidth.measure(SMALL_MB, repeats=3)
    runs = found["runs_gbps"]
    assert len(runs) == 3 and all(math.isfinite(r) and r > 0 for r in runs)
    assert found["copy_gbps"] == max(runs)
    assert found["median_gbps"] == statistics.median(runs)
    assert found["threads"] >= 1 and found["version"] == bandwidth.VERSION
    assert found["copied_mb"] == pytest.approx(SMALL_MB, rel=0.01)


def test_ensure_measures_once_then_reads_the_cache(tmp_path):
    first = bandwidth.ensure(tmp_path, "host-a", size_mb=SMALL_MB)
    file = tmp_path / "host-a" / "bandwidth.json"
    text, mtime = file.read_text(), file.stat().st_mtime_ns
    assert json.loads(text)["copy_gbps"] == first["copy_gbps"]

    again = bandwidth.ensure(tmp_path, "host-a", size_mb=SMALL_MB)
    assert again == first
    assert file.read_text() == text and file.stat().st_mtime_ns == mtime


@pytest.mark.parametrize("content", ['{"version": 0, "copy_gbps": 12.5}', '{"version": 1, "copy_gbps": -1}', "{torn"])
def test_outdated_or_invalid_cache_is_measured_again(tmp_path, content):
    file = bandwidth.path(tmp_path, "host-a")
    file.parent.mkdir()
    file.write_text(content)
    found = bandwidth.ensure(tmp_path, "host-a", size_mb=SMALL_MB)
    assert found["version"] == bandwidth.VERSION and found["copy_gbps"] > 0
    assert json.loads(file.read_text()) == found


def test_load_all_reads_every_valid_host_and_skips_a_corrupt_one(tmp_path, caplog):
    for host, gbps in (("host-a", 12.5), ("host-b", 40.0)):
        bandwidth.path(tmp_path, host).parent.mkdir()
        bandwidth.path(tmp_path, host).write_text(json.dumps({"version": bandwidth.VERSION, "copy_gbps": gbps}))
    (tmp_path / "host-c").mkdir()
    bandwidth.path(tmp_path, "host-c").write_text('{"version": 1, "copy_gb')
    (tmp_path / "host-d" / "demo").mkdir(parents=True)  # results but never measured: silently absent

    assert bandwidth.load_all(tmp_path) == {"host-a": 12.5, "host-b": 40.0}
    assert "host-c" in caplog.text
    assert bandwidth.load_all(tmp_path / "missing") == {}


def test_bandwidth_file_is_not_mistaken_for_a_result(tmp_path):
    from llmspec.report.frame import result_paths

    bandwidth.path(tmp_path, "host-a").parent.mkdir()
    bandwidth.path(tmp_path, "host-a").write_text("{}")
    assert result_paths(tmp_path, "demo") == []


def test_roofline_pct():
    # 100 MB read per token at 20 t/s is 2 GB/s: a tenth of a 20 GB/s host
    assert bandwidth.roofline_pct(20.0, 100e6, 20.0) == pytest.approx(10.0)
    assert bandwidth.roofline_pct(0.0, 100e6, 20.0) == 0.0
