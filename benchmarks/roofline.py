"""How close do the demo configurations come to the memory-bandwidth bound on this host?

Measures the copy bandwidth fresh (not the cached figure), runs llama-bench's pure generation test
on every demo (model, quant) whose file is on disk, and prints each speed beside the bound
bandwidth / file size; the tool's own interactive speed is shown too where the demo's results
exist. Run from the repository root: `.venv/bin/python benchmarks/roofline.py` (about a minute).
The last line is the one-line summary.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmspec.errors import UserError  # noqa: E402
from llmspec.machine import bandwidth  # noqa: E402
from llmspec.models import binaries  # noqa: E402
from llmspec.models import files as modelfiles
from llmspec.plan.cells import Cell  # noqa: E402
from llmspec.plan.planner import Plan  # noqa: E402
from llmspec.results import read_result  # noqa: E402
from llmspec.spec import load_spec  # noqa: E402
from llmspec.text import format_table  # noqa: E402

SPEC = Path(__file__).resolve().parent.parent / "specs" / "demo.toml"
TOKENS = 128


def progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def bench_tokens_per_s(bench: Path, model: Path, threads: int) -> float:
    """llama-bench tg128, 3 repetitions: the mean generation speed without any HTTP or sampling."""
    cmd = [str(bench), "-m", str(model), "-p", "0", "-n", str(TOKENS), "-t", str(threads), "-r", "3", "-o", "json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise SystemExit(f"llama-bench failed on {model.name}: {out.stderr.strip()[-300:]}")
    return json.loads(out.stdout)[0]["avg_ts"]


def interactive_tokens_per_s(plan: Plan, model: str, quant: str) -> float | None:
    result = read_result(plan.result_path(Cell(plan.spec.name, model, quant, "interactive")))
    if not result or result.get("status") != "ok":
        return None
    return (result.get("metrics") or {}).get("tokens_per_s")


def local_configs(plan: Plan) -> list[tuple[str, str, Path]]:
    found = []
    for model in plan.spec.models:
        for quant in model.quants:
            file = modelfiles.existing_file(plan.spec, plan.model_file(model.name, quant))
            if file is None:
                progress(f"{model.name} {quant}: no model file on disk (`doit model` makes it), left out")
            else:
                found.append((model.name, quant, file))
    return found


def main() -> None:
    plan = Plan(load_spec(SPEC))
    bench = binaries.find_tool("llama-bench", binaries.find_server(plan.spec.server.binary))
    progress("measuring memory bandwidth ...")
    bw = bandwidth.measure()
    gbps = bw["copy_gbps"]
    runs = ", ".join(f"{r:.1f}" for r in bw["runs_gbps"])
    print(f"bandwidth: {gbps:.1f} GB/s best, {bw['median_gbps']:.1f} median (runs {runs}; {bw['threads']} threads)")
    rows = [("model", "quant", "file MB", "bench t/s", "bound t/s", "% of bound", "interactive t/s", "% of bound")]
    best = None
    for model, quant, file in local_configs(plan):
        progress(f"llama-bench {model} {quant} (tg{TOKENS}, {plan.threads()} threads) ...")
        size = file.stat().st_size
        tps = bench_tokens_per_s(bench, file, plan.threads())
        pct = bandwidth.roofline_pct(tps, size, gbps)
        served = interactive_tokens_per_s(plan, model, quant)
        served_cols = (f"{served:.1f}", f"{bandwidth.roofline_pct(served, size, gbps):.0f}") if served else ("-", "-")
        bound = gbps * 1e9 / size
        rows.append((model, quant, f"{size / 1e6:.0f}", f"{tps:.1f}", f"{bound:.0f}", f"{pct:.0f}", *served_cols))
        best = max(best or (pct, model, quant), (pct, model, quant))
    print(format_table(rows))
    if best is None:
        raise SystemExit("roofline: no demo model file on disk; `doit model spec=demo` makes them")
    pct, model, quant = best
    print(f"roofline: {pct:.1f} % of bandwidth bound ({model} {quant}), bandwidth {gbps:.1f} GB/s (target: report it)")


if __name__ == "__main__":
    try:
        main()
    except UserError as exc:
        raise SystemExit(f"roofline: {exc}") from None
