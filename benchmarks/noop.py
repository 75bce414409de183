"""No-op rerun: how long does `doit` take when every result is already current?

This is the cost of the everyday "did anything change?" run, paid on every invocation. A
generated spec of 1,000 cells (50 models x 4 quants x 5 profiles), then 10,000 (500 models),
gets a current result file for every cell, written the way the runner writes one (see
_common.synthetic_result); `doit` must then run nothing, which is checked on every timed run.
Reported: the median wall time of 5 runs of plain `doit` (decide every cell, then re-render the
report, as a user runs it), plus, on stderr, `doit cell` alone, a profile of where the time goes,
and one run of a spec that also has the stress profile (960 cells), whose cells' fingerprints
depend on the stress selection. Target: under 1.0 s for 1,000 cells.
"""

from __future__ import annotations

import pstats
import re
import sys
import tempfile
from pathlib import Path

from _common import PROFILES, doit_cmd, executed_cells, figure, machine_note, median, run, say, synthetic_project, timed

RUNS = 5
SIZES = (50, 500)  # models; x 4 quants x 5 profiles = 1,000 and 10,000 cells
STRESS_MODELS = 40  # x 4 quants x 6 profiles (stress too) = 960 cells


def nothing_ran(proc) -> None:
    """A no-op run that measured something is no measurement of a no-op: stop with the reason."""
    ran = executed_cells(proc.stdout)
    up_to_date = proc.stdout.count("\n-- cell:") + proc.stdout.startswith("-- cell:")
    if ran or not up_to_date:
        sys.exit(f"noop: doit executed {len(ran)} cell(s) (first: {ran[:1]}) and found {up_to_date} up to date; "
                 "the generated results are not current, so this would not time a no-op run")


def profile_run(root: Path, top: int = 20) -> None:
    """cProfile of one `doit` run for whoever optimises it: llmspec's functions by cumulative
    time (doit's own frames would only repeat the total), then everything by own time."""
    out = root / "doit.prof"
    run([sys.executable, "-m", "cProfile", "-o", str(out), "-m", "doit"], root, "profiled doit")
    stats = pstats.Stats(str(out), stream=sys.stderr)
    say(f"  cProfile of one `doit` run: llmspec functions, top {top} by cumulative time:")
    stats.sort_stats("cumulative").print_stats("llmspec", top)
    say(f"  the same run, top {top // 2} functions by own time:")
    stats.sort_stats("tottime").print_stats(top // 2)


def import_times(root: Path, top: int = 8) -> None:
    """`python -X importtime`: the modules whose import costs most (cumulative), paid on every run."""
    proc = run([sys.executable, "-X", "importtime", "-m", "doit", "cell"], root, "doit -X importtime")
    rows = []
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)", line)
        if match and len(match.group(3)) <= 2:  # top-level imports only (nesting is indented)
            rows.append((int(match.group(2)), match.group(4)))
    say("  slowest top-level imports of `doit cell` (cumulative): " +
        ", ".join(f"{name} {us / 1e6:.2f} s" for us, name in sorted(rows, reverse=True)[:top]))


def measure(models: int, profiles: tuple[str, ...] = PROFILES, runs: int = RUNS, explain: bool = True) -> float:
    """Median wall seconds of `runs` no-op `doit` runs over models x 4 quants x profiles cells."""
    cells = models * 4 * len(profiles)
    with tempfile.TemporaryDirectory(prefix="llmspec-noop-") as tmp:
        root = Path(tmp)
        say(f"noop: generating {cells:,} cells ({', '.join(profiles)}) with current results in {root}")
        synthetic_project(root, models, profiles=profiles)
        timed(doit_cmd(), root, 1, "doit, first run (creates .doit.db; not counted)", check=nothing_ran)
        times = timed(doit_cmd(), root, runs, f"doit, {cells:,} cells", check=nothing_ran)
        if not explain:
            return median(times)
        cell_only = timed(doit_cmd("cell"), root, 1, f"doit cell (no report), {cells:,} cells", check=nothing_ran)
        say(f"  {cells:,} cells: doit median {median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f}); "
            f"doit cell alone {cell_only[0]:.2f} s, so the report is about {median(times) - cell_only[0]:.2f} s")
        if models == SIZES[0]:
            import_times(root)
        profile_run(root)
        return median(times)


def main() -> None:
    machine_note()
    small, large = (measure(models) for models in SIZES)
    # A spec with [profiles.stress] has one stress cell per configuration, whose fingerprint rests on
    # which configuration the other results select; 40 models x 4 x 6 profiles is about 1,000 cells.
    stress = measure(STRESS_MODELS, PROFILES + ("stress",), runs=1, explain=False)
    say(f"noop: with stress cells, {STRESS_MODELS * 4 * 6:,} cells took {stress:.2f} s "
        f"(without, 1,000 cells took {small:.2f} s)")
    figure("noop", f"{small:.2f} s for 1,000 cells, {large:.2f} s for 10,000", "< 1.0 s")


if __name__ == "__main__":
    main()
