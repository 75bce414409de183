"""The real llama-server on the real SmolLM2 model: start, measure, stop, nothing left behind."""

from pathlib import Path

import psutil
import pytest
import requests

from llmspec.errors import CellError
from llmspec.run.client import ChatClient

pytestmark = pytest.mark.server


def test_start_answers_and_stop_leaves_no_process(make_server, tmp_path):
    server = make_server(threads=2, folder=tmp_path)
    server.start()
    pid = server.proc.pid
    assert requests.get(f"{server.url}/health", timeout=5).status_code == 200
    assert server.load.load_time_s > 0
    assert server.peak_rss_bytes() > 50e6  # the 98 MB model is mapped and touched
    assert (tmp_path / "server.pid").exists()
    server.stop()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not (tmp_path / "server.pid").exists()


def test_streamed_figures_agree_with_server_timings(make_server, tmp_path):
    with make_server(threads=2, folder=tmp_path) as server:
        client = ChatClient(server.url)
        record = client.chat("Tell me a story about a fox.", max_tokens=48, ignore_eos=True, seed=1)
    assert record.error is None
    assert record.timings["cache_n"] == 0  # cache_prompt=false: every prompt processed from scratch
    assert record.timings["predicted_n"] == 48
    assert record.usage["completion_tokens"] == 48
    assert 0 < record.first_event_s <= record.ttft_s < record.total_s
    # both clocks are there to compare (how closely they agree is benchmarks/fidelity.py's figure)
    assert record.decode_tokens_per_s() > 0 and record.timings["predicted_per_second"] > 0


def test_corrupt_model_fails_to_load_with_the_servers_reason(make_server, tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 4096)
    server = make_server(threads=2, folder=tmp_path, model=bad)
    with pytest.raises(CellError, match="failed to load"):
        server.start()
    assert not llama_servers_under_path(tmp_path)


def test_load_timeout_stops_the_server(make_server, tmp_path):
    server = make_server(threads=2, folder=tmp_path, load_timeout_s=0.01)
    with pytest.raises(CellError, match="did not load within 0.01 s"):
        server.start()
    assert not llama_servers_under_path(tmp_path)


def test_leftover_server_from_a_killed_run_is_stopped(make_server, tmp_path):
    first = make_server(threads=2, folder=tmp_path)
    first.start()
    orphan = first.proc.pid
    first.proc = None  # forget it, as a SIGKILLed run would; its pid file stays
    second = make_server(threads=2, folder=tmp_path)
    second.start()
    try:
        assert not psutil.pid_exists(orphan) or psutil.Process(orphan).status() == psutil.STATUS_ZOMBIE
    finally:
        second.stop()


def llama_servers_under_path(folder: Path):
    from conftest import llama_servers_under

    return llama_servers_under(folder)
