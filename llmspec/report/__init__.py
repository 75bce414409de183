"""Reports: results on disk -> report.html, results.csv, results.json under reports/<spec>/.

Nothing is measured here; everything is re-derived from result files and the spec's current
thresholds each time, so `doit report` is cheap and always agrees with the spec. Writers return
text and only this module touches the disk, each file written via temp file + rename so a
reader never sees half a report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from llmspec.report.csv import generate_csv
from llmspec.report.frame import for_spec, load_frame
from llmspec.report.html import generate_html
from llmspec.report.json import generate_json
from llmspec.results import write_text_atomic
from llmspec.spec import Spec
from llmspec.table import format_table

# (header, frame column, format) of the end-of-run console table.
CONSOLE_COLUMNS = (
    ("model", "model", "{}"), ("quant", "quant", "{}"), ("profile", "profile", "{}"),
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
    rows: list[dict] = field(default_factory=list, repr=False)

    @property
    def paths(self) -> list[Path]:
        return [self.html, self.csv, self.json]

    def console_table(self) -> str:
        """A short plain-text table for the end of a run; the files hold the details."""
        if not self.rows:
            return f"No results for spec {self.spec} yet; wrote empty reports to {self.html.parent}."
        many_hosts = len({r["host"] for r in self.rows}) > 1
        columns = ((("host", "host", "{}"),) if many_hosts else ()) + CONSOLE_COLUMNS
        lines = [[head for head, _, _ in columns]]
        lines += [[_fmt(row.get(col), fmt) for _, col, fmt in columns] for row in self.rows]
        text = [format_table(lines)]
        if self.left_out:
            text.append(f"({self.left_out} result file(s) of cells no longer in the spec left out)")
        text.append(f"Report: {self.html}")
        return "\n".join(text)


def _fmt(value, fmt: str) -> str:
    if value is None:
        return "-"
    return fmt.format(value)


def build_report(spec: Spec, results_root: Path, reports_root: Path) -> ReportSummary:
    """Render all three reports for `spec` from every host's results under `results_root`."""
    frame, left_out = for_spec(load_frame(Path(results_root), spec.name), spec)
    generated_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = Path(reports_root) / spec.name
    summary = ReportSummary(
        spec=spec.name, html=out / "report.html", csv=out / "results.csv", json=out / "results.json",
        result_count=frame.height, left_out=left_out,
        rows=frame.select([c for _, c, _ in CONSOLE_COLUMNS if c in frame.columns] + ["host"]).to_dicts(),
    )
    write_text_atomic(summary.csv, generate_csv(frame))
    write_text_atomic(summary.json, generate_json(frame, spec, generated_at))
    write_text_atomic(summary.html, generate_html(frame, spec, generated_at))
    return summary


__all__ = ["ReportSummary", "build_report"]
