"""`llmspec suggest` on fixture hosts (an 8 GB laptop, a 24 GB desktop with a 12 GB GPU seen through
the fake nvidia-smi, the 2-core VM whose results are in tests/fixtures/results): the shortlist each
gets, why the rest were left out, and a written spec that `llmspec check` and `llmspec plan` accept."""

import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from llmspec.catalogue.load import load_catalogue
from llmspec.machine.gpu import GpuSource
from llmspec.plan.termination import memory_limit
from llmspec.starter import Host
from llmspec.suggest import Speed, calibrate, evaluate, host_results, notes, quality_cost

FIXTURES = Path(__file__).parent / "fixtures"
CATALOGUE = load_catalogue().models


def host(ram_gb: float, available_gb: float, cores: int, gpus=None) -> Host:
    limit, text = memory_limit(available_gb, None)
    return Host("fixture CPU", cores, cores, ram_gb, available_gb, limit, text, None, gpus, "fixture")


def picks(suggestion) -> list[str]:
    return [f"{c.entry.name}@{c.quant}" for c in suggestion.shortlist]


def test_an_8gb_laptop_gets_the_most_precise_quant_that_stays_fast():
    laptop = host(8, 6.0, 4)
    speed = Speed(60.0, "60 GB/s (dual-channel DDR5)")
    chat = evaluate(CATALOGUE, laptop, ("chat",), speed, disk_free_gb=100)
    assert picks(chat) == ["Qwen3-4B@Q6_K", "gemma-3-4b-it@Q4_K_M", "Llama-3.2-1B-Instruct@Q8_0",
                           "Qwen2.5-Coder-0.5B-Instruct@Q4_K_M", "Qwen2.5-7B-Instruct@Q4_K_M"]
    assert chat.shortlist[-1].slow and not any(c.slow for c in chat.shortlist[:-1])
    unfit = dict((e.name, why) for e, why in chat.unfit)
    assert "more than the 6.0 GB of RAM available" in unfit["Qwen2.5-14B-Instruct"]
    assert unfit["gemma-3-270m"] == "no chat template (a base model)"
    agent = evaluate(CATALOGUE, laptop, ("agent",), speed, disk_free_gb=100)
    assert picks(agent)[:2] == ["Qwen3-4B@Q6_K", "Llama-3.2-3B-Instruct@Q8_0"]  # models that declare tools
    assert all(c.entry.capabilities.tools for c in agent.shortlist)
    little_disk = evaluate(CATALOGUE, laptop, ("chat",), speed, disk_free_gb=2)
    assert all(c.size / 2**30 <= 2 for c in little_disk.shortlist)
    assert "free disk" in dict((e.name, w) for e, w in little_disk.unfit)["Qwen3-8B"]


def test_a_desktop_with_a_12gb_gpu_puts_what_fits_the_gpu_first(monkeypatch):
    path = os.pathsep.join([str(FIXTURES / "nvidia-smi" / "bin"), str(Path(sys.executable).parent),
                            os.environ.get("PATH", "")])
    monkeypatch.setenv("PATH", path)
    monkeypatch.setenv("FAKE_NVIDIA_SMI", "rtx3060-12gb.csv")
    gpus = GpuSource().read()
    assert [g.memory_free_mb for g in gpus] == [11978.0]
    desktop = host(24, 22.0, 8, gpus)
    chat = evaluate(CATALOGUE, desktop, ("chat",), calibrate([], 80.0, "fixture", gpus), disk_free_gb=200)
    assert picks(chat) == ["Qwen2.5-14B-Instruct@Q4_K_M", "gemma-3-12b-it@Q4_K_M", "Qwen3-8B@Q8_0",
                           "Meta-Llama-3.1-8B-Instruct@Q8_0", "Qwen3-4B@Q8_0"]
    assert {c.where for c in chat.shortlist} == {"GPU"} and all(c.room_gb > 0.1 * c.need_gb for c in chat.shortlist)
    # decode from the RTX 3060's published 360 GB/s (uncalibrated: no GPU result here); prompt not predicted
    assert [round(c.decode_tps) for c in chat.shortlist] == [26, 33, 27, 27, 55]
    assert all(c.decode_tps == pytest.approx(360e9 * 0.65 / c.size) and c.prompt_tps is None for c in chat.shortlist)
    gpu_note = next(n for n in notes(chat) if n.startswith("GPU rows"))
    assert "NVIDIA GeForce RTX 3060 360 GB/s" in gpu_note and "uncalibrated" in gpu_note
    # 14B at Q5_K_M would leave under 10 % of the GPU free; its Q8_0 fits only the 24 GB of RAM, slowly
    others = {f"{c.entry.name}@{c.quant}": c for c in chat.others}
    assert "Qwen2.5-14B-Instruct@Q5_K_M" not in others and others["Qwen2.5-14B-Instruct@Q8_0"].where == "CPU"
    assert others["Qwen2.5-14B-Instruct@Q8_0"].slow
    assert others["Qwen2.5-14B-Instruct@Q8_0"].decode_tps == pytest.approx(80e9 * 0.65 / others[
        "Qwen2.5-14B-Instruct@Q8_0"].size)  # in RAM: the CPU's bandwidth


def test_the_2_core_vm_is_calibrated_by_its_own_results():
    speed = calibrate(host_results(FIXTURES / "results", "amd-epyc-2c-24g-ef098a"), 26.5, "26 GB/s measured")
    assert "calibrated by 2 measured result(s) on this host" in speed.basis  # Q4_1 and Q8_0 interactive
    assert speed.overhead_s > 0 and speed.flops
    assert "leave-one-out error" in speed.basis and "leave-one-out error" in speed.prompt_basis
    vm = host(24, 22.9, 2)
    chat = evaluate(CATALOGUE, vm, ("chat",), speed, disk_free_gb=40)
    assert picks(chat) == ["Llama-3.2-1B-Instruct@Q8_0", "Qwen2.5-Coder-0.5B-Instruct@Q4_K_M",
                           "Llama-3.2-3B-Instruct@Q4_K_M", "gemma-3-4b-it@Q4_K_M", "Qwen2.5-7B-Instruct@Q4_K_M"]
    longer = evaluate(CATALOGUE, vm, ("long-context",), speed, disk_free_gb=40)
    assert all(c.ctx_size == 32768 for c in longer.shortlist)
    assert "less than 32768" in dict((e.name, w) for e, w in longer.unfit)["SmolLM2-135M-Instruct"]


def test_quality_cost_reads_the_published_scale():
    assert quality_cost("Q8_0") == (0.001391, "negligible")
    assert quality_cost("Q4_K_M") == (0.032032, "small")
    assert quality_cost("Q2_K") == (0.457258, "large")
    assert quality_cost("IQ2_XXS") == (None, "unknown")


def llmspec(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # no nvidia-smi: a CPU host
    return subprocess.run([sys.executable, "-m", "llmspec.cli", *args], cwd=root, capture_output=True, text=True,
                          env=env, timeout=60)


def test_suggest_writes_a_spec_that_check_and_plan_accept(project):
    root = project.root
    started = time.monotonic()
    out = llmspec(root, "suggest", "--use", "agent", "--memory-gb", "8", "--disk-gb", "50", "--write", "mine")
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - started < 30  # (a second here; the bound only catches a download or a hang)
    assert "Wrote specs/mine.toml" in out.stdout and "quality cost" in out.stdout
    spec = tomllib.loads((root / "specs" / "mine.toml").read_text())
    assert spec["limits"]["max_memory_gb"] == 8
    assert all(m["repo"] and len(m["files"]) == 1 for m in spec["models"])
    check = llmspec(root, "check", "specs/mine.toml")
    assert check.returncode == 0, check.stderr
    plan = llmspec(root, "plan", "specs/mine.toml")
    assert plan.returncode == 0, plan.stderr
    assert "to download" in plan.stdout or "download" in plan.stdout
    again = llmspec(root, "suggest", "--write", "mine")
    assert again.returncode == 2 and "already exists" in again.stderr


@pytest.mark.parametrize(("args", "expected"), [
    (("--memory-gb", "0"), "--memory-gb: 0 is not a size"),
    (("--use", "gaming"), "--use: 'gaming' is not a use"),
])
def test_bad_arguments_are_one_line(project, args, expected):
    out = llmspec(project.root, "suggest", *args)
    assert out.returncode == 2 and expected in out.stderr and out.stderr.count("\n") == 1


def test_the_report_links_each_suggestion_to_its_measured_result_or_says_how_to_measure_it(project):
    """#30: the predicted-vs-measured table of a spec `suggest --write` wrote: a measured candidate links
    to its result's excerpt with the predicted figures beside the measured ones and the error; one not
    measured yet shows the memory the suggestion printed and the `doit` command that measures it."""
    import json
    import re

    from llmspec.machine import bandwidth
    from llmspec.machine.host import host_id
    from llmspec.plan.prediction import for_host
    from llmspec.report import build_report
    from llmspec.results import write_result
    from llmspec.spec import load_spec
    from tests.test_report import make_result

    root = project.root
    out = llmspec(root, "suggest", "--use", "chat", "--memory-gb", "8", "--disk-gb", "50", "--write", "mine")
    assert out.returncode == 0, out.stderr
    text = (root / "specs" / "mine.toml").read_text()
    printed = {name: gb for gb, name in re.findall(r'# predicted: ([\d.]+) GB.*\nname = "([^"]+)"', text)}
    spec = load_spec(root / "specs" / "mine.toml")
    first, *rest = [(m.name, m.quants[0]) for m in spec.models]
    results, here = root / "build" / "results", host_id()
    bandwidth.path(results, here).parent.mkdir(parents=True)
    bandwidth.path(results, here).write_text(json.dumps({"version": bandwidth.VERSION, "copy_gbps": 20.0,
                                                         "measured_at": "2026-12-05T03:00:00Z"}))
    model, quant = first
    measured = {**make_result(quant, host=here), "cell": {"spec": "mine", "model": model, "quant": quant,
                                                          "profile": "interactive"}}
    measured["metrics"] = {"tokens_per_s": 8.0, "server_tokens_per_s": 8.0, "ttft_s": 0.4, "peak_rss_gb": 1.0,
                           "estimated_memory_gb": 1.1, "predicted_tokens_per_s": 10.0, "prompt_tokens_per_s": 40.0,
                           "predicted_prompt_tokens_per_s": 30.0}
    write_result(results / here / "mine" / model / quant / "interactive.json", measured)
    (skipped_model, skipped_quant), *rest = rest
    skipped = {**make_result(skipped_quant, status="skipped", reason="needs about 9 GB", host=here),
               "cell": {"spec": "mine", "model": skipped_model, "quant": skipped_quant, "profile": "interactive"}}
    write_result(results / here / "mine" / skipped_model / skipped_quant / "interactive.json", skipped)
    summary = build_report(spec, results, root / "build" / "reports")
    html = summary.html.read_text(encoding="utf-8")
    table = html[html.index('<table class="sortable memory">'):]
    table = table[:table.index("</table>")]
    assert "<th>Suggestion</th>" in table
    rows = {(m, q): rest for m, q, rest in re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td>(.*?)</tr>", table, re.S)}
    assert set(rows) == {first, (skipped_model, skipped_quant), *rest}  # with a result or not: every candidate
    assert re.search(r'<a href="#[^"]+">skipped \(interactive result\)</a>', rows[skipped_model, skipped_quant])
    figures = re.findall(r'<td class="num"[^>]*>([^<]*)</td>', rows[first])
    assert figures == ["1.00", "1.10", "+10%", "", "", "8.0", "10.0", "+25%",  # predicted beside measured, with error
                       "40", "30", "-25%"]  # prompt speed too
    link = re.search(r'<a href="#([^"]+)">measured \(interactive result\)</a>', rows[first]).group(1)
    assert f'id="{link}"' in html and "not measured yet" not in rows[first]
    speed = for_host(results, here)  # this host's roofline, calibrated by the one result now here
    for name, quant in rest:
        entry = next(e for e in CATALOGUE if e.name == name)
        figures = re.findall(r'<td class="num"[^>]*>([^<]*)</td>', rows[name, quant])
        prompt = speed.prompt({**entry.meta, "file_type": quant})
        assert figures == ["", printed[name], "", "", "", "", f"{speed.decode(entry.files[quant].size):.1f}", "",
                           "", f"{prompt:.0f}" if prompt else "", ""]
        assert "not measured yet: <code>doit spec=mine</code>" in rows[name, quant]
