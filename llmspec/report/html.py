"""report.html and the reports index: the pages a person reads, each one self-contained file.

Autoescaping is on because model names, reasons, flags, log lines and model answers carry
text from outside llmspec; a `<script>` in any of them must show as text, never run. Data for
the charts sits in JSON script blocks with `<`, `>` and `&` escaped, so no string inside can
close the block. The page has no external resource of any kind (the chart library is inlined,
see vega.py), so it opens offline and can be archived or mailed as one file.

This module shapes what the templates show: the summary and findings here, the table rows in
tables.py (escaped HTML strings, paged when large), the charts in charts.py, the raw samples in
details.py; the page's layout, style and behaviour live in templates/.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import polars as pl
from markupsafe import Markup, escape

from llmspec.rating import LABELS, interpret
from llmspec.report import configs as configs_module
from llmspec.report.charts import charts
from llmspec.report.details import SAMPLE_LIMIT, Details
from llmspec.report.frame import hosts
from llmspec.report.memo import NO_MEMO, Memo
from llmspec.report.tables import (
    configs_table,
    esc,
    fleet_heatmap,
    heatmap,
    host_comparison,
    host_spread,
    memory_table,
    pack,
    profile_tables,
    size_table,
)
from llmspec.spec import Spec

TEMPLATES = Path(__file__).parent / "templates"
PACKED_TYPE = "application/x-llmspec-packed"  # a packed chart spec's script type
PACK_ABOVE = 64_000  # characters of chart JSON kept as plain text (the demo's are under 20,000)
# Above this many hosts the page is at fleet scale: hosts side by side (a heat-map column group and a
# comparison column pair per host, a card each) would make a 12 MB page at 420 hosts, so hosts become
# rows, the comparison a spread over hosts, and each host's card and overall pick are packed and
# unpacked when chosen.
FLEET_WIDE = 8
SCRIPT_ESCAPES = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026"}


@dataclass(frozen=True)
class IndexEntry:
    """One spec's line on the reports index."""

    spec: str
    description: str
    href: str  # report.html relative to the index
    hosts: tuple[str, ...]
    results: int
    ratings: dict[str, int] = field(default_factory=dict)  # label -> cells, in LABELS order
    generated_at: str = ""


@lru_cache(maxsize=1)
def _env() -> jinja2.Environment:
    """Made once per process: compiling the templates costs more than rendering a small report. Jinja
    keeps the compiled templates in its own cache folder (the user's, under the temp folder), checked
    against each template's source, so a later `doit report` skips compiling them (0.04 s)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             bytecode_cache=_bytecode_cache())
    env.filters["script_json"] = script_json
    env.filters["chart_script"] = chart_script
    return env


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    try:
        return jinja2.FileSystemBytecodeCache()
    except (OSError, RuntimeError):  # no safe temp folder (read-only, another user's): compiled each time
        return None


def script_json(value: Any) -> Markup:
    """JSON safe inside <script type="application/json">: no `</script>` or `<!--` can form."""
    return Markup(json.dumps(value, ensure_ascii=False, allow_nan=False).translate(SCRIPT_ESCAPES))


def chart_script(spec: Any, ident: str) -> Markup:
    """A chart's Vega-Lite spec in a script element: plain JSON, or packed (see `pack`) when it is
    large: a 10,000-result report's charts held 2 MB of repeated keys and names."""
    plain = json.dumps(spec, ensure_ascii=False, allow_nan=False)
    text = plain.translate(SCRIPT_ESCAPES)  # script_json's text
    if len(text) <= PACK_ABOVE:
        return Markup(f'<script type="application/json" id="{esc(ident)}">{text}</script>')
    # the packed form holds JSON with non-ASCII escaped; text without any is that already (one dump, not two)
    packed = pack(plain if plain.isascii() else json.dumps(spec, allow_nan=False))
    return Markup(f'<script type="{PACKED_TYPE}" id="{esc(ident)}">{packed}</script>')


def generate_html(frame: pl.DataFrame, configs: pl.DataFrame, recs: Any, spec: Spec, generated_at: str,
                  details: Details, vega_js: str, history: Any = None, fleet: Any = None,
                  suggested: Any = None, memo: Memo = NO_MEMO) -> str:
    """HTML text of a `frame.for_spec` frame, its `configs` table, `recommend` output and `read_details`
    (and `history.history`'s section, when git holds earlier results; `report.suggested`'s catalogue
    configurations, linked from the predicted-vs-measured table; `memo` keeps each profile's table rows)."""
    drawn = charts(frame, configs, details, spec, memo, chart_script)
    many = frame["host"].n_unique() > 1
    wide = frame["host"].n_unique() > FLEET_WIDE
    tables, heat = profile_tables(frame, spec, details, memo)
    hosts = _hosts(frame)
    comparison = (host_spread(frame) if wide else host_comparison(frame, heat)) if many else None
    return _env().get_template("report.html").render(
        spec=spec, generated_at=generated_at, count=frame.height, many_hosts=many,
        hosts=hosts, evaluated=_evaluated(frame), recs=recs, findings=_findings(frame, configs),
        heatmap=fleet_heatmap(frame, heat) if wide else heatmap(frame, heat), comparison=comparison,
        charts=drawn, vega_js=Markup(vega_js) if any(c.spec or c.script for c in drawn) or history else "",
        history=history,
        tables=tables, sizes=size_table(frame),
        configs=configs_table(configs), memory=memory_table(configs, suggested, details.anchors, spec.name),
        scores_doc=_doc_html(_scores_part(configs_module.__doc__ or "")),
        details=details, sample_limit=SAMPLE_LIMIT, labels=LABELS, fleet=fleet,
        host_details=_host_details(hosts, recs) if wide else "",
    )


def _host_details(hosts: list[dict[str, Any]], recs: Any) -> str:
    """Each host's card and overall pick as HTML, packed (see `pack`): {host id: html}."""
    template = _env().get_template("host.html")
    lines: dict[str, list] = {}
    for line in (recs.overall if recs else ()):
        lines.setdefault(line.host, []).append(line)
    return pack(json.dumps({h["id"]: template.render(h=h, lines=lines.get(h["id"], [])) for h in hosts},
                           ensure_ascii=False))


def generate_index(entries: Sequence[IndexEntry]) -> str:
    """build/reports/index.html: one line per spec, linking its report."""
    return _env().get_template("index.html").render(entries=entries, labels=LABELS)


def index_entry(frame: pl.DataFrame, spec: Spec, generated_at: str) -> IndexEntry:
    counts = Counter(frame["rating"].drop_nulls().to_list()) if frame.height else Counter()
    return IndexEntry(spec.name, spec.description, f"{spec.name}/report.html",
                      tuple(sorted(frame["host"].unique().to_list())), frame.height,
                      {label: counts[label] for label in LABELS if counts[label]}, generated_at)


# --- executive summary --------------------------------------------------------------------------


def _hosts(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Hardware as recorded, with how long the host spent measuring and how many cells it ran."""
    if not frame.height:
        return []
    spent = {h: (s, n) for h, s, n in frame.group_by("host").agg(pl.col("duration_s").sum(), pl.len()).rows()}
    return [{**h, "duration": _duration(spent[h["id"]][0]), "cells": spent[h["id"]][1]} for h in hosts(frame)]


def _duration(seconds: float | None) -> str:
    seconds = int(seconds or 0)
    hours, rest = divmod(seconds, 3600)
    return f"{hours} h {rest // 60} min" if hours else f"{rest // 60} min {rest % 60} s"


def _evaluated(frame: pl.DataFrame) -> list[dict[str, Any]]:
    if not frame.height:
        return []
    models = frame.group_by("model", maintain_order=True).agg(pl.col("config").unique(maintain_order=True))
    return [{"model": m, "quants": q} for m, q in models.rows()]


def _findings(frame: pl.DataFrame, configs: pl.DataFrame) -> list[str]:
    """A few sentences a reader should not miss, each computed from the same figures as the tables."""
    if not frame.height:
        return []
    counts = Counter(frame["rating"].to_list())
    status = Counter(frame["status"].to_list())
    found = [f"{frame.height} cells: " + ", ".join(f"{counts[label]} {label}" for label in LABELS if counts[label])
             + "".join(f", {status[s]} {s}" for s in ("skipped", "error") if status[s])]
    best = _top(configs, "tokens_per_s")
    if best:
        found.append(f"Fastest generation: {_name(best)} at {best['tokens_per_s']:.1f} tokens/s "
                     f"({interpret('tokens_per_s', best['tokens_per_s']).lower()}).")
    best = _top(configs, "quality_pct")
    if best:
        found.append(f"Highest quality score: {_name(best)} with {best['quality_pct']:.0f}% correct.")
    found += _quality_loss(configs)
    worst = _top(configs, "kld_mean")
    if worst and worst["kld_mean"] > 0 and worst["same_top_pct"] is not None:
        found.append(f"Largest divergence from a reference quant: {_name(worst)}, KLD {worst['kld_mean']:.3g} with "
                     f"{worst['same_top_pct']:.0f}% of top tokens kept ({interpret('kld_mean', worst['kld_mean'])}).")
    found += _energy(frame)
    hot = _top(configs, "max_temperature_c")
    if hot:
        found.append(f"Hottest stress run: {_name(hot)} reached {hot['max_temperature_c']:.0f} °C "
                     f"({interpret('max_temperature_c', hot['max_temperature_c']).lower()}).")
    flagged = configs.filter(pl.col("roofline_flag").fill_null(False)) if configs.height else configs
    for row in flagged.head(3).to_dicts():
        found.append(f"{_name(row)} reaches only {row['roofline_pct']:.0f}% of the memory-bandwidth bound: "
                     "likely misconfigured (threads, other load) or limited by compute.")
    if flagged.height > 3:
        found.append(f"{flagged.height - 3} more configurations are far below the bound "
                     "(marked ⚑ under Configurations).")
    if status["error"]:
        found.append(f"{status['error']} cell(s) failed; their reasons and server logs are under "
                     "“Raw samples and logs”.")
    return found


def _energy(frame: pl.DataFrame) -> list[str]:
    """Energy per token where a counter measured it (the idle draw beside it), else why not, per host;
    hosts without a counter for the same reason share one sentence (420 of them would be 420)."""
    best_of: dict[str, dict[str, Any]] = {}
    if "joules_per_token" in frame.columns:
        measured = frame.filter((pl.col("status") == "ok") & pl.col("joules_per_token").is_not_null())
        for row in measured.sort("joules_per_token").unique("host", keep="first", maintain_order=True).iter_rows(
                named=True):
            best_of[row["host"]] = row
    found, unavailable = [], {}
    for host in hosts(frame):
        best = best_of.get(host["id"])
        if best is not None:
            idle = f", idle draw {best['idle_power_w']:.0f} W beside it" if best.get("idle_power_w") else ""
            found.append(f"Lowest energy per token on {host['id']}: {best['model']} {best['config']} "
                         f"({best['profile']}) at {best['joules_per_token']:.3g} J/token ({best['power_w']:.0f} W"
                         f"{idle}).")
        elif str(host.get("energy", "")).startswith("not available"):
            unavailable.setdefault(host["energy"], []).append(host["id"])
    for why, ids in unavailable.items():
        named = ids[0] if len(ids) == 1 else f"{len(ids)} hosts ({', '.join(ids[:3])}{', …' if len(ids) > 3 else ''})"
        found.append(f"Energy per token on {named}: {why}.")
    return found


def _quality_loss(configs: pl.DataFrame) -> list[str]:
    """The largest loss the paired test confirms; else, when quants differ only by chance, say that."""
    largest = configs["quality_degradation_pts"].drop_nulls().max() if configs.height else None
    if largest is None or largest <= 0:
        return []
    tested = configs.filter(pl.col("quality_degradation_pts") > 0)
    real = tested.filter(pl.col("quality_loss_p") < configs_module.SIGNIFICANT_P)
    if real.height:
        worst = real.sort("quality_degradation_pts", descending=True).row(0, named=True)
        return [f"Largest quality loss from quantization: {_name(worst)}, {configs_module.loss_statement(worst)}."]
    worst = tested.sort("quality_degradation_pts", descending=True).row(0, named=True)
    return [f"No quant lost measurable quality against its reference: the largest difference, {_name(worst)}, "
            f"{configs_module.loss_statement(worst)}."]


def _top(configs: pl.DataFrame, column: str) -> dict[str, Any] | None:
    if not configs.height or column not in configs.columns:
        return None
    rows = configs.filter(pl.col(column).is_not_null() & pl.col(column).is_not_nan())
    return rows.sort(column, descending=True).row(0, named=True) if rows.height else None


def _name(row: dict[str, Any]) -> str:
    return f"{row['model']} {row['config']} on {row['host']}"


def _scores_part(doc: str) -> str:
    """The part of configs' docstring written for people: from "Derived metrics" on, when it says so."""
    start = doc.find("Derived metrics")
    return doc[start:] if start >= 0 else doc


def _doc_html(text: str) -> Markup:
    """A docstring's paragraphs and `- ` bullets as HTML, with **bold** and `code` (escaped first)."""
    blocks = []
    for para in re.split(r"\n\s*\n", text.strip()):
        items = re.split(r"\n(?=- )", para)
        inline = [_inline(" ".join(line.strip() for line in item.removeprefix("- ").splitlines())) for item in items]
        if para.startswith("- "):
            blocks.append(Markup("<ul>") + Markup("").join(Markup("<li>") + i + Markup("</li>") for i in inline)
                          + Markup("</ul>"))
        else:
            blocks.append(Markup("<p>") + Markup(" ").join(inline) + Markup("</p>"))
    return Markup("\n").join(blocks)


def _inline(text: str) -> Markup:
    html = str(escape(text))
    html = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html)
    return Markup(re.sub(r"`(.+?)`", r"<code>\1</code>", html))
