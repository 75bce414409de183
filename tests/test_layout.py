"""The architecture as the code must keep it: data flows one way, and planning stays light.

Planning (spec -> cells -> what is stale) runs on every `doit`, also when nothing is measured, so
it must not load the run side (server, client, runner) or `requests`; no module may need a
module that needs it back, which makes the order of imports matter and hides who owns what; and
every module sits in one layer of `LAYERS` and imports only from its own layer or lower ones.
Every import counts: at the top, inside a function, or for type checking only (a type is a
dependency too: the circle plan.reference -> profiles.divergence -> run.perplexity -> plan.reference
hid behind one).
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
    """llmspec modules `path` imports: at the top, inside functions, or for type checking only."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("llmspec"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").exists()
                          else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("llmspec")}
    return found


def import_graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) - {module_name(p)} for p in PACKAGE.rglob("*.py")}


# Lowest first. A module belongs to the most specific entry naming it or a package above it, and
# imports only from its own layer or lower ones: what a lower layer needs from a higher one belongs
# in the lower one (or is handed down as data), so each layer can be read, tested and changed
# knowing only the layers under it. A new module goes where its imports put it.
LAYERS: tuple[tuple[str, ...], ...] = (
    # the ground: errors, strict models, formatting, statistics, progress, hashing, git history
    ("llmspec.errors", "llmspec.strict", "llmspec.text", "llmspec.stats", "llmspec.progress", "llmspec.logs",
     "llmspec.lock", "llmspec.arrivals", "llmspec.capacity", "llmspec.fingerprint", "llmspec.revisions",
     "llmspec.sandbox", "llmspec.freshness"),
    ("llmspec.results", "llmspec.contract"),  # the result file, written atomically and read back; its schema
    ("llmspec.machine", "llmspec.models"),  # this host; model files' facts (all but models.files, below)
    ("llmspec.engines",),  # one module per inference engine
    ("llmspec.catalogue",),  # well-known GGUF models to download, with their facts and sources
    # what a profile measures with: the wire to a server, the server process, meters, llama.cpp's tools,
    # the sandbox a model's code runs in
    ("llmspec.run.client", "llmspec.run.server", "llmspec.run.meter", "llmspec.run.load", "llmspec.run.perplexity",
     "llmspec.sandbox"),
    ("llmspec.profiles",),  # each profile's declaration and measurement; the registry
    ("llmspec.spec", "llmspec.rating"),  # the spec (built from the profiles' settings); ratings of results
    ("llmspec.models.files",),  # where a spec's model file comes from (reads the spec)
    ("llmspec.plan",),  # spec -> cells -> what is stale, what to skip, each cell's job
    ("llmspec.run",),  # a planned cell measured: runner, session
    ("llmspec.watch", "llmspec.report"),  # the live dashboard; reports from the results
    # commands and doit's tasks
    ("llmspec.compare", "llmspec.loadtest", "llmspec.starter", "llmspec.suggest", "llmspec.tasks", "llmspec.dataset",
     "llmspec.publish", "llmspec.pull"),
    ("llmspec.cli",),
)


def layer(module: str) -> int:
    """The index in `LAYERS` of the most specific entry naming `module` or a package above it."""
    found = [(len(entry), i) for i, entries in enumerate(LAYERS) for entry in entries
             if module == entry or module.startswith(entry + ".")]
    assert found, f"{module} is in no layer of tests/test_layout.py's LAYERS: add it where its imports put it"
    return max(found)[1]


def test_no_module_imports_from_a_higher_layer():
    graph = {name: targets for name, targets in import_graph().items() if name != "llmspec"}  # the root: a version
    assert all(layer(name) is not None for name in graph)  # every module has its place, importing or not
    upward = sorted(f"{name} (layer {layer(name)}) -> {target} (layer {layer(target)})"
                    for name, targets in graph.items() for target in targets if layer(target) > layer(name))
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_no_module_imports_one_that_imports_it_back():
    """Lazy imports count too: a function-level import that closes a loop is still a loop in who
    owns what (it was how hub.py and modelfiles.py needed each other), and so do imports for type
    checking only."""
    graph = import_graph()
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


# Where a profile's name may be written: the profiles themselves, and the engines, which own the OpenAI
# wire, whose field names are not ours to choose (a message's `tool_calls`).
NAMES_ALLOWED_IN = ("llmspec.profiles", "llmspec.engines")


def test_no_profile_is_named_outside_the_profiles():
    """A new profile is one module and one registry line: everything else finds a profile by what it
    declares (`ProfileKind`: its roles, readings, settings), never by its name (`NAMES_ALLOWED_IN`)."""
    from llmspec.profiles import PROFILES

    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = module_name(path)
        if module.startswith(NAMES_ALLOWED_IN):
            continue
        tree = ast.parse(path.read_text())
        found += [f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {node.value!r}" for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and node.value in PROFILES]
    assert not found, "profile names outside llmspec/profiles/:\n" + "\n".join(found)
