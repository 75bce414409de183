"""The memory estimate against what llama-server really took: every demo configuration's measured
peak (tests/fixtures/memory_peaks.json) within 15 %, from the GGUF facts alone."""

import json
from pathlib import Path

import pytest

from llmspec.models.memory import GB, estimate_memory, kv_cache_bytes

PEAKS = json.loads((Path(__file__).parent / "fixtures" / "memory_peaks.json").read_text())


@pytest.mark.parametrize("config", PEAKS["configurations"],
                         ids=lambda c: f"{c['model']}@{c['quant']}:{c['ctx_size']}")
def test_the_estimate_is_within_15_percent_of_the_measured_peak(config):
    meta = {**PEAKS["architecture"][config["model"]], "file_type": config["quant"]}
    est = estimate_memory(config["file_size"], meta, config["ctx_size"])
    assert est.total_gb == pytest.approx(config["peak_rss_gb"], rel=0.15)


def test_sliding_window_layers_cache_only_their_window():
    gemma = PEAKS["architecture"]["gemma-3-270m"]
    assert gemma["sliding_window"] == 512
    per_token_layer = 1 * (256 + 256) * 2  # one KV head of 256, K and V in f16
    # 3 of 18 layers see all 33,280 tokens; 15 keep the window plus one 512-token micro-batch
    assert kv_cache_bytes(gemma, 33280) == per_token_layer * (3 * 33280 + 15 * 1024)
    full = kv_cache_bytes({**gemma, "architecture": "llama"}, 33280)
    assert full == per_token_layer * 18 * 33280 and full / kv_cache_bytes(gemma, 33280) > 5


def test_a_file_without_architecture_facts_falls_back_to_1_2x_its_size():
    assert estimate_memory(int(10 * GB), None, 4096).total_gb == pytest.approx(12.0)
