"""The one module that knows doit: specs become model, cell and report tasks.

- `cell:<spec>:<model>@<quant>:<profile>`: one per cell (`<quant>+<variant>` for a server-setting
  variant of a `[server.sweep]`); its target is the result JSON and it
  is up to date when that file's stored fingerprint equals the current one (decided from the
  file, so committed results are up to date in a fresh clone and `.doit.db` holds nothing
  that matters).
- `model:<spec>:<model>@<quant>`: makes the model file exist (link, download, derive), for
  fetching ahead (`doit model`). A stale cell makes its own model file with the same function
  rather than through doit's `setup`, which would reorder cells and break the planned
  traversal; a derived quant is still built once and reused.
- `logits:<spec>:<model>@<quant>`: the divergence profile's reference logits (build/cache/,
  large, never committed), for building ahead (`doit logits`); the first divergence cell of a
  model builds them itself when missing, as a cell makes its model file.
- `bandwidth`: this host's memory bandwidth, measured once (a few seconds) into
  `results/<host>/bandwidth.json`, so reports can show speed against the hardware's bound.
- `report`: re-renders every spec's reports from the result files; measures nothing.
"""

from __future__ import annotations

import atexit
import gc
import inspect
import os
import sys
from pathlib import Path
from typing import NamedTuple

from llmspec import lock, logs
from llmspec.errors import SkipCell, UserError
from llmspec.plan.job import Workspace
from llmspec.plan.planner import Plan
from llmspec.spec import load_spec

DOIT_CONFIG = {
    "backend": "sqlite3",  # survives being killed mid-write, unlike the default dbm
    "dep_file": ".doit.db",
    "check_file_uptodate": "timestamp",
    "verbosity": 2,  # stream progress instead of capturing it
    "continue": True,  # one failed cell must not stop the matrix
    "default_tasks": ["bandwidth", "cell", "report"],
}


def load_plans(root: Path, selected: str | None = None) -> list[Plan]:
    """Specs under <root>/specs, or only those named (comma-separated stems or paths)."""
    if selected:
        paths = [Path(s) if s.endswith(".toml") else root / "specs" / f"{s}.toml" for s in selected.split(",")]
    else:
        paths = sorted((root / "specs").glob("*.toml"))
    if not paths:
        raise UserError(f"{root / 'specs'}: no *.toml specs found")
    return [Plan(load_spec(p), Workspace(root)) for p in paths]


class CellFreshness:
    """doit `uptodate` callable whose str() is the reason, so `doit info` explains a stale cell.

    `__signature__` answers doit's question (does it take `task` or `values`? no) at once:
    working it out from `__call__` with inspect cost ~100 us per cell on every run."""

    __signature__ = inspect.Signature()

    def __init__(self, plan: Plan, cell):
        self.plan, self.cell, self.reason = plan, cell, "not checked yet"

    def __call__(self) -> bool:
        found = self.plan.freshness(self.cell)
        self.reason = found.reason
        return found.fresh

    def __str__(self) -> str:
        return self.reason

    __repr__ = __str__


class ModelPresent:
    """Up to date when the file exists (and, for a derived quant, was made from today's base)."""

    __signature__ = inspect.Signature()

    def __init__(self, plan: Plan, model: str, quant: str):
        self.plan, self.model, self.quant, self.reason = plan, model, quant, "not checked yet"

    def __call__(self) -> bool:
        found = self.plan.model_state(self.model, self.quant)
        self.reason = found.reason
        return found.fresh

    def __str__(self) -> str:
        return self.reason

    __repr__ = __str__


def make_model(plan: Plan, model: str, quant: str) -> None:
    """doit action: a Python action must return None/bool/str/dict, not the file's Path."""
    from llmspec.models.files import make

    make(plan.spec, model, quant, plan.threads())


def model_tasks(plan: Plan):
    for model in plan.spec.models:
        needed = set(model.quants) | {q for q in model.derive.values()}
        for quant in sorted(needed):
            mf = plan.model_file(model.name, quant)
            task = {
                "name": f"{plan.spec.name}:{model.name}@{quant}",
                "doc": f"make {mf.path.name} available ({mf.kind}: {mf.origin})",
                "actions": [(make_model, [plan, model.name, quant])],
                "uptodate": [ModelPresent(plan, model.name, quant)],
                "targets": [str(mf.path)],
            }
            yield task


class ReferenceFresh:
    """Up to date while the reference logits exist and were made from today's inputs."""

    __signature__ = inspect.Signature()

    def __init__(self, plan: Plan, model: str):
        self.plan, self.model, self.reason = plan, model, "not checked yet"

    def __call__(self) -> bool:
        ref = self.plan.reference(self.model)
        identity = self.plan.reference_part(self.model)["model"]
        found = ref.state(identity, self.plan.server_version)
        self.reason = found.reason
        return found.fresh

    def __str__(self) -> str:
        return self.reason

    __repr__ = __str__


def make_reference(plan: Plan, model: str) -> None:
    """doit action: the divergence profile's reference logits for `model` (a cell makes them too, when first needed)."""
    from llmspec.run.runner import reference_logits

    try:
        reference_logits(plan.spec, plan.reference(model), plan.threads(), plan.server_version,
                         plan.workspace.logs / "tools", print)
    except SkipCell as exc:
        raise UserError(str(exc)) from None


def reference_tasks(plan: Plan):
    """`logits:<spec>:<model>@<quant>`: not in the default tasks; the first divergence cell of a
    model builds its logits in its own slot, so a fresh clone with committed results builds nothing."""
    for model in plan.spec.models:
        ref = plan.reference(model.name)
        if ref is None:
            continue
        yield {
            "name": f"{plan.spec.name}:{model.name}@{ref.quant}",
            "doc": f"reference logits of {model.name} {ref.quant} for the divergence profile",
            "actions": [(make_reference, [plan, model.name])],
            "uptodate": [ReferenceFresh(plan, model.name)],
            "targets": [str(ref.path)],
        }


def run_cell(plan: Plan, cell) -> bool:
    """doit action; the runner (requests, the server) is imported only when a cell runs, which
    a no-op `doit` never does. Ctrl+C keeps finished cells, writes a partial report, exits 130.
    Where the run stands goes to the console and to build/run/progress.json (`llmspec watch`)."""
    from llmspec.run.runner import Interrupted
    from llmspec.run.runner import run_cell as run
    from llmspec.watch import state

    live = state.writer(plan.workspace.run)
    place = _announce(plan, cell)
    print(place.line, flush=True)
    live.begin_cell(cell.spec, [_entry(c) for c in place.queue], place.k, place.seconds, place.left,
                    len(plan.cells) - len(place.queue))

    def progress(text: str) -> None:
        print(text, flush=True)
        live.line(text)

    try:
        return run(plan, cell, progress, live)
    except Interrupted as stop:
        live.finish("interrupted")
        print(f"\ninterrupted: {stop.cell.task_name} was not recorded; "
              "finished cells are kept, `doit` resumes the rest")
        from llmspec.report import render

        ws = plan.workspace
        print(f"partial report: {render(plan.spec, ws.results, ws.reports, ws.build / 'cache').html}")
        raise SystemExit(130) from None


def announce(plan: Plan, cell) -> str:
    """"cell 7 of 24 (demo: gemma-3-270m@Q8_0 batch), about 6 min left": the cells that were stale
    when this run reached its first cell, and the time the rest will take (llmspec.plan.eta)."""
    return _announce(plan, cell).line


class Place(NamedTuple):
    """Where a cell stands in the run: `announce`'s line and what the progress file needs of it."""

    line: str
    queue: list  # the run's cells, in order
    k: int  # this cell's place in the queue, from 1
    seconds: float | None  # the time the rest will take (this cell included); None: no basis
    left: str  # the same in words


def _announce(plan: Plan, cell) -> Place:
    from llmspec.plan import eta

    queue = plan.__dict__.setdefault("run_queue", [c for c in plan.cells if not plan.freshness(c).fresh])
    if cell not in queue:
        queue.append(cell)
    k = queue.index(cell) + 1
    seconds, unknown = eta.total(plan, queue[k - 1:])
    where, left = f"{cell.spec}: {cell.model}@{cell.config} {cell.profile}", eta.words(seconds, unknown)
    return Place(f"cell {k} of {len(queue)} ({where}), {left}", queue, k,
                 None if unknown and not seconds else seconds, left)


def _entry(cell) -> dict[str, str]:
    return {"task": cell.task_name, "model": cell.model, "config": cell.config, "profile": cell.profile}


def stop_server() -> None:
    """doit teardown: stop the shared server whether the run ended normally or by Ctrl+C."""
    if "llmspec.run.runner" in sys.modules:
        sys.modules["llmspec.run.runner"].stop_server()


def cell_tasks(plan: Plan):
    for cell in plan.cells:
        yield {
            "name": cell.task_name,
            "doc": f"measure {cell.profile} on {cell.model} {cell.config}",
            "actions": [(run_cell, [plan, cell])],
            "uptodate": [CellFreshness(plan, cell)],
            "targets": [str(plan.result_path(cell))],
            "teardown": [stop_server],
        }


class BandwidthCached:
    """Up to date while this host's cached measurement is valid (same method version)."""

    def __init__(self, results: Path):
        self.results = results

    def __call__(self) -> bool:
        from llmspec.machine import bandwidth
        from llmspec.machine.host import host_id

        return bandwidth.cached(self.results, host_id()) is not None


def measure_bandwidth(results: Path, limits) -> None:
    """On a quiet machine only (the spec's limits); a busy one leaves it to the next run."""
    from llmspec.machine import bandwidth
    from llmspec.machine.host import host_id

    found = bandwidth.ensure(results, host_id(), max_background_pct=limits.max_background_cpu_pct,
                             quiet_wait_s=limits.quiet_wait_s)
    if found is not None:
        print(f"memory bandwidth: {found['copy_gbps']:.1f} GB/s (copy, best of {len(found['runs_gbps'])})")


def report_action(plans: list[Plan]) -> None:
    from llmspec.pull import with_datasets
    from llmspec.report import build_index, render

    datasets = report_datasets()
    results = {}
    for plan in plans:
        ws = plan.workspace
        if ws.results not in results:  # every plan of a project shares one: each dataset is read once
            try:
                results[ws.results] = with_datasets(ws.results, datasets, ws.build)
            except UserError as exc:
                print(f"llmspec: {exc}", file=sys.stderr)
                raise SystemExit(2) from None
        print(render(plan.spec, results[ws.results], ws.reports, ws.build / "cache").console())
    if plans:
        build_index(plans[0].workspace.reports)
    # The interpreter's last garbage collection at exit walks every object still alive only to
    # free memory the exit frees anyway: 0.08 s of a 1.9 s `doit report` at 420 hosts. Frozen
    # objects are left out of it (at exit only: a caller that goes on collects as before).
    atexit.register(gc.freeze)


def known(group: str, tasks: list[dict]) -> list[dict]:
    """The tasks of a delayed group, once doit asks for them. Asked for a name the group does not
    have (a typo), doit would run nothing and say nothing; this says so, in one line, exit 2."""
    names = {f"{group}:{task['name']}" for task in tasks}
    unknown = [arg for arg in sys.argv[1:] if arg.startswith(f"{group}:") and arg not in names]
    if unknown:
        print(f"llmspec: there is no task {unknown[0]} (`doit list --all` lists every {group} task)", file=sys.stderr)
        raise SystemExit(2)
    return tasks


# doit's commands that only look (list, info, ...): they neither measure nor write results.
LOOKING = {"list", "info", "help", "dumpdb", "strace", "tabcompletion", "forget", "ignore", "reset-dep", "clean"}


def runs_tasks(argv: list[str]) -> bool:
    """Whether this doit invocation runs tasks (plain `doit`, `doit run`, `doit report`, a task name)."""
    command = next((arg for arg in argv if arg in LOOKING or arg == "run"), "run")
    return command == "run"


def generate(root: Path, selected: str | None):
    """Task creators for dodo.py; a bad spec is one line on stderr and exit status 2."""
    from doit import create_after

    try:
        plans = load_plans(root, selected)
    except UserError as exc:
        print(f"llmspec: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:  # the lock first: on a read-only disk it is the one line that names the folder
        if runs_tasks(sys.argv[1:]):
            lock.hold(plans[0].workspace.run, f"doit {' '.join(sys.argv[1:])}".strip())
        logs.setup(plans[0].workspace.logs, plans[0].spec.log_level)
    except UserError as exc:
        print(f"llmspec: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as exc:  # `doit list` on a read-only disk: no lock to take, but no log folder either
        print(f"llmspec: {exc.filename}: cannot write the run's log there ({exc.strerror or exc})", file=sys.stderr)
        raise SystemExit(2) from None

    # Created only when run (`doit`, `doit cell`, `doit cell:<name>`, a result file as target) or
    # listed: `doit report` never pays for building 10,000 cell tasks (1 s) it does not run.
    @create_after(target_regex=r".*\.gguf$")
    def task_model():
        """Make model files available (link, download, derive)."""
        yield from known("model", [t for plan in plans for t in model_tasks(plan)])

    @create_after(target_regex=r".*\.logits$")
    def task_logits():
        """Write the divergence profile's reference logits (once per model; under build/cache)."""
        yield from known("logits", [t for plan in plans for t in reference_tasks(plan)])

    @create_after(target_regex=r".*\.json$")
    def task_cell():
        """Measure one (model, quant, profile) cell into its result file."""
        yield from known("cell", [t for plan in plans for t in cell_tasks(plan)])

    def task_bandwidth():
        """Measure this host's memory bandwidth once (reports show speed against its bound)."""
        results = plans[0].workspace.results
        return {"actions": [(measure_bandwidth, [results, plans[0].spec.limits])],
                "uptodate": [BandwidthCached(results)],
                "verbosity": 2}

    def task_report():
        """Render JSON/CSV/HTML reports from the result files (measures nothing)."""
        return {"actions": [(report_action, [plans])], "uptodate": [False], "verbosity": 2}

    return {"task_model": task_model, "task_logits": task_logits, "task_cell": task_cell,
            "task_bandwidth": task_bandwidth,
            "task_report": task_report,
            "DOIT_CONFIG": DOIT_CONFIG}


def report_datasets() -> list[str]:
    """`doit report with=hf://datasets/ORG/NAME[,...]` (or LLMSPEC_WITH): datasets whose hosts the
    reports show beside this project's, read into build/cache/ (llmspec.pull.with_datasets)."""
    from doit import get_var

    found = get_var("with", None) or os.environ.get("LLMSPEC_WITH") or ""
    return [a.strip() for a in found.split(",") if a.strip()]


def selected_specs() -> str | None:
    from doit import get_var

    return get_var("spec", None) or os.environ.get("LLMSPEC_SPEC") or None
