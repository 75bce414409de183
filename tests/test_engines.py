"""Engines as a matrix dimension: the seam (`llmspec.engines`), names and fingerprints, skips for what
an engine cannot do, a toy engine in one module run end to end through doit, and llama-server
against mistral.rs on the same real file with the report's Engines block."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SMOL_MODEL, doit, executed_cells

from llmspec.engines import DEFAULT, ENGINES, argv, engine_named
from llmspec.engines.base import ServerArgs, Timings
from llmspec.errors import UserError
from llmspec.plan.planner import Plan
from llmspec.plan.targets import LocalModel
from llmspec.spec import load_spec

TESTS = Path(__file__).resolve().parent


def plan_of(project, text: str) -> Plan:
    return Plan(load_spec(project(text + SMOL_MODEL)), cores=2)


def test_a_spec_that_names_no_engine_keeps_names_paths_and_fingerprint_parts(project):
    """Results measured before engines existed stay up to date: no `+engine` in names or paths, and
    the server part of the fingerprint is exactly what it was (version and llama-server's argv)."""
    plan = plan_of(project, "[server]\nctx_size = 1024\nthreads = 2\n")
    (cell,) = plan.cells
    assert cell.task_name == "t:SmolLM2-135M-Instruct@Q4_1:interactive"
    assert plan.result_path(cell).parts[-2:] == ("Q4_1", "interactive.json")
    parts = LocalModel(plan.model_file("SmolLM2-135M-Instruct", "Q4_1")).fingerprint_parts(None, "v1",
                                                                                         plan.server_args())
    assert parts["server"] == {"version": "v1", "args": ["--ctx-size", "1024", "--threads", "2", "--parallel", "1",
                                                         "--cache-ram", "0", "--no-webui"]}


def test_engines_in_a_sweep_are_variants_named_after_them(project):
    plan = plan_of(project, '[server.sweep]\nengine = ["llama-server", "mistralrs"]\nthreads = [1, 2]\n')
    names = [c.task_name for c in plan.cells]
    assert names == [f"t:SmolLM2-135M-Instruct@Q4_1+{e}-t{t}:interactive" for e in ("llama-server", "mistralrs")
                     for t in (1, 2)]
    args = plan.server_args("mistralrs-t2")
    assert args.engine == "mistralrs" and argv(args)[:4] == ("--ctx-size", "4096", "--threads", "2")
    model = LocalModel(plan.model_file("SmolLM2-135M-Instruct", "Q4_1"))
    assert model.fingerprint_parts(None, "m", args)["server"]["engine"] == "mistralrs"
    assert model.server_block("m", args)["engine"] == "mistralrs"


def test_an_engine_named_in_server_alone_is_one_variant(project):
    plan = plan_of(project, '[server]\nengine = "mistralrs"\n')
    assert [c.task_name for c in plan.cells] == ["t:SmolLM2-135M-Instruct@Q4_1+mistralrs:interactive"]


def test_an_unknown_engine_is_one_line_naming_the_key(project):
    with pytest.raises(UserError) as exc:
        load_spec(project('[server]\nengine = "vllm"\n' + SMOL_MODEL))
    message = str(exc.value)
    assert message.endswith("t.toml: server.engine: 'vllm': unknown engine: use one of llama-server, mistralrs, "
                            "ollama")
    assert "\n" not in message


def test_what_an_engine_cannot_do_is_a_skip_with_the_reason(project):
    """A setting the engine has no way to honour (Ollama has one KV cache type for K and V), and a
    profile's declared need the engine lacks (long context counts tokens with the server's /tokenize,
    which Ollama does not offer), are skips with a reason, decided before anything starts."""
    plan = plan_of(project, '[server]\nengine = "ollama"\ncache_type_k = "q8_0"\ncache_type_v = "q4_0"\n')
    (cell,) = plan.cells
    decision = plan.decide(cell)
    assert decision.skip and decision.rule == "engine" and "ollama" in decision.reason
    plan = plan_of(project, '[server]\nengine = "ollama"\n[profiles.interactive]\n[profiles.long_context]\n')
    decisions = {c.profile: plan.decide(c) for c in plan.cells}
    assert not decisions["interactive"].skip
    assert decisions["long_context"].reason == ("ollama does not offer tokenize, which the long_context profile "
                                                "needs")


def test_a_reasoning_budget_only_an_engine_that_caps_it_runs(project):
    """llama-server caps the thinking (--reasoning-budget); Ollama and mistral.rs have no such setting,
    so their cells are skips that say so, and a swept budget is a variant named after it."""
    plan = plan_of(project, "[server.sweep]\nengine = [\"llama-server\", \"ollama\", \"mistralrs\"]\n"
                            "reasoning_budget = [0]\n")
    decisions = {c.variant: plan.decide(c) for c in plan.cells}
    assert sorted(decisions) == ["llama-server-think0", "mistralrs-think0", "ollama-think0"]
    assert not decisions["llama-server-think0"].skip
    for engine in ("ollama", "mistralrs"):
        found = decisions[f"{engine}-think0"]
        assert found.skip and found.rule == "engine" and found.reason == f"{engine} has no setting for reasoning_budget"
    assert plan.variants["llama-server-think0"].flags() == "--reasoning-budget 0"


def test_each_engine_reads_its_own_clock():
    sent = {"prompt_n": 10, "prompt_ms": 5.0, "predicted_n": 4, "predicted_ms": 40.0, "cache_n": 0,
            "predicted_per_second": 100}
    llama = engine_named(DEFAULT).timings({"timings": sent})
    assert llama.as_dict()["cache_n"] == 0 and llama.as_dict()["predicted_per_second"] == 100  # stored as sent
    usage = {"prompt_tokens": 42, "completion_tokens": 128, "total_prompt_time_sec": 1.18,
             "total_completion_time_sec": 4.28}
    mistral = engine_named("mistralrs").timings({"usage": usage}).as_dict()
    assert mistral["predicted_per_second"] == pytest.approx(128 / 4.28)
    assert mistral["prompt_per_second"] == pytest.approx(42 / 1.18)
    assert "cache_n" not in mistral  # not reported: missing, never an invented 0
    assert Timings().as_dict() == {}


def test_every_registered_engine_builds_a_command_with_its_model_and_port(tmp_path):
    args = ServerArgs(2048, 2, 1, (), (), DEFAULT)
    for name, engine in ENGINES.items():
        command = engine.command(Path("/bin/prog"), tmp_path / "m.gguf", "127.0.0.1", 4321,
                                 ServerArgs(2048, 2, 1, (), (), name))
        env = engine.environment("127.0.0.1", 4321, args, tmp_path)
        assert "4321" in " ".join(command) + " ".join(env.values()), name
        assert engine.estimate(100_000_000, None, args).total_gb > 0.1, name


DODO = f"""
import sys
from pathlib import Path
sys.path.insert(0, {str(TESTS)!r})
from toy_engine import Toy
from llmspec.engines import register
register(Toy())
from llmspec.tasks import generate, selected_specs
globals().update(generate(Path.cwd(), selected_specs()))
"""


@pytest.mark.doit
def test_a_toy_engine_in_one_module_runs_end_to_end_through_doit(project):
    """tests/toy_engine.py and one `register` call (here in the project's own dodo.py) are all it takes."""
    spec = project('[server]\nengine = "toy"\nctx_size = 1024\n[limits]\nquiet_wait_s = 20\n'
                   "[profiles.interactive]\nrequests = 3\nmax_requests = 3\nmax_tokens = 16\n" + SMOL_MODEL)
    root = spec.parent.parent
    (root / "dodo.py").write_text(DODO)
    command = [sys.executable, "-m", "doit", "-f", str(root / "dodo.py"), "-d", str(root)]
    first = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    assert executed_cells(first.stdout) == ["cell:t:SmolLM2-135M-Instruct@Q4_1+toy:interactive"]
    (path,) = (root / "build" / "results").rglob("interactive.json")
    assert path.parent.name == "Q4_1+toy"
    result = json.loads(path.read_text())
    assert result["status"] == "ok", result["reason"]
    assert result["server"]["engine"] == "toy" and result["server"]["version"] == "toy 1.0"
    assert result["server"]["args"][:2] == ["--ctx-size", "1024"]
    assert result["metrics"]["server_tokens_per_s"] > 0  # the toy's own clock, read by its own `timings`
    assert any("does not report cached prompt tokens" in f for f in result["flags"])
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert executed_cells(again.stdout) == []


ENGINES_SPEC = """
[server]
ctx_size = 1024
threads = 1
[server.sweep]
engine = ["llama-server", "mistralrs"]
[limits]
quiet_wait_s = 30
[profiles.interactive]
requests = 3
max_requests = 5
max_tokens = 32
"""


@pytest.mark.server
def test_llama_server_and_mistralrs_measure_the_same_file_and_the_report_ranks_them(project):
    pytest.importorskip("mistralrs")
    spec = project(ENGINES_SPEC + SMOL_MODEL)
    root = spec.parent.parent
    out = doit(root)
    assert sorted(executed_cells(out.stdout)) == [f"cell:t:SmolLM2-135M-Instruct@Q4_1+{e}:interactive"
                                                 for e in ("llama-server", "mistralrs")]
    found = {p.parent.name: json.loads(p.read_text()) for p in (root / "build" / "results").rglob("interactive.json")}
    for config, result in found.items():
        assert result["status"] == "ok", (config, result["reason"])
        m = result["metrics"]
        assert m["tokens_per_s"] > 0 and m["server_tokens_per_s"] > 0 and m["peak_rss_gb"] > 0.05
        interval = result["intervals"]["tokens_per_s"]
        assert interval["low"] <= m["tokens_per_s"] <= interval["high"]
    mistral = found["Q4_1+mistralrs"]
    assert mistral["server"]["engine"] == "mistralrs" and mistral["server"]["version"].startswith("mistralrs ")
    assert "--prefix-cache-n" in mistral["server"]["args"]  # its prefix cache is off: every prompt from scratch
    assert all("cache_n" not in (s.get("timings") or {}) for s in mistral["samples"])
    report = json.loads((root / "build" / "reports" / "t" / "results.json").read_text())
    (engines,) = [f for f in report["recommendations"]["engines"] if f["case"] == "interactive chat"]
    assert {e["engine"] for e in engines["engines"]} == {"llama-server", "mistralrs"}
    assert engines["command"].startswith(engines["leader"] if engines["leader"] != "mistralrs" else "python")
    assert "Engines" in (root / "build" / "reports" / "t" / "report.html").read_text()
    assert executed_cells(doit(root).stdout) == []
