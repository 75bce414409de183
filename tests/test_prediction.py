"""Speed predictions (`plan.prediction`): prompt speed from the work a prompt token really does,
GPU decode from the GPU's published bandwidth, each basis saying what calibrated it and the
leave-one-out error, and the runner's read of this host's results cached per run yet still
calibrating each cell by everything measured before it."""

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from conftest import REPO, SMOL_MODEL, doit

from llmspec.machine.gpu import GpuReading, GpuSource
from llmspec.machine.gpu_bandwidth import lookup
from llmspec.plan.prediction import (
    DEFAULT_EFFICIENCY,
    GpuSpeed,
    HostResults,
    Speed,
    calibrate,
    gpu_speed,
    host_results,
    prompt_parameters,
)

FIXTURES = Path(__file__).parent / "fixtures"
VM = "amd-epyc-2c-24g-ef098a"  # the demo host: SmolLM2 Q4_1 and Q8_0 interactive results
GEMMA = {"parameters": 268_098_176, "vocab_size": 262_144, "embedding_length": 640, "file_type": "Q8_0"}
SMOL = {"parameters": 134_515_008, "vocab_size": 49_152, "embedding_length": 576, "file_type": "Q8_0"}


def test_a_prompt_token_is_not_charged_for_the_embedding_table():
    # gemma-3-270m: 168 M of its 268 M parameters are the 262k-token table a prompt only looks up
    assert prompt_parameters(GEMMA) == 268_098_176 - 262_144 * 640
    assert prompt_parameters(SMOL) == 134_515_008 - 49_152 * 576
    assert prompt_parameters({"parameters": 1000}) == 1000  # no vocabulary facts: every parameter
    assert prompt_parameters({}) is None
    # both models multiply a prompt token through about 100 M weights, so at one FLOP rate their prompt
    # speeds are alike (demo, Q8_0: 355 and 331 t/s), not 2:1 as counting every parameter made them
    speed = Speed(26.5, "fixture", flops=70e9)
    assert 1.0 < speed.prompt(GEMMA) / speed.prompt(SMOL) < 1.1  # 100 M and 106 M weights per token


def test_prompt_speed_is_calibrated_by_this_hosts_results_of_the_same_quant_type():
    results = host_results(FIXTURES / "results", VM)
    speed = calibrate(results, 26.5, "26 GB/s measured")
    by_file = {r["model_file"]["quant"]: r for r in results if r["cell"]["profile"] == "interactive"}
    for result in by_file.values():  # each measured type predicts its own measured speed back
        meta = result["model_file"]["metadata"]
        assert speed.prompt(meta) == pytest.approx(result["metrics"]["prompt_tokens_per_s"])
    # a type this host has not measured gets the median rate of all, over its own work per token
    q4km = speed.prompt({**GEMMA, "file_type": "Q4_K_M"})
    assert q4km == pytest.approx(speed.flops / (2 * prompt_parameters(GEMMA)))
    # what calibrated it, and the error to expect for a configuration not measured yet
    assert "from 2 measured prompt speed(s) on this host" in speed.prompt_basis
    assert "leave-one-out error" in speed.prompt_basis and "over 2 configurations" in speed.prompt_basis
    assert "calibrated by 2 measured result(s)" in speed.basis and "leave-one-out error" in speed.basis
    one = calibrate([by_file["Q8_0"]], 26.5, "26 GB/s measured")
    assert "one configuration: no leave-one-out error yet" in one.prompt_basis
    assert calibrate([], 26.5, "x").prompt_basis == "no measured prompt speed on this host"


def test_leave_one_out_error_is_each_configuration_predicted_from_the_others():
    results = [r for r in host_results(FIXTURES / "results", VM) if r["cell"]["profile"] == "interactive"]
    q8, q41 = sorted(results, key=lambda r: r["model_file"]["quant"], reverse=True)
    speed = calibrate(results, 26.5, "26 GB/s measured")
    # prompt: Q8_0 predicted from Q4_1's rate and the other way round (same model: the rates compare as the speeds)
    a, b = q8["metrics"]["prompt_tokens_per_s"], q41["metrics"]["prompt_tokens_per_s"]
    errors = sorted([(b - a) / a * 100, (a - b) / b * 100])
    assert f"leave-one-out error {errors[0]:+.0f} % to {errors[1]:+.0f} % over 2 configurations" in speed.prompt_basis
    # decode: Q8_0's speed from Q4_1's per-token cost beside the roofline
    roof = lambda r: r["model_file"]["size"] / (26.5e9 * DEFAULT_EFFICIENCY)
    cost = lambda r: 1 / r["metrics"]["server_tokens_per_s"] - roof(r)
    predicted_q8 = 1 / (cost(q41) + roof(q8))
    error_q8 = (predicted_q8 - q8["metrics"]["server_tokens_per_s"]) / q8["metrics"]["server_tokens_per_s"] * 100
    assert f"{error_q8:+.0f} %" in speed.basis


def test_gpu_bandwidth_comes_from_the_table_of_known_gpus_with_its_source():
    gbps, source = lookup("NVIDIA GeForce RTX 3060")
    assert gbps == 360 and "192 bit" in source
    assert lookup("NVIDIA GeForce RTX 3060 Ti")[0] == 448  # the longer name wins
    assert lookup("NVIDIA H200")[0] == 4800 and "recalled" in lookup("NVIDIA H200")[1]
    assert lookup("Matrox G200") is None
    unknown = GpuReading(0, "Matrox G200", 8192, 0, 8192, 0, 30, None, None, None)
    gpu, why = gpu_speed([unknown])
    assert gpu is None and why == "memory bandwidth of Matrox G200 not known (machine/gpu_bandwidth.py)"
    speed = calibrate([], 26.5, "x", [unknown])
    assert speed.decode(4e9, gpu_bytes=4e9) is None and speed.gpu_note == why


def test_gpu_decode_reads_the_weights_at_the_gpus_bandwidth_and_a_partial_offload_adds_both_parts(monkeypatch):
    monkeypatch.setenv("PATH", os.pathsep.join([str(FIXTURES / "nvidia-smi" / "bin"), str(Path(sys.executable).parent),
                                                os.environ.get("PATH", "")]))
    monkeypatch.setenv("FAKE_NVIDIA_SMI", "rtx3060-12gb.csv")
    speed = calibrate([], 80.0, "80 GB/s", GpuSource().read())
    assert "NVIDIA GeForce RTX 3060 360 GB/s" in speed.gpu.basis and "uncalibrated" in speed.gpu.basis
    size = 9e9
    on_gpu = speed.decode(size, gpu_bytes=size)
    assert on_gpu == pytest.approx(360e9 * DEFAULT_EFFICIENCY / size)
    on_cpu = speed.decode(size)
    assert on_cpu == pytest.approx(80e9 * DEFAULT_EFFICIENCY / size)
    # 7 of 9 GB offloaded: a token reads the GPU's part, then the CPU's; the slower (CPU) part dominates
    split = speed.decode(size, gpu_bytes=7e9)
    assert split == pytest.approx(1 / (7e9 / (360e9 * 0.65) + 2e9 / (80e9 * 0.65)))
    assert on_cpu < split < on_gpu and split < 80e9 * 0.65 / 2e9
    # two GPUs split the layers by free memory and each reads its share
    two = GpuSpeed(((0.75, 400.0), (0.25, 200.0)), "fixture")
    assert two.seconds(8e9, 1.0) == pytest.approx(6e9 / 400e9 + 2e9 / 200e9)


def test_host_results_are_parsed_once_and_again_only_when_they_change(tmp_path):
    root = tmp_path / "results"
    shutil.copytree(FIXTURES / "results" / VM, root / VM)
    cache = HostResults()
    first = cache.read(root, VM)
    assert len(first) == 3 and cache.parsed == 3
    assert cache.read(root, VM) == first and cache.parsed == 3  # nothing changed: nothing parsed again
    new = root / VM / "demo" / "SmolLM2-135M-Instruct" / "Q8_0" / "batch.json"
    new.write_text(json.dumps({"status": "ok", "cell": {"profile": "batch"}}))  # the cell just measured
    changed = root / VM / "demo" / "SmolLM2-135M-Instruct" / "Q4_1" / "interactive.json"
    data = json.loads(changed.read_text())
    data["metrics"]["server_tokens_per_s"] = 1.0
    changed.write_text(json.dumps(data))  # rewritten (another size): read again
    again = cache.read(root, VM)
    assert cache.parsed == 5 and len(again) == 4
    assert again == host_results(root, VM)  # exactly what a fresh read sees
    (root / VM / "demo" / "SmolLM2-135M-Instruct" / "Q8_0" / "interactive.json").unlink()
    assert len(cache.read(root, VM)) == 3  # a removed file is gone from what it returns


TWO_SPECS = """
[server]
ctx_size = 1024

[profiles.interactive]
requests = 3
max_tokens = 32
""" + SMOL_MODEL


@pytest.mark.server
def test_one_run_grades_each_cell_by_the_results_measured_before_it(tmp_path, llama_server):
    """Two specs measuring the same model file in one `doit` run: the second cell's prediction is
    calibrated by the first's result, written during the run, so the cache must have seen it."""
    from test_doit import write_bandwidth

    (tmp_path / "specs").mkdir()
    (tmp_path / "prompts").symlink_to(REPO / "prompts")
    for name in ("a", "b"):
        (tmp_path / "specs" / f"{name}.toml").write_text(TWO_SPECS)
    write_bandwidth(tmp_path)
    doit(tmp_path)
    found = sorted((tmp_path / "build" / "results").glob("*/*/*/*/interactive.json"))
    first, second = sorted((json.loads(p.read_text()) for p in found), key=lambda r: r["started_at"])
    assert first["status"] == second["status"] == "ok"
    # the first: uncalibrated roofline; no measured prompt speed yet, so none predicted
    size = first["model_file"]["size"]
    assert first["metrics"]["predicted_tokens_per_s"] == pytest.approx(25e9 * 0.65 / size, rel=1e-5)
    assert "predicted_prompt_tokens_per_s" not in first["metrics"]
    # the second: calibrated by the first alone (same file), so it predicts the first's measured speeds
    m = second["metrics"]
    assert m["predicted_tokens_per_s"] == pytest.approx(first["metrics"]["server_tokens_per_s"], rel=1e-6)
    assert m["predicted_prompt_tokens_per_s"] == pytest.approx(first["metrics"]["prompt_tokens_per_s"], rel=1e-6)


def gpu_result(tps: float, size: int = 9_000_000_000, share: float = 1.0, name: str = "m.gguf") -> dict:
    """A single-user result with `share` of the layers offloaded, as the runner writes it."""
    return {"status": "ok", "cell": {"profile": "interactive"}, "server": {},
            "metrics": {"server_tokens_per_s": tps, "gpu_memory_used_gb": 8.0, "gpu_layers_share": share},
            "model_file": {"name": name, "size": size, "metadata": {"file_type": "Q4_K_M"}}}


def test_gpu_results_calibrate_the_gpu_prediction_and_never_the_cpus(monkeypatch):
    monkeypatch.setenv("PATH", os.pathsep.join([str(FIXTURES / "nvidia-smi" / "bin"), os.environ.get("PATH", "")]))
    monkeypatch.setenv("FAKE_NVIDIA_SMI", "rtx3060-12gb.csv")
    gpus = GpuSource().read()
    measured = [gpu_result(20.0), gpu_result(40.0, share=0.5, name="half.gguf")]  # the partial one calibrates nothing
    speed = calibrate(measured, 80.0, "80 GB/s", gpus)
    assert speed.basis.endswith("uncalibrated (no measured result on this host)")  # GPU results: not the CPU's
    assert "calibrated by 1 measured GPU result(s) on this host" in speed.gpu.basis
    assert "uncalibrated" not in speed.gpu.basis and "one configuration" in speed.gpu.basis
    assert speed.decode(9_000_000_000, gpu_bytes=9_000_000_000) == pytest.approx(20.0)  # its own speed back
    two = calibrate([gpu_result(20.0), gpu_result(30.0, size=6_000_000_000, name="b.gguf")], 80.0, "x", gpus)
    assert "leave-one-out error" in two.gpu.basis and "over 2 configurations" in two.gpu.basis


@pytest.mark.server
def test_a_gpu_cell_stores_its_gpu_prediction(tmp_path, llama_server, monkeypatch):
    """A cell with every layer offloaded, on a host whose nvidia-smi (the fake) names an RTX 3060:
    the decode predicted from its 360 GB/s and the share offloaded are stored, the CPU's prompt
    prediction is not. (This llama-server is a CPU build: it runs the cell on the CPU regardless.)"""
    from test_doit import write_bandwidth

    monkeypatch.setenv("PATH", os.pathsep.join([str(FIXTURES / "nvidia-smi" / "bin"), os.environ["PATH"]]))
    monkeypatch.setenv("FAKE_NVIDIA_SMI", "rtx3060-12gb.csv")
    (tmp_path / "specs").mkdir()
    (tmp_path / "prompts").symlink_to(REPO / "prompts")
    (tmp_path / "specs" / "g.toml").write_text(TWO_SPECS.replace("ctx_size = 1024", 'ctx_size = 1024\n'
                                                                 'n_gpu_layers = "all"'))
    write_bandwidth(tmp_path)
    doit(tmp_path)
    (path,) = (tmp_path / "build" / "results").glob("*/*/*/*/interactive.json")
    result = json.loads(path.read_text())
    assert result["status"] == "ok", result["reason"]
    m = result["metrics"]
    assert m["gpu_layers_share"] == 1.0
    assert m["predicted_tokens_per_s"] == pytest.approx(360e9 * 0.65 / result["model_file"]["size"], abs=0.01)
    assert "predicted_prompt_tokens_per_s" not in m


@pytest.mark.parametrize("tied", [True, False])
def test_an_untied_output_matrix_is_read_from_the_header_and_not_counted_as_prompt_work(tmp_path, tied):
    """A real GGUF (llama.cpp's gguf writer): 8 x 4 embedding table, 4 x 4 layer weight, and an 8 x 4
    output matrix unless the model reuses the table for it."""
    import gguf
    import numpy as np

    from llmspec.models.gguf import read_header
    from llmspec.models.identity import metadata_of

    path = tmp_path / "m.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_embedding_length(4)
    writer.add_vocab_size(8)
    writer.add_tensor("token_embd.weight", np.zeros((8, 4), dtype=np.float32))
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((4, 4), dtype=np.float32))
    if not tied:
        writer.add_tensor("output.weight", np.zeros((8, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    meta = metadata_of(*read_header(path))
    assert meta["parameters"] == (48 if tied else 80) and meta["vocab_size"] == 8
    assert meta["output_parameters"] == (0 if tied else 32)
    assert prompt_parameters(meta) == 16  # the layer's weights alone, tied or not
