"""`llmspec plan SPEC`: the matrix before running it (a dry run).

Each cell is up to date, to run (and why), or to be skipped (and why); each model file shows
its estimated memory and, when missing, how much would be downloaded. Nothing is downloaded
or started.
"""

from __future__ import annotations

from pathlib import Path

from llmspec.engines import engine_named
from llmspec.errors import UserError
from llmspec.plan import eta
from llmspec.plan.planner import Plan
from llmspec.plan.termination import need_text
from llmspec.profiles import PROFILES
from llmspec.text import format_table


def plan_rows(plan: Plan) -> list[tuple[str, ...]]:
    """Each cell's state, its estimated duration when it is to run (llmspec.plan.eta), and why."""
    rows = [("cell", "state", "est.", "why")]
    for cell in plan.cells:
        fresh, why = plan.freshness(cell)
        took = ""
        if fresh:
            state, why = "up to date", ""
        else:
            decision = plan.decide(cell)
            state, why = ("skip", decision.reason) if decision.skip else ("run", why)
            if not decision.skip:
                found = eta.estimate(plan, cell).seconds
                took = eta.duration(found) if found is not None else "?"
        rows.append((cell.task_name, state, took, why))
    return rows


def model_rows(plan: Plan) -> list[tuple[str, ...]]:
    """One row per model file and server-setting variant: the memory pre-flight follows the
    variant's own context and KV cache types and its engine's own estimate, and the row says which
    flags the variant sets."""
    ev = plan.evidence()
    rows = [("model file", "variant", "engine", "est. memory", "to download", "file")]
    seen = set()
    for cell in plan.cells:
        key = (cell.model, cell.quant)
        serverless = not PROFILES[cell.profile].needs_server and plan.spec.server.sweep is not None
        if cell.endpoint or (key, cell.variant) in seen or serverless:
            continue
        seen.add((key, cell.variant))
        mf = plan.model_file(*key)
        size = ev.sizes.get(key)
        args = plan.server_args(cell.variant)
        engine = engine_named(args.engine)
        layers = plan.server_settings(cell.variant).n_gpu_layers
        memory = need_text(size, ev.meta.get(key), args.ctx_size, engine.cache_types(args), layers, ev.gpus,
                           engine.overhead_bytes) if size else "?"
        variant = plan.variants.get(cell.variant)
        flags = f"{cell.variant} ({variant.flags()})" if variant and cell.variant else "-"
        rows.append((f"{cell.model}@{cell.quant}", flags, engine.name, memory, _download(mf), mf.path.name))
    return rows


def command_rows(plan: Plan) -> list[tuple[str, ...]]:
    """The command line each engine of the plan is started with (per variant; MODEL and PORT are
    filled in per cell), so a user can run the same server by hand."""
    rows = [("variant", "engine", "command line")]
    for name in plan.variants:
        args = plan.server_args(name)
        engine = engine_named(args.engine)
        try:
            binary = plan.engine_binary(name)
        except UserError as exc:
            rows.append((name or "-", engine.name, f"not available: {exc}"))
            continue
        command = engine.command(binary, Path("MODEL.gguf"), "127.0.0.1", 0, args)
        rows.append((name or "-", engine.name, " ".join(command).replace("--port 0", "--port PORT")))
    return rows


def _download(mf) -> str:
    if mf.path.exists():
        return "-"
    if mf.kind == "derive":
        return f"derive from {mf.origin}"
    if mf.kind != "hf":
        return "-"
    from llmspec.models import hub

    try:
        return f"{hub.remote_file_info(mf.repo, mf.file, mf.revision).size / 1e9:.2f} GB"
    except UserError:
        return "unknown (hub unreachable)"


def render(plan: Plan) -> str:
    cells = plan_rows(plan)
    counts = {state: sum(1 for r in cells[1:] if r[1] == state) for state in ("up to date", "run", "skip")}
    ev = plan.evidence()
    stale = [c for c, row in zip(plan.cells, cells[1:]) if row[1] == "run"]
    took = f"; {eta.left(plan, stale, 'to run')}" if stale else ""
    return "\n\n".join([
        format_table(cells),
        format_table(model_rows(plan)),
        format_table(command_rows(plan)),
        f"{counts['up to date']} up to date, {counts['run']} to run, {counts['skip']} to skip{took} "
        f"(memory limit: {ev.limit_text}; `doit` runs the plan)",
    ])
