"""Model files come from a local path, a package or a hub, and are known by size and sha256."""

import os
import subprocess
import sys

import gguf
import pytest
from fakehub import FakeHub
from test_init import tiny_gguf

from llmspec.errors import UserError
from llmspec.models import files as modelfiles
from llmspec.plan.planner import Plan
from llmspec.spec import load_spec


def local_spec(project, file: str):
    return load_spec(project(f"""
        [[models]]
        name = "smol"
        quants = ["Q4_1"]
        files = {{ Q4_1 = "{file}" }}
        """))


@pytest.mark.model
def test_local_path_is_linked_into_the_model_dir_and_identified_once(project, smol_gguf):
    spec = local_spec(project, str(smol_gguf))
    mf = Plan(spec).model_file("smol", "Q4_1")
    path = modelfiles.ensure(spec, mf)
    assert path == project.root / "build" / "models" / "smol" / smol_gguf.name
    assert path.is_symlink() and path.resolve() == smol_gguf.resolve()
    ident = modelfiles.identity(path)
    assert ident == {"name": smol_gguf.name, "size": smol_gguf.stat().st_size,
                     "sha256": modelfiles.sha256_file(smol_gguf)}
    cache = path.with_name(path.name + ".identity.json")
    stamp = cache.stat().st_mtime_ns
    assert modelfiles.identity(path) == ident and cache.stat().st_mtime_ns == stamp  # not hashed again


def test_missing_local_file_names_the_key(project):
    spec = local_spec(project, "nowhere/model.gguf")
    with pytest.raises(UserError, match=r"models: smol: files.Q4_1: nowhere/model.gguf does not exist"):
        modelfiles.ensure(spec, Plan(spec).model_file("smol", "Q4_1"))


@pytest.mark.model
def test_fingerprint_source_has_no_machine_paths(project, smol_gguf):
    spec = local_spec(project, "weights/smol.gguf")
    source = Plan(spec).model_file("smol", "Q4_1").source
    assert source == {"kind": "path", "origin": "weights/smol.gguf", "file": "weights/smol.gguf"}


@pytest.mark.model
def test_gguf_metadata_of_the_real_model(smol_gguf, tmp_path):
    link = tmp_path / smol_gguf.name
    link.symlink_to(smol_gguf)
    meta = modelfiles.metadata(link)
    assert meta["architecture"] == "llama" and meta["file_type"] == "Q4_1"
    assert meta["context_length"] == 8192 and meta["layers"] == 30
    assert meta["has_chat_template"] is True  # else results get a flag (gemma-3-270m from PyPI has none)
    assert 130e6 < meta["parameters"] < 140e6


def test_hub_model_is_downloaded_into_the_model_dir(project, monkeypatch):
    data = b"GGUF" + bytes(range(256)) * 100
    with FakeHub({("org/smol-GGUF", "smol-q4_1.gguf"): data}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        spec = load_spec(project("""
            [[models]]
            name = "smol"
            quants = ["Q4_1"]
            repo = "org/smol-GGUF"
            files = { Q4_1 = "smol-q4_1.gguf" }
            """))
        path = modelfiles.ensure(spec, Plan(spec).model_file("smol", "Q4_1"))
    assert path == project.root / "build" / "models" / "smol" / "smol-q4_1.gguf"
    assert path.read_bytes() == data


@pytest.mark.model
def test_models_command_shows_inventory(project, smol_gguf):
    spec_path = project(f"""
        [[models]]
        name = "smol"
        quants = ["Q4_1", "Q8_0"]
        files = {{ Q4_1 = "{smol_gguf}" }}
        derive = {{ Q8_0 = "Q4_1" }}
        """)
    spec = load_spec(spec_path)
    modelfiles.ensure(spec, Plan(spec).model_file("smol", "Q4_1"))
    broken = project.root / "build" / "models" / "old" / "old.gguf"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"GGUF")
    tiny_gguf(project.root / "build" / "models" / "other" / "other-Q8_0.gguf", gguf.LlamaFileType.MOSTLY_Q8_0)
    away = str(project.root / "elsewhere")  # no other tool's folder: only model_dir holds strays
    env = {**os.environ, "HOME": away, "HF_HUB_CACHE": away, "OLLAMA_MODELS": away, "LLAMA_CACHE": away}
    out = subprocess.run([sys.executable, "-m", "llmspec.cli", "models", str(spec_path)], cwd=project.root,
                         capture_output=True, text=True, check=True, env=env).stdout
    table, _, rest = out.partition("\n\n")
    lines = {line.split()[1]: line for line in table.splitlines()[2:] if not line.startswith("note:")}
    assert "available" in lines["Q4_1"] and "98 MB" in lines["Q4_1"]
    assert "to derive from Q4_1" in lines["Q8_0"]
    assert f"note: {broken}: not a readable GGUF file" in out
    assert rest.startswith("1 GGUF file(s) on this machine not in specs/t.toml; to measure them, add:")
    assert 'name = "other"' in rest and 'Q8_0 = "build/models/other/other-Q8_0.gguf"' in rest


@pytest.mark.model
def test_fast_header_reader_agrees_with_llama_cpps_gguf_reader(smol_gguf):
    """The second source: gguf.GGUFReader (slow, complete) must read the same values."""
    import gguf

    from llmspec.models.gguf import read_header

    fields, params = read_header(smol_gguf)
    reader = gguf.GGUFReader(str(smol_gguf))
    assert params == sum(int(t.n_elements) for t in reader.tensors)
    for key in ("general.architecture", "llama.context_length", "llama.block_count", "llama.attention.head_count",
                "llama.attention.head_count_kv", "llama.embedding_length", "general.file_type"):
        assert fields[key] == reader.fields[key].contents(), key


@pytest.mark.model
def test_truncated_gguf_is_a_clear_error(smol_gguf, tmp_path):
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(smol_gguf.read_bytes()[:5000])
    with pytest.raises(UserError, match="cut.gguf: not a readable GGUF file"):
        modelfiles.metadata(cut)
