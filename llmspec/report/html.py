"""report.html and the reports index: the pages a person reads, each one self-contained file.

Autoescaping is on because model names, reasons, flags, log lines and model answers carry
text from outside llmspec; a `<script>` in any of them must show as text, never run. Data for
the charts sits in JSON script blocks with `<`, `>` and `&` escaped, so no string inside can
close the block. The page has no external resource of any kind (the chart library is inlined,
see vega.py), so it opens offline and can be archived or mailed as one file.

This module shapes what the templates show (table rows it builds as escaped HTML itself, for
speed, see "tables" below); the charts (charts.py) and the raw samples (details.py) are prepared
elsewhere, and the page's layout, style and behaviour live in templates/.
"""

from __future__ import annotations

import base64
import html as stdlib_html
import json
import math
import re
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import polars as pl
from markupsafe import Markup, escape

from llmspec.profiles import ORDER, PROFILES
from llmspec.rating import LABELS, METRIC_TRANSLATION, interpret
from llmspec.report import configs as configs_module
from llmspec.report.charts import charts
from llmspec.report.details import SAMPLE_LIMIT, Details
from llmspec.report.frame import hosts, metric_columns
from llmspec.results import bound_names
from llmspec.spec import Spec
from llmspec.text import figure

TEMPLATES = Path(__file__).parent / "templates"
PAGE_ROWS = 100  # rows a table shows at once; larger tables page (see `_body`)
ROWS_TYPE = "application/x-llmspec-rows"  # the packed rows' script type, which report.js looks for
PACKED_TYPE = "application/x-llmspec-packed"  # a packed chart spec's script type
PACK_ABOVE = 64_000  # characters of chart JSON kept as plain text (the demo's are under 20,000)
PER_SIZE = re.compile(r"_(\d+)$")  # long_context's per-size metrics: a table of their own
SCRIPT_ESCAPES = {ord("<"): "\\u003c", ord(">"): "\\u003e", ord("&"): "\\u0026"}
# configs columns shown in the configurations table: (column, header, format)
CONFIG_COLUMNS = (
    ("model_size_gb", "File GB", "{:.2f}"), ("peak_memory_gb", "Peak memory GB", "{:.2f}"),
    ("tokens_per_s", "Tokens/s", "{:.1f}"), ("ttft_s", "TTFT s", "{:.2f}"),
    ("max_context_tokens", "Max context", "{:,.0f}"), ("docs_per_hour", "Docs/hour", "{:.0f}"),
    ("quality_pct", "Quality %", "{:.0f}"), ("quality_degradation_pts", "Quality lost (pts)", "{:+.1f}"),
    ("kld_mean", "KLD vs reference", "{:.4f}"), ("same_top_pct", "Same top token %", "{:.1f}"),
    ("max_users_at_slo", "Users at service level", "{:.0f}"),
    ("efficiency_score", "Efficiency (0-100)", "{:.0f}"), ("cost_benefit_score", "Cost-benefit (0-100)", "{:.0f}"),
    ("roofline_pct", "Bandwidth bound %", "{:.0f}"),
)
ROOFLINE_FLAG = (' <span class="flag" title="far below the memory-bandwidth bound: likely misconfigured '
                 '(threads, other load) or limited by compute">⚑ check</span>')
CONFIG_MEANINGS = {"tokens_per_s": "tokens_per_s", "ttft_s": "ttft_s", "peak_memory_gb": "peak_rss_gb",
                   "docs_per_hour": "docs_per_hour", "kld_mean": "kld_mean", "same_top_pct": "same_top_pct"}


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
    """Made once per process: compiling the templates costs more than rendering a small report."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["script_json"] = script_json
    env.filters["chart_script"] = chart_script
    return env


def script_json(value: Any) -> Markup:
    """JSON safe inside <script type="application/json">: no `</script>` or `<!--` can form."""
    return Markup(json.dumps(value, ensure_ascii=False, allow_nan=False).translate(SCRIPT_ESCAPES))


def chart_script(spec: Any, ident: str) -> Markup:
    """A chart's Vega-Lite spec in a script element: plain JSON, or packed (see `pack`) when it is
    large: a 10,000-result report's charts held 2 MB of repeated keys and names."""
    text = script_json(spec)
    if len(text) <= PACK_ABOVE:
        return Markup(f'<script type="application/json" id="{_esc(ident)}">{text}</script>')
    return Markup(f'<script type="{PACKED_TYPE}" id="{_esc(ident)}">{pack(json.dumps(spec, allow_nan=False))}</script>')


def pack(text: str) -> str:
    """deflate + base64: what report.js's `unpack` reads back (DecompressionStream), about a tenth of
    the text for rows and chart data, and only [A-Za-z0-9+/=], safe inside any script element."""
    return base64.b64encode(zlib.compress(text.encode(), 6)).decode()


def generate_html(frame: pl.DataFrame, configs: pl.DataFrame, recs: Any, spec: Spec, generated_at: str,
                  details: Details, vega_js: str, history: Any = None) -> str:
    """HTML text of a `frame.for_spec` frame, its `configs` table, `recommend` output and `read_details`
    (and `history.history`'s section, when git holds earlier results)."""
    drawn = charts(frame, configs, details, spec)
    many = frame["host"].n_unique() > 1
    tables, heat, compare = _cells(frame, spec, details)
    return _env().get_template("report.html").render(
        spec=spec, generated_at=generated_at, count=frame.height, many_hosts=many,
        hosts=_hosts(frame), evaluated=_evaluated(frame), recs=recs, findings=_findings(frame, configs),
        heatmap=_heatmap(frame, heat), comparison=_comparison(frame, compare) if many else None,
        charts=drawn, vega_js=Markup(vega_js) if any(c.spec for c in drawn) or history else "", history=history,
        tables=tables, sizes=_size_table(frame),
        configs=_configs_table(configs), memory=_memory_table(configs),
        scores_doc=_doc_html(_scores_part(configs_module.__doc__ or "")),
        details=details, sample_limit=SAMPLE_LIMIT, labels=LABELS,
    )


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
    """Energy per token where a counter measured it (the idle draw beside it), else why not, per host."""
    found = []
    for host in hosts(frame):
        rows = frame.filter((pl.col("host") == host["id"]) & (pl.col("status") == "ok"))
        if "joules_per_token" in rows.columns and rows["joules_per_token"].drop_nulls().len():
            best = rows.filter(pl.col("joules_per_token").is_not_null()).sort("joules_per_token").row(0, named=True)
            idle = f", idle draw {best['idle_power_w']:.0f} W beside it" if best.get("idle_power_w") else ""
            found.append(f"Lowest energy per token on {host['id']}: {best['model']} {best['config']} "
                         f"({best['profile']}) at {best['joules_per_token']:.3g} J/token ({best['power_w']:.0f} W"
                         f"{idle}).")
        elif str(host.get("energy", "")).startswith("not available"):
            found.append(f"Energy per token on {host['id']}: {host['energy']}.")
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


# --- tables ----------------------------------------------------------------------------------
# Rows are built here as HTML strings, every value through `_esc`: rendering a 10,000-row report
# cell by cell through Jinja takes seconds. The templates hold the page around the rows.


def _td(text: Any, cls: str = "", title: str = "", sort: str = "", inner: str = "") -> str:
    """One cell; text, class and title escaped; `sort` is a number we formatted; `inner` is HTML
    already built from escaped parts."""
    attrs = f' class="{_esc(cls)}"' if cls else ""
    if title:
        attrs += f' title="{_esc(title)}"'
    if sort:
        attrs += f' data-sort="{sort}"'
    return f"<td{attrs}>{_esc(text)}{inner}</td>"


@lru_cache(maxsize=4096)
def _esc(text: Any) -> str:
    """stdlib escaping (quotes too, so values are safe in attributes): 3x faster than markupsafe here,
    and cached, since the same model names, quants and meanings repeat on thousands of rows."""
    return stdlib_html.escape(str(text))


def _rating_td(label: str | None, status: str | None, title: str) -> str:
    if label:
        return _td(label, f"rating rating-{label}", title)
    return (_td(status or "", f"rating status-{status}", title) if status != "ok"
            else _td("not rated", "rating rating-none"))


NOT_RUN = '<td class="rating rating-none">not run</td>'


def _metric_td(metric: str, value: Any, headline: bool, text: str | None = None) -> str:
    """A figure with its meaning: visible under headline (rated) figures, as a tooltip elsewhere.
    The sort key is only spelled out where the meaning's text follows the number in the cell.
    `text` is the figure already formatted (see `_texts`), else it is formatted here."""
    meaning = interpret(metric, value)
    text = _fmt(value) if text is None else text
    if headline and meaning:
        return _td(text, "num", sort=_sort(value), inner=f'<small class="meaning">{_esc(meaning)}</small>')
    return _td(text, "num", meaning)


def _texts(rows: pl.DataFrame, metrics: list[str]) -> list[tuple]:
    """`_fmt` for whole columns at once (3 significant digits below 100, whole numbers above):
    formatting 70,000 figures one by one is a visible part of a large report's time. A figure
    with no plain-language meaning comes as its whole table cell (see `_metric_td`), also
    built by polars; a number needs no escaping."""
    def shown(col: pl.Expr) -> pl.Expr:
        digits = pl.when(col.abs() < 100).then(col.round_sig_figs(3)).otherwise(col.round(0))
        return pl.when(col.is_finite()).then(digits).otherwise(col).cast(pl.String).str.strip_suffix(".0")

    def text(name: str) -> pl.Expr:
        figure = shown(pl.col(name))
        low, high = bound_names(name)
        if low in rows.columns and high in rows.columns:  # the 95 % interval next to the figure
            spread = pl.concat_str(pl.lit(" ("), shown(pl.col(low)), pl.lit("–"), shown(pl.col(high)), pl.lit(")"))
            figure = pl.concat_str(figure, spread.fill_null(""))
        figure = figure.fill_null("")
        return (figure if name in METRIC_TRANSLATION
                else pl.concat_str(pl.lit('<td class="num">'), figure, pl.lit("</td>")))
    return rows.select(text(m).alias(str(i)) for i, m in enumerate(metrics)).rows() if metrics else [()] * rows.height


def _sort(value: Any) -> str:
    return repr(float(value)) if isinstance(value, (int, float)) and math.isfinite(value) else ""


def _fmt(value: Any, fmt: str | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if fmt:
        return fmt.format(value)
    return figure(value)


def _profiles(frame: pl.DataFrame) -> list[str]:
    present = set(frame["profile"].unique()) if frame.height else set()
    return [p for p in ORDER if p in present] + sorted(present - set(ORDER))


def _cells(frame: pl.DataFrame, spec: Spec, details: Details) -> tuple[list[dict], dict, dict]:
    """One pass over every result: the per-profile tables, heat-map cells and comparison figures.

    Rows come rated (frame.for_spec): the label colours the cell, the checks behind it are its tooltip.
    """
    many = frame["host"].n_unique() > 1
    tables, heat, compare = [], {}, {}
    for profile in _profiles(frame):
        rows = frame.filter(pl.col("profile") == profile)
        rules = {r.metric: r for r in (PROFILES[profile].rules if profile in PROFILES else ())}
        recorded = [m for m in metric_columns(rows) if not PER_SIZE.search(m)]
        shown = [m for m in rules if m in recorded] + sorted(set(recorded) - set(rules))
        headline = _headline(profile)
        needed = ["host", "model", "config", "profile", "status", "reason", "flags", "rating", "rating_summary",
                  *dict.fromkeys(c for c in (*shown, *rules, headline) if c in rows.columns)]
        body = []
        for row, texts in zip(rows.select(needed).iter_rows(named=True), _texts(rows, shown)):
            label = row["rating"]
            title = row["rating_summary"] if label else ": ".join(p for p in (row["status"], row["reason"]) if p)
            rating_td = _rating_td(label, row["status"], title)
            key = (row["host"], row["model"], row["config"], profile)
            heat[key] = rating_td
            compare.setdefault(key[1:], {})[row["host"]] = (
                _metric_td(headline, row.get(headline) if row["status"] == "ok" else None, False), rating_td)
            body.append(_profile_row(row, texts, shown, rules, label, rating_td, details, key, many))
        tables.append({"profile": profile, "many_hosts": many, "body": _body(body),
                       "heads": [{"metric": m, "rated": m in rules,
                                  "threshold": _threshold(rules.get(m), getattr(spec.thresholds, profile, None))}
                                 for m in shown]})
    return tables, heat, compare


def _headline(profile: str) -> str:
    """The profile's first headline metric (its KIND), or "" for a profile no longer registered."""
    return next(iter(PROFILES[profile].headlines), "") if profile in PROFILES else ""


def _profile_row(row: dict, texts: tuple, shown: list[str], rules: dict, label: str | None, rating_td: str,
                 details: Details, key: tuple, many: bool) -> str:
    notes = "".join(f'<div class="{cls}">{_esc(text)}</div>' for cls, text in
                    (("reason", row["reason"]), ("flags", "; ".join(row["flags"] or ()))) if text)
    anchor = details.anchors.get(key)
    link = (f'<td><a href="#{_esc(anchor)}">samples</a></td>' if anchor else
            f'<td><code class="path">{_esc(details.paths.get(key, ""))}</code></td>')
    return "".join((
        f'<tr data-rating="{_esc(label or row["status"] or "")}">', _td(row["host"]) if many else "",
        _td(row["model"]), _td(row["config"]), _td(row["status"] or "", f"status-{row['status']}", inner=notes),
        *(_metric_td(m, row[m], m in rules, t) if m in METRIC_TRANSLATION else t for m, t in zip(shown, texts)),
        rating_td, link, "</tr>"))


def _body(rows: list[str]) -> Markup:
    """A table body: every row when there are few; else the first PAGE_ROWS rows, a last row saying
    how many more there are, and the rest as a deflate-compressed, base64 JSON list of the same row
    HTML in a script element, which report.js unpacks and pages through (sorting and filtering all
    rows). 160,000 pre-rendered cells made an 18 MB page that took seconds to open; compressed,
    the rows of 10,000 results weigh about a tenth. (A <script> is allowed inside <tbody>.)"""
    if len(rows) <= PAGE_ROWS:
        return Markup("\n".join(rows))
    packed = pack(json.dumps(rows[PAGE_ROWS:], ensure_ascii=False))
    more = (f'<tr class="more"><td colspan="99">{len(rows) - PAGE_ROWS:,} more rows: the page shows them with '
            f'JavaScript; results.csv beside this page holds them all.</td></tr>')
    return Markup("\n".join((*rows[:PAGE_ROWS], more, f'<script type="{ROWS_TYPE}" data-count="{len(rows)}">'
                             f"{packed}</script>")))


def _threshold(rule: Any, limits: Any) -> str:
    value = getattr(limits, rule.threshold, None) if rule else None
    return "" if value is None else f"{'≥' if rule.direction == 'min' else '≤'} {value:g}"


def _heatmap(frame: pl.DataFrame, heat: dict) -> dict[str, Any]:
    """Rows model x quant, a column per (host, profile), each cell the rating with its checks as tooltip."""
    host_ids = sorted(frame["host"].unique().to_list()) if frame.height else []
    profiles = _profiles(frame)
    configs = dict.fromkeys(zip(frame["model"], frame["config"])) if frame.height else {}
    rows = ["".join((f"<tr>{_td(m)}{_td(q)}", *(heat.get((h, m, q, p), NOT_RUN) for h in host_ids for p in profiles),
                     "</tr>")) for m, q in configs]
    return {"hosts": host_ids, "profiles": profiles, "body": _body(rows)}


def _comparison(frame: pl.DataFrame, compare: dict) -> dict[str, Any]:
    """Rows model/quant/profile; per host the profile's headline figure and its rating."""
    host_ids = sorted(frame["host"].unique().to_list())
    rows = []
    for (model, quant, profile), by_host in compare.items():
        metric = _headline(profile)
        cells = ("".join(by_host[h]) if h in by_host else f"<td></td>{NOT_RUN}" for h in host_ids)
        rows.append("".join((f"<tr>{_td(model)}{_td(quant)}{_td(profile)}{_td(metric)}", *cells, "</tr>")))
    return {"hosts": host_ids, "body": _body(rows)}


def _size_table(frame: pl.DataFrame) -> dict[str, Any] | None:
    """Long-context load time per prompt size, one column per size, from the `load_s_<n>` metrics."""
    sizes = sorted(int(m.group(1)) for c in frame.columns if c.startswith("load_s_") and (m := PER_SIZE.search(c)))
    rows = frame.filter((pl.col("profile") == "long_context") & (pl.col("status") == "ok")) if sizes else frame.clear()
    if not rows.height:
        return None
    many = rows["host"].n_unique() > 1
    body = ["".join((f"<tr>{_td(r['host']) if many else ''}{_td(r['model'])}{_td(r['config'])}",
                     *(_metric_td("target_load_s", r[f"load_s_{s}"], False) if r[f"load_s_{s}"] is not None
                       else _td("not attempted", "num") for s in sizes), "</tr>"))
            for r in rows.select("host", "model", "config", *(f"load_s_{s}" for s in sizes)).iter_rows(named=True)]
    return {"sizes": sizes, "many_hosts": many, "body": _body(body)}


def _configs_table(configs: pl.DataFrame) -> dict[str, Any]:
    columns = [(c, head, fmt) for c, head, fmt in CONFIG_COLUMNS if c in configs.columns]
    profiles = [p for p in ORDER if f"{p}_status" in configs.columns
                and configs[f"{p}_status"].null_count() < configs.height]
    many = configs["host"].n_unique() > 1 if configs.height else False
    body = []
    for row in configs.iter_rows(named=True):
        ratings = [row[f"{p}_rating"] or row[f"{p}_status"] or "" for p in profiles]
        cells = [_td(_fmt(row[c], fmt), "num", interpret(CONFIG_MEANINGS.get(c, ""), row[c]), _sort(row[c]),
                     ROOFLINE_FLAG if c == "roofline_pct" and row.get("roofline_flag") else "")
                 for c, _, fmt in columns]
        body.append("".join((
            f'<tr data-rating="{_esc(" ".join(ratings))}">', _td(row["host"]) if many else "",
            _td(row["model"]), _td(row["config"]),
            *(_td(r, f"rating rating-{r}" if r in LABELS else f"rating status-{r}") for r in ratings),
            *cells, "</tr>")))
    return {"heads": [head for _, head, _ in columns], "profiles": profiles, "many_hosts": many,
            "body": _body(body), "count": configs.height}


MEMORY_COLUMNS = (("peak_server_gb", "{:.2f}"), ("estimated_memory_gb", "{:.2f}"), ("estimate_error_pct", "{:+.0f}%"),
                  ("predicted_peak_rss_gb", "{:.2f}"), ("prediction_error_pct", "{:+.0f}%"))


def _memory_table(configs: pl.DataFrame) -> dict[str, Any] | None:
    """Predicted vs measured memory per configuration that ran: how far the planner's skips can be trusted."""
    graded = configs.filter(pl.col("estimated_memory_gb").is_not_null() | pl.col("predicted_peak_rss_gb").is_not_null())
    if not graded.height:
        return None
    many = graded["host"].n_unique() > 1
    errors = [abs(v) for c in ("estimate_error_pct", "prediction_error_pct") for v in graded[c].drop_nulls()]
    body = ["".join((f"<tr>{_td(r['host']) if many else ''}{_td(r['model'])}{_td(r['config'])}",
                     *(_td(_fmt(r[c], fmt), "num", sort=_sort(r[c])) for c, fmt in MEMORY_COLUMNS), "</tr>"))
            for r in graded.iter_rows(named=True)]
    return {"many_hosts": many, "body": _body(body), "count": graded.height,
            "worst": max(errors) if errors else None}


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
