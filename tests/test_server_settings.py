"""First-class [server] keys: validated in one line, passed as llama-server's own flags only when set
(so specs that do not set them keep their fingerprints), and read by the memory pre-flight."""

import os
from pathlib import Path

import pytest
from conftest import SMOL_MODEL

from llmspec.engines import argv, engine_named
from llmspec.errors import UserError
from llmspec.plan.planner import Plan
from llmspec.plan.termination import estimate_memory
from llmspec.spec import load_spec

META = {"layers": 30, "heads": 9, "kv_heads": 3, "embedding_length": 576}  # SmolLM2-135M's GGUF metadata


def args_of(project, server: str):
    return Plan(load_spec(project(SMOL_MODEL + "\n[server]\n" + server))).server_args()


def test_unset_keys_add_no_flags_so_existing_fingerprints_hold(project):
    plain = args_of(project, "ctx_size = 2048\nthreads = 2\n")
    assert list(argv(plain)) == ["--ctx-size", "2048", "--threads", "2", "--parallel", "1", "--cache-ram", "0",
                                 "--no-webui"]


def test_each_key_becomes_its_flag_before_extra_args(project):
    args = args_of(project, 'threads = 2\nbatch_size = 256\nubatch_size = 128\nflash_attn = "on"\n'
                            'cache_type_k = "q8_0"\ncache_type_v = "q8_0"\nn_gpu_layers = "all"\nmlock = true\n'
                            'parallel = 2\nextra_args = ["--cache-type-v", "q4_0"]\n')
    assert list(argv(args))[argv(args).index("--no-webui") + 1:] == [
        "--batch-size", "256", "--ubatch-size", "128", "--flash-attn", "on", "--cache-type-k", "q8_0",
        "--cache-type-v", "q8_0", "--n-gpu-layers", "all", "--load-mode", "mmap+mlock", "--cache-type-v", "q4_0"]
    assert args.parallel == 2 and args.ctx_per_slot == 2048
    # the user's extra argument wins, as it does for llama-server
    assert engine_named(args.engine).cache_types(args) == ("q8_0", "q4_0")
    assert list(argv(args_of(project, "no_mmap = true\n")))[-2:] == ["--load-mode", "none"]
    assert list(argv(args_of(project, "reasoning_budget = 0\n")))[-2:] == ["--reasoning-budget", "0"]
    assert list(argv(args_of(project, "no_mmap = true\nmlock = true\n")))[-2:] == ["--load-mode", "mlock"]


@pytest.mark.parametrize(("server", "expected"), [
    ('flash_attn = "yes"', "server.flash_attn: 'yes': Input should be 'on', 'off' or 'auto'"),
    ('cache_type_k = "q3_k"', "server.cache_type_k: 'q3_k': Input should be 'f32', 'f16', 'bf16', 'q8_0'"),
    ("n_gpu_layers = -1", "server.n_gpu_layers: -1: n_gpu_layers must be 0 or more, 'auto' or 'all'"),
    ("batch_size = 0", "server.batch_size: 0: Input should be greater than or equal to 1"),
    ("reasoning_budget = -2", "server.reasoning_budget: -2: Input should be greater than or equal to -1"),
    ('reasoning_budget = "low"', "server.reasoning_budget: 'low': Input should be a valid integer"),
])
def test_a_bad_value_is_one_line_naming_the_key(project, server, expected):
    with pytest.raises(UserError) as exc:
        load_spec(project(SMOL_MODEL + "\n[server]\n" + server + "\n"))
    assert expected in str(exc.value) and "\n" not in str(exc.value)


def test_a_quantized_kv_cache_shrinks_the_memory_estimate():
    f16 = estimate_memory(100_000_000, META, 65536)
    q8 = estimate_memory(100_000_000, META, 65536, ("q8_0", "q8_0"))
    kv_f16 = 30 * 65536 * 3 * (64 + 64) * 2
    assert f16.total_gb * 2**30 == pytest.approx(100e6 + kv_f16 + f16.compute_bytes)
    assert q8.total_gb * 2**30 == pytest.approx(100e6 + kv_f16 * 34 / 64 + q8.compute_bytes)
    assert "(q8_0/q8_0)" in q8.detail and "(" not in f16.detail.split("GB")[1]


@pytest.mark.server
def test_llama_server_runs_with_the_flags_and_refuses_a_bad_one(make_server):
    """The flags as this llama.cpp build spells them: it starts and answers with them, and the same
    command with one bad value does not start, so the flags are read, not ignored."""
    from llmspec.engines.base import ServerArgs
    from llmspec.errors import CellError
    from llmspec.run.client import ChatClient

    tuned = (("batch_size", 256), ("ubatch_size", 128), ("flash_attn", "on"), ("cache_type_k", "q8_0"),
             ("cache_type_v", "q8_0"), ("reasoning_budget", 64), ("no_mmap", True))
    server = make_server()
    server.args = ServerArgs(512, 1, 1, (), tuned)
    assert list(argv(server.args))[-14:] == ["--batch-size", "256", "--ubatch-size", "128", "--flash-attn", "on",
                                        "--cache-type-k", "q8_0", "--cache-type-v", "q8_0", "--reasoning-budget",
                                        "64", "--load-mode", "none"]
    with server:
        client = ChatClient(server.url)
        try:
            record = client.chat("Say OK.", prompt_name="t", max_tokens=4)
        finally:
            client.close()
    assert record.error is None and record.completion_tokens == 4
    bad = make_server(load_timeout_s=30)
    bad.args = ServerArgs(512, 1, 1, ("--cache-type-v", "q3_k"), tuned)
    with pytest.raises(CellError):
        with bad:
            pass


# --- the VRAM pre-flight: a fake nvidia-smi first on PATH (tests/fixtures/nvidia-smi) ---------------
FAKE_SMI = Path(__file__).parent / "fixtures" / "nvidia-smi"


def gpu_on_path(monkeypatch, tmp_path, free_mib: int | None = None):
    """The recorded two-GeForce sample; with `free_mib`, the same cards with that much free on each
    (a copy in tmp_path: the recorded file is left as it was recorded)."""
    monkeypatch.setenv("PATH", f"{FAKE_SMI / 'bin'}{os.pathsep}{os.environ['PATH']}")
    if free_mib is not None:
        rows = [line.split(", ") for line in (FAKE_SMI / "two-geforce.csv").read_text().splitlines()]
        sample = tmp_path / "low-memory.csv"
        sample.write_text("".join(", ".join([*r[:4], str(free_mib), *r[5:]]) + "\n" for r in rows))
        monkeypatch.setenv("FAKE_NVIDIA_SMI", str(sample))


@pytest.mark.model  # the estimate reads SmolLM2's layers and size from the file
def test_offloaded_layers_are_checked_against_the_gpus_free_memory(project, monkeypatch, tmp_path):
    spec = load_spec(project(SMOL_MODEL + '\n[server]\nctx_size = 65536\nn_gpu_layers = "all"\n'))
    cell = Plan(spec).cells[0]
    gpu_on_path(monkeypatch, tmp_path)
    assert not Plan(spec).decide(cell).skip  # 8319 + 6074 MiB free: it fits
    gpu_on_path(monkeypatch, tmp_path, free_mib=300)
    decision = Plan(spec).decide(cell)
    assert decision.rule == "vram" and decision.evidence == "vram"
    # 30 layers of SmolLM2 Q4_1 (~0.1 GB) and their 64k-token f16 KV cache (~1.4 GB) plus compute buffers
    assert decision.reason.startswith("needs about 1.") and "of GPU memory (30 of 30 layers with their KV cache" \
        in decision.reason and decision.reason.endswith(
        "more than the 0.59 GB free on 2 GPUs (GeForce GTX 1080 Ti, GeForce GTX 1060 6GB) (nvidia-smi)")
    half = load_spec(project(SMOL_MODEL + '\n[server]\nctx_size = 65536\nn_gpu_layers = 2\n'))
    assert not Plan(half).decide(Plan(half).cells[0]).skip  # 2 of 30 layers: 0.24 GB on the GPU
    monkeypatch.setenv("PATH", str(tmp_path))  # no GPU: the RAM rule alone, as without offloading
    assert not Plan(spec).decide(cell).skip
