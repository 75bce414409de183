"""Report: how long does `doit report` take over 10,000 result files, and how much memory does it need?

Re-rendering the report is the step a user repeats after every threshold edit, so it must stay
quick however large the committed matrix grows. A generated spec of 500 models x 4 quants x 5
profiles gets 10,000 result files in the runner's contract: every profile's real metric names,
5 to 20 raw samples each with chunk times and a few hundred bytes of answer text, and one cell
in fifty skipped and one in fifty failed (see _common.synthetic_result). Before each timed run a
threshold is edited, as a user would, so the report is really rebuilt (an unchanged spec and
unchanged results let `doit report` reuse the last report; that case is shown on stderr).
Reported: the median wall time of 3 runs and the peak resident memory of the largest (the
kernel's maxrss of the child), plus, on stderr, a cProfile of `build_report` in this process.
Target: under 3 s and under 500 MB.

`--hosts N` measures a fleet instead: the demo's real result files (build/results/*/demo, else the
test fixtures' copy) copied to N hosts, each with its own host card, in a temporary folder
(14,700 results at 420 hosts). Timed: `doit report` with nothing kept beside the reports (no index
of parsed results, no memo: the first render, within 1.5x of the parse floor), after a threshold
edit of one profile with both in place (results unchanged: below the parse floor), after an edit
of every profile's thresholds (the memo then keeps nothing that is used), and the page's size
(under 5 MB). The parse floor is json.loads's, as the goals were set; llmspec parses results with
pydantic-core's faster parser, and the ratios to that floor are printed too.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import shutil
import sys
import tempfile
from pathlib import Path

from _common import (
    REPO,
    doit_cmd,
    figure,
    load_plan,
    machine_note,
    make_project,
    median,
    say,
    synthetic_project,
    synthetic_spec,
    timed,
)

from llmspec.report import build_report
from llmspec.report.memo import FOLDER

RUNS = 3
MODELS = 500  # x 4 quants x 5 profiles = 10,000 result files


def reported(proc) -> None:
    """A run that printed no report path rendered nothing, and its time says nothing."""
    if "Report:" not in proc.stdout:
        sys.exit(f"report: `doit report` printed no report path:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")


def edit_threshold(spec_path: Path):
    """A `before` hook for `timed`: run i sees min_tokens_per_s = 2.i, a spec the last report was not made from."""
    def edit(i: int) -> None:
        spec_path.write_text(synthetic_spec(MODELS) + f"\n[thresholds.interactive]\nmin_tokens_per_s = 2.{i + 1}\n")
    return edit


def profile_build(plan, top: int = 15) -> int:
    """cProfile of build_report in this process, by cumulative time; returns the rows it reported."""
    profiler = cProfile.Profile()
    summary = profiler.runcall(build_report, plan.spec, plan.workspace.results, plan.workspace.reports,
                               plan.workspace.build / "cache")
    say(f"  cProfile of build_report over {summary.result_count:,} results, top {top} by cumulative time:")
    pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(top)
    return summary.result_count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=0, help="a fleet of this many hosts made of the demo's results")
    args = parser.parse_args()
    if args.hosts:
        return fleet(args.hosts)
    with tempfile.TemporaryDirectory(prefix="llmspec-report-") as tmp:
        root = Path(tmp)
        say(f"report: generating {MODELS * 20:,} result files in {root}")
        machine_note()
        plan = synthetic_project(root, MODELS, odd_every=50)
        edit = edit_threshold(root / "specs" / f"{plan.spec.name}.toml")
        timed(doit_cmd("report"), root, 1, "doit report (warm-up: page cache, .doit.db)", check=reported,
              before=lambda _: edit(RUNS))
        times = timed(doit_cmd("report"), root, RUNS, "doit report after a threshold edit", check=reported, before=edit)
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux
        unchanged = timed(doit_cmd("report"), root, 1, "doit report, nothing changed", check=reported)
        say(f"  doit report: median {median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f}), "
            f"peak RSS {peak_mb:.0f} MB; with nothing changed {unchanged[0]:.2f} s")
        floor = parse_floor(plan)
        pages = {name: (plan.workspace.reports / plan.spec.name / name).stat().st_size / 1e6
                 for name in ("report.html", "results.json", "results.csv")}
        say(f"  merely reading and parsing the {MODELS * 20:,} files: {floor:.2f} s (best of 3); report / parse "
            f"= {median(times) / floor:.1f}x (target: within 3x); sizes: "
            + ", ".join(f"{name} {mb:.1f} MB" for name, mb in pages.items()))
        opened = browser_timing(plan.workspace.reports / plan.spec.name / "report.html", root)
        rows = profile_build(plan)
        if rows != MODELS * 20:
            sys.exit(f"report: build_report saw {rows} results, expected {MODELS * 20}")
    figure("report", f"{median(times):.2f} s, {peak_mb:.0f} MB peak for 10,000 result files, "
           f"{median(times) / floor:.1f}x the parse floor, report.html {pages['report.html']:.1f} MB, "
           f"opens in {opened}", "< 3 s, < 500 MB, within 3x, page < 5 MB, opens < 2 s")


# A line of each profile's thresholds in specs/demo.toml, to which an edit appends a digit.
EVERY_PROFILE = ("min_tokens_per_s = 10.0", "max_load_s = 15.0", "min_docs_per_hour = 600.0", "min_math_pct = 20.0",
                 "max_p90_latency_s = 30.0")
DEMO_SOURCES = (REPO / "build" / "results", Path("/work/main/build/results"),
                REPO / "tests" / "fixtures" / "results")
RAM = (8, 16, 24, 32, 64, 128)  # host cards differ, as a fleet's machines do


def demo_results() -> Path:
    """The folder of one host's real demo results: the most complete one found."""
    found = [d for root in DEMO_SOURCES for d in sorted(root.glob("*/demo")) if d.is_dir()]
    if not found:
        sys.exit("report: no demo results found (run `make demo` first): looked in "
                 + ", ".join(str(r) for r in DEMO_SOURCES))
    return max(found, key=lambda d: sum(1 for _ in d.rglob("*.json")))


def fleet_results(source: Path, results: Path, hosts: int) -> int:
    """`hosts` copies of one host's results, each under its own host folder with its own id and
    memory in the host card (a byte-level replace: the files stay exactly as llmspec wrote them)."""
    files = {p.relative_to(source): p.read_bytes() for p in sorted(source.rglob("*.json"))}
    old_id = source.parent.name.encode()
    count = 0
    for i in range(hosts):
        host = f"fleet-{i:03d}-{RAM[i % len(RAM)]}g-{i * 7919 % 65536:04x}"
        for rel, data in files.items():
            path = results / host / "demo" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            ram = f'"ram_gb": {RAM[i % len(RAM)]}'.encode()
            data = data.replace(old_id, host.encode()).replace(b'"ram_gb": 24', ram)
            path.write_bytes(data)
            count += 1
    return count


def fleet(hosts: int) -> None:
    """`--hosts N`: the demo's results on N hosts, rendered without and with the index of parsed results."""
    source = demo_results()
    with tempfile.TemporaryDirectory(prefix="llmspec-fleet-") as tmp:
        root = make_project(Path(tmp))
        spec_text = (REPO / "specs" / "demo.toml").read_text()
        spec_path = root / "specs" / "demo.toml"
        spec_path.write_text(spec_text)
        plan = load_plan(root, "demo")
        count = fleet_results(source, plan.workspace.results, hosts)
        say(f"report --hosts {hosts}: {count:,} result files copied from {source} to {hosts} hosts in {root}")
        machine_note()
        out = plan.workspace.reports / "demo"

        def edit(i: int) -> None:  # a threshold edit: the report is rebuilt, from unchanged results
            spec_path.write_text(spec_text.replace("min_tokens_per_s = 10.0", f"min_tokens_per_s = 10.{i + 1}"))

        def edit_all(i: int) -> None:  # every profile's thresholds edited: no profile's rows are kept
            text = spec_text
            for line in EVERY_PROFILE:
                text = text.replace(line, f"{line}{i + 1}")
            spec_path.write_text(text)

        def cold(i: int) -> None:  # ... and with nothing kept: no index (every file is read), no memo
            edit(i + 5)
            for index in out.glob(".results-index*"):
                index.unlink()
            shutil.rmtree(out / FOLDER, ignore_errors=True)

        timed(doit_cmd("report"), root, 1, "doit report (warm-up: page cache, .doit.db)", check=reported,
              before=lambda _: edit(9))
        first = timed(doit_cmd("report"), root, RUNS, "doit report, nothing kept (every file parsed)",
                      check=reported, before=cold)
        again = timed(doit_cmd("report"), root, RUNS, "doit report after a threshold edit, index kept",
                      check=reported, before=edit)
        every = timed(doit_cmd("report"), root, RUNS, "doit report after editing every profile's thresholds, "
                      "index kept", check=reported, before=edit_all)
        unchanged = timed(doit_cmd("report"), root, 1, "doit report, nothing changed", check=reported)
        floor = parse_floor(plan)
        from pydantic_core import from_json  # what llmspec parses results with (results.parse_without)

        fast_floor = parse_floor(plan, from_json)
        page = (out / "report.html").stat().st_size / 1e6
        files = [p for p in out.rglob("*") if p.is_file() and p.parent != out]
        kept = sum(p.stat().st_size for p in files if FOLDER in p.relative_to(out).parts) / 1e6
        extra = sum(p.stat().st_size for p in files if FOLDER not in p.relative_to(out).parts) / 1e6
        say(f"  parse floor (read + json.loads of {count:,} files, best of 3): {floor:.2f} s; with pydantic-core's "
            f"parser, which llmspec parses results with: {fast_floor:.2f} s, against which nothing kept is "
            f"{median(first) / fast_floor:.2f}x and a threshold edit {median(again) / fast_floor:.2f}x")
        say(f"  doit report, nothing kept: median {median(first):.2f} s = {median(first) / floor:.2f}x the floor "
            f"(target within 1.5x); index kept: median {median(again):.2f} s = {median(again) / floor:.2f}x "
            f"(target below 1x), {median(every):.2f} s = {median(every) / floor:.2f}x after editing every "
            f"profile's thresholds; nothing changed {unchanged[0]:.2f} s")
        say(f"  report.html {page:.1f} MB (target < 5 MB)" + (f", plus {extra:.1f} MB of files beside it" if extra
                                                                else "") + f"; the memo keeps {kept:.1f} MB")
        opened = browser_timing(out / "report.html", root)
    figure("report-fleet", f"{hosts} hosts, {count:,} results: {median(first) / floor:.2f}x the parse floor "
           f"(json.loads) with nothing kept, {median(again) / floor:.2f}x after a threshold edit "
           f"({median(every) / floor:.2f}x after editing every profile's; against pydantic-core's parser "
           f"{median(first) / fast_floor:.2f}x and {median(again) / fast_floor:.2f}x), report.html {page:.1f} MB, "
           f"opens in {opened}",
           "within 1.5x, below 1x, page < 5 MB")


def browser_timing(page: Path, root: Path) -> str:
    """Chromium's own performance timing of report.html, median of 3 fresh headless browsers:
    first contentful paint (the summary at the top), the load event (the page's scripts have run:
    it can be read, scrolled and paged), every paged table's rows unpacked (sorting and filtering
    reach them all) and every chart drawn (one after another, after the load event)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.devtools import CHROMIUM, Browser

    if not Path(CHROMIUM).exists():
        say("  browser timing: no Chromium at /usr/bin/chromium (Debian package `chromium`), not measured")
        return "(no Chromium to time it)"
    runs = []
    for i in range(3):
        browser = Browser(root / f"chromium-{i}")
        try:
            browser.open(page.as_uri())
            runs.append(browser.evaluate("""Promise.all((window.llmspecTables || []).map(m => m.ready)).then(() => {
                const tables = performance.now();
                return window.llmspecCharts.then(() => {
                    const nav = performance.getEntriesByType("navigation")[0];
                    const paint = performance.getEntriesByName("first-contentful-paint")[0];
                    return {paint: paint ? paint.startTime : null, load: nav.loadEventEnd, tables,
                            charts: performance.now()};
                });
            })"""))
            errors = browser.console_errors()
        finally:
            browser.close()
        warnings = [e for e in errors if e.startswith("WARN ")]  # Vega's own notes, e.g. a legend cut short
        if len(warnings) < len(errors):
            sys.exit(f"report: report.html logged errors in Chromium: {[e for e in errors if e not in warnings][:3]}")
        if warnings and i == 0:
            say(f"  Chromium console warnings (Vega): {sorted(set(warnings))}")
        say(f"  Chromium run {i + 1}: first paint {runs[-1]['paint']:.0f} ms, load event {runs[-1]['load']:.0f} ms, "
            f"tables unpacked {runs[-1]['tables']:.0f} ms, charts drawn {runs[-1]['charts']:.0f} ms")
    paint, load, tables, drawn = (median([r[k] for r in runs]) / 1000 for k in ("paint", "load", "tables", "charts"))
    say(f"  report.html in Chromium (median of 3): first paint {paint:.2f} s, load event {load:.2f} s, "
        f"every table's rows unpacked {tables:.2f} s, every chart drawn {drawn:.2f} s")
    return f"{load:.2f} s (first paint {paint:.2f} s)"


def parse_floor(plan, parser=None) -> float:
    """The least any report must do: read every result file and parse its JSON with json.loads (or
    `parser`), best of 3, in this process. The ratio to it holds on any machine, where absolute
    times move 2x between them."""
    import json
    import time

    from llmspec.results import result_paths

    parser = parser or json.loads
    paths = list(result_paths(plan.workspace.results, plan.spec.name))
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for path in paths:
            with open(path, "rb") as fh:
                parser(fh.read())
        best = min(best, time.perf_counter() - t0)
    return best


if __name__ == "__main__":
    main()
