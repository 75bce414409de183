"""Server-setting sweeps: variant names and paths, the expansion into cells and the thread-knee
search on recorded figures (the planner skipping thread counts past the knee is tests/test_planner.py)."""

import pytest
from conftest import SMOL_MODEL

from llmspec.engines import argv
from llmspec.errors import UserError
from llmspec.plan import variants
from llmspec.plan.cells import split_config
from llmspec.plan.planner import Plan
from llmspec.plan.variants import Point, knee, thread_steps
from llmspec.spec import ServerSettings, load_spec

SWEEP = '\n[server.sweep]\nthreads = [1, 2]\nflash_attn = ["on", "off"]\n'


def names(server: dict, cores: int = 2) -> list[str]:
    return [v.name for v in variants.expand(ServerSettings.model_validate(server), cores)]


def test_every_combination_is_a_variant_named_after_what_it_sets():
    assert names({"sweep": {"threads": [1, 2], "flash_attn": ["on", "off"]}}) == ["t1-fa", "t1-nofa", "t2-fa",
                                                                                  "t2-nofa"]
    # a key with one value is named too: adding a second value later keeps the measured variants' names
    assert names({"sweep": {"threads": [1, 2], "cache_type_k": ["q8_0"]}}) == ["t1-kq8_0", "t2-kq8_0"]
    assert names({"sweep": {"threads": [1, 2, 4], "cache_type_k": ["q8_0", "f16"]}})[:1] == ["t1-kq8_0"]
    assert names({"sweep": {"cache_type_k": ["f16", "q8_0"], "cache_type_v": ["q8_0", "q4_0"],
                            "n_gpu_layers": [0, "all"], "mlock": [False, True]}})[:3] == [
        "kf16-vq8_0-ngl0-nomlock", "kf16-vq8_0-ngl0-mlock", "kf16-vq8_0-nglall-nomlock"]
    assert names({}) == [""]  # no sweep: one variant with no name


def test_a_variant_carries_its_settings_and_the_flags_to_type():
    server = ServerSettings.model_validate({"ctx_size": 2048, "sweep": {"threads": [1, 2], "flash_attn": ["on"],
                                                                        "no_mmap": [True]}})
    first = variants.expand(server, 2)[0]
    assert (first.server.threads, first.server.flash_attn, first.server.ctx_size) == (1, "on", 2048)
    assert first.flags() == "-t 1 -fa on --load-mode none"
    assert variants.named(server, "t2-fa-nommap").server.threads == 2 and variants.named(server, "t9") is None


def test_cells_gain_the_variant_in_task_names_and_paths_and_a_spec_without_sweep_keeps_its_own(project, tmp_path):
    swept = Plan(load_spec(project(SMOL_MODEL + SWEEP + "[profiles.interactive]\n[profiles.divergence]\n")),
                 cores=2)
    assert [c.task_name for c in swept.cells] == [
        "t:SmolLM2-135M-Instruct@Q4_1+t1-fa:interactive", "t:SmolLM2-135M-Instruct@Q4_1:divergence",
        "t:SmolLM2-135M-Instruct@Q4_1+t1-nofa:interactive", "t:SmolLM2-135M-Instruct@Q4_1+t2-fa:interactive",
        "t:SmolLM2-135M-Instruct@Q4_1+t2-nofa:interactive"]  # divergence starts no server: once per file
    cell = swept.cells[0]
    assert swept.result_path(cell).relative_to(tmp_path / "build" / "results").parts[1:] == (
        "t", "SmolLM2-135M-Instruct", "Q4_1+t1-fa", "interactive.json")
    assert split_config("Q4_1+t1-fa") == ("Q4_1", "t1-fa") and cell.as_dict()["variant"] == "t1-fa"
    assert argv(swept.server_args("t1-fa"))[3] == "1" and "--flash-attn" in argv(swept.server_args("t1-fa"))

    plain = Plan(load_spec(project(SMOL_MODEL)))
    (only,) = plain.cells
    assert only.task_name == "t:SmolLM2-135M-Instruct@Q4_1:interactive" and "variant" not in only.as_dict()
    assert plain.result_path(only).parent.name == "Q4_1"


def test_threads_sweep_tries_doubling_counts_up_to_the_cores():
    assert thread_steps(1) == [1]
    assert thread_steps(2) == [1, 2]
    assert thread_steps(6) == [1, 2, 4, 6]
    assert thread_steps(16) == [1, 2, 4, 8, 16]
    assert names({"sweep": {"threads": "sweep"}}, cores=6) == ["t1", "t2", "t4", "t6"]


# Recorded on this project's 2-vCPU VM: llama-bench -m SmolLM2-135M-Instruct.Q4_1.gguf -t 1,2,3,4 -p 0 -n 64
# -r 5 (tg64, mean ± sd over 5 runs): 77.99 ± 3.08, 107.20 ± 6.75, 29.61 ± 2.65, 28.73 ± 2.44 t/s. The 95 %
# interval of each mean is ± 1.96 sd / sqrt(5). Past the two cores, threads fight for them and speed collapses.
def recorded(threads, mean, sd):
    half = 1.96 * sd / 5 ** 0.5
    return Point(threads, mean, mean - half, mean + half)


CURVE = [recorded(1, 77.99, 3.08), recorded(2, 107.20, 6.75), recorded(3, 29.61, 2.65), recorded(4, 28.73, 2.44)]


def test_the_knee_is_the_first_step_no_faster_beyond_the_noise():
    assert knee(CURVE[:2]) is None  # 1 -> 2 threads: +37 %, intervals apart: keep going
    assert knee(CURVE) == CURVE[2]  # 3 threads on 2 cores: slower
    # a plateau within the noise is a knee too: 110 (104-116) after 107 (101-113) is no gain
    assert knee([*CURVE[:2], Point(4, 110.0, 104.0, 116.0)]).threads == 4
    # without intervals the medians decide
    assert knee([Point(1, 50.0), Point(2, 90.0), Point(4, 95.0)]) is None
    assert knee([Point(1, 50.0), Point(2, 90.0), Point(4, 90.0)]).threads == 4


def test_sweep_values_are_checked_in_one_line(project):
    for text, expected in (('threads = "auto"', 'server.sweep.threads: \'auto\': threads is a list of thread counts'),
                           ("threads = [1, 1]", "server.sweep.threads: [1, 1]: lists a value twice"),
                           ('flash_attn = ["yes"]', "server.sweep.flash_attn[0]: 'yes': Input should be 'on', 'off'"),
                           ("n_gpu_layers = [-1]", "server.sweep.n_gpu_layers[0]: -1: n_gpu_layers must be 0 or more"),
                           ("ctx_size = [512]", "server.sweep.ctx_size: unknown key (allowed here: engine, threads,")):
        with pytest.raises(UserError) as exc:
            load_spec(project(SMOL_MODEL + "\n[server.sweep]\n" + text + "\n"))
        assert expected in str(exc.value) and "\n" not in str(exc.value), str(exc.value)


SWEEP_SPEC = SMOL_MODEL + """
[server]
ctx_size = 1024

[server.sweep]
threads = [1]
flash_attn = ["on", "off"]

[profiles.interactive]
requests = 3
max_requests = 3
max_tokens = 32
"""


@pytest.mark.server
def test_doit_runs_each_variant_once_and_a_new_value_only_its_variants(tmp_path, llama_server):
    from conftest import REPO, doit, executed_cells

    (tmp_path / "specs").mkdir()
    (tmp_path / "prompts").symlink_to(REPO / "prompts")
    spec = tmp_path / "specs" / "t.toml"
    spec.write_text(SWEEP_SPEC)
    first = doit(tmp_path)
    assert executed_cells(first.stdout) == ["cell:t:SmolLM2-135M-Instruct@Q4_1+t1-fa:interactive",
                                            "cell:t:SmolLM2-135M-Instruct@Q4_1+t1-nofa:interactive"]
    folder = tmp_path / "build" / "results"
    results = sorted(p.relative_to(folder).parts[2:] for p in folder.glob("*/*/*/*/*.json"))
    assert results == [("SmolLM2-135M-Instruct", "Q4_1+t1-fa", "interactive.json"),
                       ("SmolLM2-135M-Instruct", "Q4_1+t1-nofa", "interactive.json")]
    import json

    stored = json.loads(next(folder.glob("*/t/*/Q4_1+t1-fa/interactive.json")).read_text())
    assert stored["status"] == "ok", stored["reason"]
    args = stored["server"]["args"]
    assert args[args.index("--threads") + 1] == "1" and args[args.index("--flash-attn") + 1] == "on"
    assert stored["cell"]["variant"] == "t1-fa"
    # energy and GPU: measured where the machine can, else the result says why, and no figure is made up
    facts = stored["host"]
    if facts["energy"].startswith("not available"):
        assert not any("energy" in k or "joule" in k for k in stored["metrics"])
    else:
        assert stored["metrics"]["joules_per_token"] > 0 and stored["metrics"]["idle_power_w"] > 0
    assert facts["gpu"].startswith("no GPU: ") == (not any(k.startswith("gpu_") for k in stored["metrics"]))

    assert executed_cells(doit(tmp_path).stdout) == []
    spec.write_text(SWEEP_SPEC.replace("threads = [1]", "threads = [1, 2]"))
    added = doit(tmp_path)
    assert executed_cells(added.stdout) == ["cell:t:SmolLM2-135M-Instruct@Q4_1+t2-fa:interactive",
                                            "cell:t:SmolLM2-135M-Instruct@Q4_1+t2-nofa:interactive"]
    # the report names the best variant per use case with the llama-server flags to use
    assert "Server settings (best variant per use case):" in added.stdout
    line = next(x for x in added.stdout.splitlines() if "interactive chat:" in x and "best of 4 variants" in x)
    assert "run with -t " in line and " -fa " in line
    report = json.loads((tmp_path / "build" / "reports" / "t" / "results.json").read_text())
    assert {r["variant"] for r in report["results"]} == {"t1-fa", "t1-nofa", "t2-fa", "t2-nofa"}
    (finding,) = report["recommendations"]["settings"]
    assert finding["variants"] == 4 and finding["best_flags"].startswith("-t ")
