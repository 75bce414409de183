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
from llmspec.plan.cells import Cell
from llmspec.plan.planner import Plan
from llmspec.plan.termination import need_text
from llmspec.profiles import PROFILES
from llmspec.text import format_table


def plan_rows(plan: Plan) -> list[tuple[str, ...]]:
    """Each cell's state, its estimated duration when it is to run (llmspec.plan.eta), and why."""
    rows = [("cell", "state", "est.", "why")]
    for cell in plan.cells:
        found = plan.freshness(cell)
        why, took = found.reason, ""
        if found.fresh:
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
                           engine.overhead_bytes, ev.killed_at(*key, args.ctx_size)) if size else "?"
        variant = plan.variants.get(cell.variant)
        flags = f"{cell.variant} ({variant.flags()})" if variant and cell.variant else "-"
        rows.append((f"{cell.model}@{cell.quant}", flags, engine.name, memory, _download(mf), mf.path.name))
    return rows


def command_rows(plan: Plan) -> list[tuple[str, ...]]:
    """The command line each cell's server is really started with: the runner's own arguments
    (`CellJob.server_args`: the variant's, plus the context, slots and server features the profile
    needs, such as llama-server's --jinja for tool calls). Cells with the same command share a row;
    MODEL and PORT are filled in per cell, so a user can run the same server by hand."""
    ev = plan.evidence()
    groups: dict[tuple[str, str, str], list[Cell]] = {}
    for cell in plan.cells:
        if cell.endpoint or not PROFILES[cell.profile].needs_server:
            continue
        job = plan.job(cell)
        args = job.server_args((ev.meta.get((cell.model, cell.quant)) or {}).get("context_length"))
        if job.binary is None:
            command = f"not available: {job.binary_error}"
        else:
            argv = job.engine.command(job.binary, Path("MODEL.gguf"), "127.0.0.1", 0, args)
            command = " ".join(argv).replace("--port 0", "--port PORT")
        groups.setdefault((cell.variant or "-", job.engine.name, command), []).append(cell)
    rows = [("variant", "engine", "cells", "command line")]
    for (variant, engine, command), cells in groups.items():
        rows.append((variant, engine, _which(plan, cells), command))
    return rows


def _which(plan: Plan, cells: list[Cell]) -> str:
    """The profiles of a command's cells; a profile whose cells of this variant do not all share the
    command (a model trained for a shorter context caps a raised one) names its models."""
    shown = []
    for profile in dict.fromkeys(c.profile for c in cells):
        own = [c for c in cells if c.profile == profile]
        every = [c for c in plan.cells if c.profile == profile and c.variant == own[0].variant and not c.endpoint]
        shown.append(profile if len(own) == len(every)
                     else f"{profile} ({', '.join(f'{c.model}@{c.quant}' for c in own)})")
    return ", ".join(shown)


def unapplied_lines(plan: Plan) -> list[str]:
    """Per endpoint, the [server] settings its cells run without (`EndpointTarget.unapplied`)."""
    lines, seen = [], set()
    for cell in plan.cells:
        if cell.endpoint and cell.model not in seen:
            seen.add(cell.model)
            lines += [f"{cell.model}: {text}" for text in plan.target(cell).unapplied(plan.spec.server)]
    return lines


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
        *(["\n".join(found)] if (found := unapplied_lines(plan)) else []),
        f"{counts['up to date']} up to date, {counts['run']} to run, {counts['skip']} to skip{took} "
        f"(memory limit: {ev.limit_text}; `doit` runs the plan)",
    ])
