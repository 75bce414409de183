"""The architecture as the code must keep it: data flows one way, and planning stays light.

Planning (spec -> cells -> what is stale) runs on every `doit`, also when nothing is measured, so
it must not load the run side (server, client, runner) or `requests`; and no module may need a
module that needs it back, which makes the order of imports matter and hides who owns what.
"""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "llmspec"


def test_planning_loads_neither_the_run_side_nor_requests():
    code = ("import sys, llmspec.tasks, llmspec.plan.planner, llmspec.plan.view, llmspec.spec, llmspec.profiles; "
            "print(sorted(m for m in sys.modules if m.startswith(('llmspec.run', 'llmspec.report', 'requests', "
            "'huggingface_hub'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """llmspec modules `path` imports, at the top or inside functions (not for type checking only)."""
    found = set()
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(block.test) for n in ast.walk(block)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("llmspec"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").exists()
                          else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("llmspec")}
    return found


def test_no_module_imports_one_that_imports_it_back():
    """Lazy imports count too: a function-level import that closes a loop is still a loop in who
    owns what (it was how hub.py and modelfiles.py needed each other)."""
    graph = {module_name(p): imports(p) - {module_name(p)} for p in PACKAGE.rglob("*.py")}
    state: dict[str, str] = {}
    cycle: list[str] = []

    def visit(node: str, trail: list[str]) -> bool:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                cycle.extend(trail[trail.index(nxt):] + [node, nxt] if nxt in trail else [node, nxt])
                return True
            if nxt not in state and visit(nxt, trail + [node]):
                return True
        state[node] = "done"
        return False

    assert not any(visit(name, []) for name in sorted(graph) if name not in state), " -> ".join(cycle)
