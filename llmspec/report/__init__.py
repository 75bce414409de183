"""Reports: results on disk -> report.html, results.csv, results.xlsx, results.json under reports/<spec>/.

Nothing is measured here; everything is re-derived from result files, the host's cached
bandwidth and the spec's current thresholds each time, so `doit report` is cheap and always
agrees with the spec. Writers return text and only this module touches the disk, each file
written via temp file + rename so a reader never sees half a report.

`render` skips the work when nothing a report depends on changed since the last one (a
signature of the spec, the result files' names, sizes and times, and the report code), so a
`doit` with nothing to do stays fast; it still prints the recommendations every time.
"""

from __future__ import annotations

import gc
import hashlib
import json as stdjson  # plain `json` is shadowed by the report.json submodule
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from llmspec import revisions
from llmspec.results import bound_names, result_stats, write_text_atomic
from llmspec.text import format_table

if TYPE_CHECKING:
    from llmspec.report.memo import Memo
    from llmspec.spec import Spec

STATE = ".state.json"  # per spec: the signature of the last report and what the console showed
FILES = ("report.html", "results.csv", "results.json")  # results.xlsx too: report/datafiles.py
CONSOLE_ROWS = 40  # a matrix of thousands of cells belongs in the files, not the terminal
# (header, frame column, format) of the end-of-run console table.
CONSOLE_COLUMNS = (
    ("model", "model", "{}"), ("quant", "config", "{}"), ("profile", "profile", "{}"),
    ("status", "status", "{}"), ("tokens/s", "tokens_per_s", "{:.1f}"), ("TTFT s", "ttft_s", "{:.2f}"),
    ("rating", "rating", "{}"),
)


@dataclass
class ReportSummary:
    spec: str
    html: Path
    csv: Path
    json: Path
    result_count: int
    left_out: int  # result files of cells the spec no longer has
    host_count: int = 1
    rows: list[dict] = field(default_factory=list, repr=False)  # the first CONSOLE_ROWS cells
    recommendations: str = ""
    index: dict = field(default_factory=dict, repr=False)  # this spec's line on the index page

    def console_table(self) -> str:
        """A short plain-text table for the end of a run; the files hold the details."""
        if not self.rows:
            return f"No results for spec {self.spec} yet; wrote empty reports to {self.html.parent}."
        columns = ((("host", "host", "{}"),) if self.host_count > 1 else ()) + CONSOLE_COLUMNS
        lines = [[head for head, _, _ in columns]]
        lines += [[_fmt(row.get(col), fmt, *(row.get(b) for b in bound_names(col))) for _, col, fmt in columns]
                  for row in self.rows[:CONSOLE_ROWS]]
        text = [format_table(lines)]
        if self.result_count > len(self.rows):
            text.append(f"... and {self.result_count - len(self.rows)} more cells (all in the report)")
        if self.left_out:
            text.append(f"({self.left_out} result file(s) of cells no longer in the spec left out)")
        text.append(f"Report: {self.html}")
        return "\n".join(text)

    def console(self) -> str:
        """What the end of `doit` prints: the cells, then the recommendations."""
        return "\n\n".join(t for t in (self.console_table(), self.recommendations) if t)


def _fmt(value, fmt: str, low=None, high=None) -> str:
    """A figure, with its 95 % interval when the result has one: `62.4 (60.1-63.0)`."""
    if value is None:
        return "-"
    if low is not None and high is not None:
        return f"{fmt.format(value)} ({fmt.format(low)}-{fmt.format(high)})"
    return fmt.format(value)


def build_report(spec: Spec, results_root: Path, reports_root: Path, cache_dir: Path | None = None,
                 stats: dict[str, tuple[int, int]] | None = None) -> ReportSummary:
    """Render all three reports for `spec` from every host's results under `results_root` (`stats`:
    their results.result_stats, when already taken)."""
    from llmspec.report.memo import FOLDER, Memo

    out = Path(reports_root) / spec.name
    with without_gc(), Memo(out / FOLDER) as memo:  # each profile's rated rows, table rows and results.json entries
        return _build(spec, Path(results_root), out, cache_dir, memo, stats)


@contextmanager
def without_gc() -> Iterator[None]:
    """No cyclic garbage collection while a report is made: its rows, dicts and frames hold no
    cycles, and the collector walked them all again and again (0.06 s of a fleet report's first
    render). Whatever it would have freed is freed by the next collection after."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _build(spec: Spec, results_root: Path, out: Path, cache_dir: Path | None, memo: Memo,
           stats: dict[str, tuple[int, int]] | None) -> ReportSummary:
    """`build_report` into `out`, keeping each profile's derived frames in `memo`."""
    from llmspec.machine import bandwidth
    from llmspec.report.configs import broadcast_serverless, configs
    from llmspec.report.datafiles import Writer
    from llmspec.report.details import CELL_LIMIT, FLEET_CELL_LIMIT, read_details
    from llmspec.report.fleet import fleet as generate_fleet
    from llmspec.report.frame import for_spec, load_frame
    from llmspec.report.history import history
    from llmspec.report.html import FLEET_WIDE, generate_html, index_entry
    from llmspec.report.json import json_head
    from llmspec.report.parsed import index_path
    from llmspec.report.recommend import recommend
    from llmspec.report.settings import host_info
    from llmspec.report.suggested import suggested
    from llmspec.report.vega import bundle

    loaded = load_frame(results_root, spec.name, index_path(out), stats)
    # The data files are written beside the page (report/datafiles.py): by a child process for
    # thousands of results, started now so its imports overlap the rating.
    with Writer(out, memo, loaded.height) as data_files:
        frame, left_out = for_spec(loaded, spec, memo)
        del loaded
        wide = broadcast_serverless(frame)  # a divergence result stands for every server-setting variant
        table = configs(wide, spec, bandwidth.load_all(Path(results_root)))
        data_files.start(wide, table)
        recs = recommend(table, spec, host_info(frame))
        generated_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        data_files.finish(json_head(wide, recs.as_dict(), spec, generated_at))
        fleet = generate_fleet(frame, table, recs)  # None for one host
        shown = [c for _, col, _ in CONSOLE_COLUMNS for c in (col, *bound_names(col)) if c in frame.columns]
        shown.append("host")
        summary = ReportSummary(
            spec=spec.name, html=out / "report.html", csv=out / "results.csv", json=out / "results.json",
            result_count=frame.height, left_out=left_out, host_count=frame["host"].n_unique(),
            rows=frame.head(CONSOLE_ROWS).select(shown).to_dicts(),
            recommendations=recs.text(), index=asdict(index_entry(frame, spec, generated_at)),
        )
        details = read_details(frame, Path(results_root),
                               CELL_LIMIT if summary.host_count <= FLEET_WIDE else FLEET_CELL_LIMIT)
        past = history(frame, Path(results_root), spec.name)  # None outside git or without committed results
        picks = suggested(spec, Path(results_root))
        write_text_atomic(summary.html, generate_html(frame, table, recs, spec, generated_at, details,
                                                      bundle(cache_dir), past, fleet, picks, memo))
        data_files.result()
    return summary


def fleet_summary(spec: Spec, results_root: Path, me: str | None = None, reports_root: Path | None = None):
    """`llmspec fleet`: the report's fleet section for `spec` (None with results of one host or none);
    `me`: the host set against the others (default this machine). With `reports_root`, the results are
    read through the report's index of parsed results there (parsed.py), as `doit report` reads them."""
    from llmspec.machine import bandwidth
    from llmspec.report.configs import configs
    from llmspec.report.fleet import fleet
    from llmspec.report.frame import for_spec, load_frame
    from llmspec.report.parsed import index_path
    from llmspec.report.recommend import recommend
    from llmspec.report.settings import host_info

    index = index_path(Path(reports_root) / spec.name) if reports_root is not None else None
    frame, _ = for_spec(load_frame(Path(results_root), spec.name, index), spec)
    table = configs(frame, spec, bandwidth.load_all(Path(results_root)))
    if me is not None and frame.height and me not in set(frame["host"].to_list()):
        from llmspec.errors import UserError

        raise UserError(f"--host {me}: no results of spec {spec.name} from that host under {results_root} "
                        f"(hosts there: {', '.join(sorted(set(frame['host'].to_list())))})")
    return fleet(frame, table, recommend(table, spec, host_info(frame)), me)


def render(spec: Spec, results_root: Path, reports_root: Path, cache_dir: Path | None = None) -> ReportSummary:
    """`build_report`, unless the last report of `spec` was made from exactly these inputs."""
    out = Path(reports_root) / spec.name
    stats = result_stats(Path(results_root), spec.name)
    sign = signature(spec, Path(results_root), stats)
    state = _read_state(out / STATE)
    if state.get("signature") == sign and all((out / name).is_file() for name in FILES):
        return _from_state(spec.name, out, state["summary"])
    summary = build_report(spec, results_root, reports_root, cache_dir, stats)
    fields = {k: v for k, v in asdict(summary).items() if k not in ("spec", "html", "csv", "json")}
    write_text_atomic(out / STATE, stdjson.dumps({"signature": sign, "summary": fields}, ensure_ascii=False) + "\n")
    return summary


def build_index(reports_root: Path) -> Path:
    """reports/index.html linking every spec's report (from each spec's last state).

    Left alone when it is newer than every spec's state file: a state file is rewritten with
    each new report, so an older index is the only one that can be out of date."""
    root = Path(reports_root)
    path = root / "index.html"
    states = sorted(root.glob(f"*/{STATE}"))
    if path.is_file() and all(s.stat().st_mtime_ns <= path.stat().st_mtime_ns for s in states):
        return path
    from llmspec.report.html import IndexEntry, generate_index

    entries = []
    for state_file in states:
        entry = _read_state(state_file).get("summary", {}).get("index")
        if entry:
            entries.append(IndexEntry(**{**entry, "hosts": tuple(entry["hosts"])}))
    write_text_atomic(path, generate_index(entries))
    return path


def signature(spec: Spec, results_root: Path, stats: dict[str, tuple[int, int]] | None = None) -> str:
    """Everything a report is made of: the spec, every result file (name, size, mtime: `stats`, else
    taken here), each host's bandwidth figure and the report code itself. stat() only: no file is read."""
    digest = hashlib.sha256(spec.model_dump_json().encode())
    digest.update(revisions.head(results_root).encode())  # a new commit adds to the history section
    for path, (size, mtime_ns) in (stats if stats is not None else result_stats(results_root, spec.name)).items():
        digest.update(f"{path}\0{size}\0{mtime_ns}\n".encode())
    for path in sorted(results_root.glob("*/bandwidth.json")):
        digest.update(f"{path}\0{path.stat().st_mtime_ns}\n".encode())
    for path in sorted(Path(__file__).parent.rglob("*")):
        if path.is_file() and path.suffix in (".py", ".html", ".css", ".js"):
            digest.update(f"{path.name}\0{path.stat().st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _read_state(path: Path) -> dict:
    try:
        state = stdjson.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _from_state(spec: str, out: Path, fields: dict) -> ReportSummary:
    return ReportSummary(spec=spec, html=out / "report.html", csv=out / "results.csv", json=out / "results.json",
                         **fields)


__all__ = ["ReportSummary", "build_index", "build_report", "fleet_summary", "render"]
