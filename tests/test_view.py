"""`llmspec plan` (llmspec/plan/view.py): the command lines it shows are the ones the runner starts."""

from __future__ import annotations

from conftest import SMOL_MODEL

from llmspec.engines import argv
from llmspec.plan import view
from llmspec.plan.planner import Plan
from llmspec.spec import load_spec

TOOLS_SPEC = """
[server]
ctx_size = 1024
[profiles.interactive]
[profiles.tool_calls]
categories = ["simple"]
cases = 3
"""


def test_plan_shows_jinja_for_the_tool_call_cells_only(project):
    """tool_calls declares the TOOL_CALLS server feature, so its server starts with --jinja; the
    interactive cell of the same file does not, and plan says so row by row."""
    plan = Plan(load_spec(project(TOOLS_SPEC + SMOL_MODEL)), cores=2)
    header, *rows = view.command_rows(plan)
    assert header == ("variant", "engine", "cells", "command line")
    by_cells = {row[2]: row[3] for row in rows}
    assert set(by_cells) == {"interactive", "tool_calls"}
    assert "--jinja" in by_cells["tool_calls"].split()
    assert "--jinja" not in by_cells["interactive"].split()
    for cell in plan.cells:  # the runner's own arguments, flag for flag
        shown = by_cells[cell.profile]
        flags = " ".join(argv(plan.job(cell).server_args(None)))
        assert shown.endswith(flags) or "not available" in shown, (shown, flags)
    assert "--jinja" in view.render(plan)
