"""report.html's tables: rows built as escaped HTML strings, and the bodies that page them.

Rows are built here as HTML strings, every value through `esc`: rendering a 10,000-row report
cell by cell through Jinja takes seconds. html.py assembles the page around them. A table of
more than PAGE_ROWS rows carries its first page and the rest packed (`paged`, `pack`), which
report.js unpacks and pages through.
"""

from __future__ import annotations

import base64
import html as stdlib_html
import json
import math
import re
import zlib
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from itertools import repeat
from typing import Any

import polars as pl
from markupsafe import Markup

from llmspec.profiles import ORDER, PROFILES, role_name
from llmspec.rating import LABELS, METRIC_TRANSLATION, interpret, interpret_expr
from llmspec.report.details import Details
from llmspec.report.frame import filled, metric_columns
from llmspec.report.memo import NO_MEMO, Key, Memo
from llmspec.results import bound_names
from llmspec.spec import Spec
from llmspec.text import figure

PAGE_ROWS = 100  # rows a table shows at once; larger tables page (see `paged`)
ROWS_TYPE = "application/x-llmspec-rows"  # the packed rows' script type, which report.js looks for
PER_SIZE = re.compile(r"_(\d+)$")  # long_context's per-size metrics: a table of their own
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


def pack(text: str) -> str:
    """deflate + base64: what report.js's `unpack` reads back (DecompressionStream), about a tenth of
    the text for rows and chart data, and only [A-Za-z0-9+/=], safe inside any script element."""
    return base64.b64encode(zlib.compress(text.encode(), 6)).decode()


def _td(text: Any, cls: str = "", title: str = "", sort: str = "", inner: str = "") -> str:
    """One cell; text, class and title escaped; `sort` is a number we formatted; `inner` is HTML
    already built from escaped parts."""
    attrs = f' class="{esc(cls)}"' if cls else ""
    if title:
        attrs += f' title="{esc(title)}"'
    if sort:
        attrs += f' data-sort="{sort}"'
    return f"<td{attrs}>{esc(text)}{inner}</td>"


@lru_cache(maxsize=4096)
def esc(text: Any) -> str:
    """stdlib escaping (quotes too, so values are safe in attributes): 3x faster than markupsafe here,
    and cached, since the same model names, quants and meanings repeat on thousands of rows."""
    return stdlib_html.escape(str(text))


NOT_RUN = '<td class="rating rating-none">not run</td>'


def _metric_td(metric: str, value: Any, headline: bool, text: str | None = None) -> str:
    """A figure with its meaning: visible under headline (rated) figures, as a tooltip elsewhere.
    The sort key is only spelled out where the meaning's text follows the number in the cell.
    `text` is the figure already formatted (see `_texts`), else it is formatted here."""
    meaning = interpret(metric, value)
    text = _fmt(value) if text is None else text
    if headline and meaning:
        return _td(text, "num", sort=_sort(value), inner=f'<small class="meaning">{esc(meaning)}</small>')
    return _td(text, "num", meaning)


def _texts(rows: pl.DataFrame, metrics: list[str]) -> list[pl.Expr]:
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
    return [text(m) for m in metrics]


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


UNSHOWN = ("spec", "quant", "variant", "started_at", "duration_s", "model_size_bytes", "server_version",
           "host_info", "items", "model_sha256", "order", "rating_checks")  # what a profile table does not show


def profile_tables(frame: pl.DataFrame, spec: Spec, details: Details, memo: Memo = NO_MEMO) -> tuple[list[dict], dict]:
    """The per-profile tables and the heat map's cells ({(host, model, config, profile): rating td}).

    Rows come rated (frame.for_spec): the label colours the cell, the checks behind it are its tooltip.
    Each table's rows are built as polars string expressions over whole columns (`_row_html`):
    14,700 rows one by one in Python took half a second of a fleet report. A profile whose rows
    did not change since the last report reads them back from `memo`.
    """
    many = frame["host"].n_unique() > 1
    tables, heat = [], {}
    for profile in _profiles(frame):
        rows = frame.filter(pl.col("profile") == profile)
        keys = list(zip(rows["host"], rows["model"], rows["config"], repeat(profile)))
        shown_rows = filled(rows.drop(UNSHOWN)).with_columns(_links(keys, details).alias("_link"))
        key = memo.key(shown_rows, f"many hosts: {many}")
        built = memo.get(f"table-{profile}", key, lambda rows=shown_rows, profile=profile: _built(rows, profile, many))
        heat.update(zip(keys, built["_rating"]))
        body = Later(_PACKER.submit(_kept_body, memo, profile, key, built))
        rules = _rules(profile)
        tables.append({"profile": profile, "many_hosts": many, "body": body,
                       "heads": [{"metric": m, "rated": m in rules,
                                  "threshold": _threshold(rules.get(m), getattr(spec.thresholds, profile, None))}
                                 for m in _shown(rows, rules)]})
    return tables, heat


def _rules(profile: str) -> dict:
    return {r.metric: r for r in (PROFILES[profile].rules if profile in PROFILES else ())}


def _shown(rows: pl.DataFrame, rules: dict) -> list[str]:
    """The metric columns a profile table shows: its rated ones first, in rule order, then the rest."""
    recorded = [m for m in metric_columns(rows) if not PER_SIZE.search(m) and m != "_link"]
    return [m for m in rules if m in recorded] + sorted(set(recorded) - set(rules))


def _built(rows: pl.DataFrame, profile: str, many: bool) -> pl.DataFrame:
    """`_rating` (the rating cell, for the heat map too) and `_row` (the row's HTML) of each row."""
    rules = _rules(profile)
    shown = _shown(rows, rules)
    parts = rows.with_columns(_rating_html().alias("_rating"), *_figure_parts(rows, shown))
    return parts.select("_rating", _row_html(parts, shown, rules, many).alias("_row"))


def _links(keys: list[tuple], details: Details) -> pl.Expr:
    """Each row's last cell: a link to its excerpt under "Raw samples", else its result file's path."""
    anchor = pl.lit(pl.Series([details.anchors.get(key) for key in keys], dtype=pl.String))
    path = pl.lit(pl.Series([details.paths.get(key, "") for key in keys], dtype=pl.String))
    return (pl.when(anchor.fill_null("") != "")
            .then(pl.concat_str(pl.lit('<td><a href="#'), _esc(anchor), pl.lit('">samples</a></td>')))
            .otherwise(pl.concat_str(pl.lit('<td><code class="path">'), _esc(path), pl.lit("</code></td>"))))


def _esc(text: pl.Expr) -> pl.Expr:
    """`esc` for a column (html.escape with quotes: one pass, so no `&` is escaped twice)."""
    return text.str.replace_many(["&", "<", ">", '"', "'"], ["&amp;", "&lt;", "&gt;", "&quot;", "&#x27;"])


def _attr(name: str, value: pl.Expr) -> pl.Expr:
    """` name="value"` escaped, or nothing where the value is null or empty (as `_td` leaves it out)."""
    return (pl.when(value.fill_null("") != "").then(pl.concat_str(pl.lit(f' {name}="'), _esc(value), pl.lit('"')))
            .otherwise(pl.lit("")))


def _cell(text: pl.Expr, *attrs: pl.Expr, inner: pl.Expr | None = None, number: bool = False) -> pl.Expr:
    """`_td` for a column: attributes from `_attr`, the text escaped (not a `number`, which has
    nothing to escape), `inner` HTML already built."""
    return pl.concat_str(pl.lit("<td"), *attrs, pl.lit(">"), text if number else _esc(text),
                         *([inner] if inner is not None else []), pl.lit("</td>"))


def _rating_html() -> pl.Expr:
    """The rating cell of every row: the label with its checks as tooltip; else the status with its
    reason; else "not rated"."""
    label, status, reason = pl.col("rating").fill_null(""), pl.col("status"), pl.col("reason")
    why = pl.concat_str(pl.when(status != "").then(status), pl.when(reason != "").then(reason), separator=": ",
                        ignore_nulls=True)
    return (pl.when(label != "").then(_cell(label, _attr("class", pl.concat_str(pl.lit("rating rating-"), label)),
                                            _attr("title", pl.col("rating_summary"))))
            .when(status.fill_null("") != "ok").then(_cell(
                status.fill_null(""), _attr("class", pl.concat_str(pl.lit("rating status-"), status.fill_null("None"))),
                _attr("title", why)))
            .otherwise(pl.lit('<td class="rating rating-none">not rated</td>')))


def _figure_parts(rows: pl.DataFrame, shown: list[str]) -> list[pl.Expr]:
    """Columns `_text<i>` (the figure as `_texts` spells it) and `_meaning<i>` (its reading, where
    the metric has one) that `_row_html` assembles: computed once though a headline cell uses each twice."""
    parts = []
    for i, (metric, text) in enumerate(zip(shown, _texts(rows, shown))):
        parts.append(text.alias(f"_text{i}"))
        meaning = interpret_expr(metric, pl.col(metric).cast(pl.Float64)) if rows.schema[metric].is_numeric() else None
        if meaning is not None:
            parts.append(meaning.alias(f"_meaning{i}"))
    return parts


def _row_html(parts: pl.DataFrame, shown: list[str], rules: dict, many: bool) -> pl.Expr:
    """`<tr>` of a profile table: host (of several), model, quant, status with reason and flags, the
    figures (`_figure_parts`), the rating (`_rating`) and the link (`_link`)."""
    status, label = pl.col("status"), pl.col("rating").fill_null("")
    notes = [pl.when(text.fill_null("") != "").then(pl.concat_str(pl.lit(f'<div class="{cls}">'), _esc(text),
                                                                   pl.lit("</div>"))).otherwise(pl.lit(""))
             for cls, text in (("reason", pl.col("reason")), ("flags", pl.col("flags").list.join("; ")))]
    rating = pl.when(label != "").then(label).otherwise(status.fill_null(""))
    return pl.concat_str(
        pl.lit('<tr data-rating="'), _esc(rating), pl.lit('">'), *([_cell(pl.col("host"))] if many else []),
        _cell(pl.col("model")), _cell(pl.col("config")),
        _cell(status.fill_null(""), _attr("class", pl.concat_str(pl.lit("status-"), status.fill_null("None"))),
              inner=pl.concat_str(notes)),
        *(_figure_html(parts, i, m, m in rules) for i, m in enumerate(shown)),
        pl.col("_rating"), pl.col("_link"), pl.lit("</tr>"))


def _figure_html(parts: pl.DataFrame, i: int, metric: str, headline: bool) -> pl.Expr:
    """`_metric_td` for a column: the figure with its meaning, visible under a rated figure (and its
    sort key then), else as the tooltip; a figure without a meaning is its whole cell already."""
    text = pl.col(f"_text{i}")
    if f"_meaning{i}" not in parts.columns:
        return text
    meaning = pl.col(f"_meaning{i}")
    if headline:
        with_meaning = _cell(text, pl.lit(' class="num" data-sort="'), _sort_keys(parts, metric), pl.lit('"'),
                             inner=pl.concat_str(pl.lit('<small class="meaning">'), _esc(meaning), pl.lit("</small>")),
                             number=True)
        return (pl.when(meaning.is_not_null()).then(with_meaning)
                .otherwise(_cell(text, pl.lit(' class="num"'), number=True)))
    return _cell(text, pl.lit(' class="num"'), _attr("title", meaning), number=True)


def _sort_keys(rows: pl.DataFrame, metric: str) -> pl.Expr:
    """`_sort` (Python's repr of the float) for a column. polars spells a float as Python does from
    1e-4 up to 1e16 and for 0; outside it Python writes an exponent its own way, so a column with
    such a figure goes through repr."""
    value = pl.col(metric).cast(pl.Float64)
    odd = value.is_finite() & (value != 0) & ((value.abs() < 1e-4) | (value.abs() >= 1e16))
    if rows.select(odd.any()).item():
        return value.map_elements(repr, return_dtype=pl.String, skip_nulls=True)
    return value.cast(pl.String)


def _headline(profile: str) -> str:
    """The profile's first headline metric (its KIND), or "" for a profile no longer registered."""
    return next(iter(PROFILES[profile].headlines), "") if profile in PROFILES else ""


def paged(rows: list[str]) -> Markup | Later:
    """A table body: every row when there are few; else `paged_text`, made on the packing thread:
    zlib lets go of the GIL, so at 420 hosts its 0.1 s of deflating overlaps building the next table."""
    if len(rows) <= PAGE_ROWS:
        return Markup("\n".join(rows))
    return Later(_PACKER.submit(paged_text, rows))


def paged_text(rows: list[str]) -> str:
    """Every row when there are few; else the first PAGE_ROWS rows, a last row saying how many more
    there are, and the rest as a deflate-compressed, base64 JSON list of the same row HTML in a
    script element, which report.js unpacks and pages through (sorting and filtering all rows).
    160,000 pre-rendered cells made an 18 MB page that took seconds to open; compressed, the rows
    of 10,000 results weigh about a tenth. (A <script> is allowed inside <tbody>.)"""
    if len(rows) <= PAGE_ROWS:
        return "\n".join(rows)
    more = (f'<tr class="more"><td colspan="99">{len(rows) - PAGE_ROWS:,} more rows: the page shows them with '
            f'JavaScript; results.csv beside this page holds them all.</td></tr>')
    packed = pack(json.dumps(rows[PAGE_ROWS:], ensure_ascii=False))
    script = f'<script type="{ROWS_TYPE}" data-count="{len(rows)}">{packed}</script>'
    return "\n".join((*rows[:PAGE_ROWS], more, script))


_PACKER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmspec-pack")


@dataclass(frozen=True)
class Later:
    """Markup made on the packing thread while the page goes on (`paged`, a profile table's body):
    the page takes it as markup (`__html__`), waiting for it only where it writes it."""

    text: Future  # of str

    def __html__(self) -> str:
        return self.text.result()

    __str__ = __html__


def _kept_body(memo: Memo, profile: str, key: Key, built: pl.DataFrame) -> str:
    """A profile table's `paged_text`, as `memo` keeps it (made from the same rows as its `built` rows)."""
    return memo.get(f"body-{profile}", key, lambda: pl.DataFrame({"html": [paged_text(built["_row"].to_list())]})
                    )["html"].item()


def _threshold(rule: Any, limits: Any) -> str:
    value = getattr(limits, rule.threshold, None) if rule else None
    return "" if value is None else f"{'≥' if rule.direction == 'min' else '≤'} {value:g}"


def heatmap(frame: pl.DataFrame, heat: dict) -> dict[str, Any]:
    """Rows model x quant, a column per (host, profile), each cell the rating with its checks as tooltip."""
    host_ids = sorted(frame["host"].unique().to_list()) if frame.height else []
    profiles = _profiles(frame)
    configs = dict.fromkeys(zip(frame["model"], frame["config"])) if frame.height else {}
    rows = ["".join((f"<tr>{_td(m)}{_td(q)}", *(heat.get((h, m, q, p), NOT_RUN) for h in host_ids for p in profiles),
                     "</tr>")) for m, q in configs]
    return {"hosts": host_ids, "profiles": profiles, "body": paged(rows), "long": False}


def fleet_heatmap(frame: pl.DataFrame, heat: dict) -> dict[str, Any]:
    """The heat map at fleet scale: a row per (host, model, quant), a column per profile. Hosts side
    by side would make a row of hosts x profiles cells (2,940 at 420 hosts); as rows they page,
    pack, sort and filter like the other large tables."""
    profiles = _profiles(frame)
    keys = dict.fromkeys(zip(frame["host"], frame["model"], frame["config"])) if frame.height else {}
    rows = ["".join((f"<tr>{_td(h)}{_td(m)}{_td(q)}", *(heat.get((h, m, q, p), NOT_RUN) for p in profiles), "</tr>"))
            for h, m, q in keys]
    return {"hosts": [], "profiles": profiles, "body": paged(rows), "long": True}


def host_spread(frame: pl.DataFrame) -> dict[str, Any]:
    """Host comparison at fleet scale: per model file and profile, how its headline figure spreads
    over the hosts that measured it (slowest, median, fastest, with the hosts' names), instead of a
    column pair per host. Each host's own figure, with its 95 % interval, is in the detailed results."""
    rows = []
    headlines = {p: m for p in _profiles(frame) if (m := _headline(p)) and m in frame.columns}
    # Only the columns it reads: filtering all 240 of 14,700 rows took most of its time.
    ok = frame.select("profile", "status", "model", "config", "host", *set(headlines.values()))
    ok = ok.filter(pl.col("status") == "ok") if frame.height else ok
    for profile, metric in headlines.items():
        got = ok.filter((pl.col("profile") == profile) & pl.col(metric).is_not_null() & pl.col(metric).is_not_nan())
        spread = got.sort(metric).group_by("model", "config", maintain_order=True).agg(
            pl.len().alias("n"), pl.col(metric).first().alias("low"), pl.col("host").first().alias("low_host"),
            pl.col(metric).median().alias("mid"), pl.col(metric).last().alias("high"),
            pl.col("host").last().alias("high_host"))
        for r in spread.sort("model", "config").iter_rows(named=True):
            rows.append("".join((
                f"<tr>{_td(r['model'])}{_td(r['config'])}{_td(profile)}{_td(metric)}",
                _td(r["n"], "num"), _metric_td(metric, r["low"], False), _td(r["low_host"]),
                _metric_td(metric, r["mid"], False), _metric_td(metric, r["high"], False), _td(r["high_host"]),
                "</tr>")))
    return {"hosts": [], "body": paged(rows), "spread": True}


def host_comparison(frame: pl.DataFrame, heat: dict) -> dict[str, Any]:
    """Rows model/quant/profile; per host the profile's headline figure and its rating (`heat`'s cell).
    Only for a few hosts (up to html.FLEET_WIDE), so row by row."""
    host_ids = sorted(frame["host"].unique().to_list())
    compare: dict[tuple, dict] = {}
    for profile in _profiles(frame):
        metric = _headline(profile)
        rows = frame.filter(pl.col("profile") == profile)
        values = rows[metric] if metric in rows.columns else repeat(None)
        for host, model, config, status, value in zip(rows["host"], rows["model"], rows["config"], rows["status"],
                                                      values):
            compare.setdefault((model, config, profile), {})[host] = (
                _metric_td(metric, value if status == "ok" else None, False), heat[(host, model, config, profile)])
    rows = []
    for (model, quant, profile), by_host in compare.items():
        metric = _headline(profile)
        cells = ("".join(by_host[h]) if h in by_host else f"<td></td>{NOT_RUN}" for h in host_ids)
        rows.append("".join((f"<tr>{_td(model)}{_td(quant)}{_td(profile)}{_td(metric)}", *cells, "</tr>")))
    return {"hosts": host_ids, "body": paged(rows), "spread": False}


def size_table(frame: pl.DataFrame) -> dict[str, Any] | None:
    """Long-context load time per prompt size, one column per size, from the `load_s_<n>` metrics."""
    sizes = sorted(int(m.group(1)) for c in frame.columns if c.startswith("load_s_") and (m := PER_SIZE.search(c)))
    rows = (frame.filter((pl.col("profile") == role_name("context_sizes")) & (pl.col("status") == "ok")) if sizes
            else frame.clear())
    if not rows.height:
        return None
    many = rows["host"].n_unique() > 1
    body = ["".join((f"<tr>{_td(r['host']) if many else ''}{_td(r['model'])}{_td(r['config'])}",
                     *(_metric_td("target_load_s", r[f"load_s_{s}"], False) if r[f"load_s_{s}"] is not None
                       else _td("not attempted", "num") for s in sizes), "</tr>"))
            for r in rows.select("host", "model", "config", *(f"load_s_{s}" for s in sizes)).iter_rows(named=True)]
    return {"sizes": sizes, "many_hosts": many, "body": paged(body)}


def configs_table(configs: pl.DataFrame) -> dict[str, Any]:
    """The configurations table: a row per configuration, its profiles' ratings, then its figures.
    Built over whole columns like the profile tables (2,100 rows at 420 hosts); the figures are
    formatted by Python's own format specs (`CONFIG_COLUMNS`), one column at a time."""
    columns = [(c, head, fmt) for c, head, fmt in CONFIG_COLUMNS if c in configs.columns]
    profiles = [p for p in ORDER if f"{p}_status" in configs.columns
                and configs[f"{p}_status"].null_count() < configs.height]
    many = configs["host"].n_unique() > 1 if configs.height else False
    ratings = [pl.when(pl.col(f"{p}_rating") != "").then(pl.col(f"{p}_rating")).when(pl.col(f"{p}_status") != "")
               .then(pl.col(f"{p}_status")).otherwise(pl.lit("")) for p in profiles]
    row = pl.concat_str(
        pl.lit('<tr data-rating="'), _esc(pl.concat_str(ratings, separator=" ") if ratings else pl.lit("")),
        pl.lit('">'), *([_cell(pl.col("host"))] if many else []), _cell(pl.col("model")), _cell(pl.col("config")),
        *(_cell(r, _attr("class", pl.when(r.is_in(list(LABELS))).then(pl.lit("rating rating-") + r)
                         .otherwise(pl.lit("rating status-") + r))) for r in ratings),
        *(_config_cell(configs, c, _formatted(configs, c, fmt)) for c, _, fmt in columns), pl.lit("</tr>"))
    body = configs.select(row.alias("row"))["row"].to_list() if configs.height else []
    return {"heads": [head for _, head, _ in columns], "profiles": profiles, "many_hosts": many,
            "body": paged(body), "count": configs.height}


def _config_cell(configs: pl.DataFrame, column: str, text: pl.Expr) -> pl.Expr:
    """A figure of the configurations table with its meaning as tooltip and its sort key; the
    bandwidth share carries a flag where it is far below the bound."""
    value = pl.col(column).cast(pl.Float64)
    meaning = interpret_expr(CONFIG_MEANINGS.get(column, ""), value)
    flag = (pl.when(pl.col("roofline_flag").fill_null(False)).then(pl.lit(ROOFLINE_FLAG)).otherwise(pl.lit(""))
            if column == "roofline_pct" and "roofline_flag" in configs.columns else None)
    return _cell(text, pl.lit(' class="num"'), *([_attr("title", meaning)] if meaning is not None else []),
                 _sort_attr(configs, column), inner=flag)


def _formatted(rows: pl.DataFrame, column: str, fmt: str) -> pl.Expr:
    """A column's figures through a Python format spec (`_fmt`): polars has no `{:,.0f}` or `{:+.1f}`,
    and rounding its own way would change a figure's last digit. Empty for null and NaN (`v != v`), as `_fmt`."""
    return pl.lit(pl.Series([fmt.format(v) if v is not None and v == v else "" for v in rows[column].to_list()],
                            dtype=pl.String))


def _sort_attr(rows: pl.DataFrame, column: str) -> pl.Expr:
    """` data-sort="..."` (`_sort`) for a column's finite figures, nothing for the others."""
    return _attr("data-sort", pl.when(pl.col(column).cast(pl.Float64).is_finite()).then(_sort_keys(rows, column)))


MEMORY_COLUMNS = (("peak_server_gb", "{:.2f}"), ("estimated_memory_gb", "{:.2f}"), ("estimate_error_pct", "{:+.0f}%"),
                  ("predicted_peak_rss_gb", "{:.2f}"), ("prediction_error_pct", "{:+.0f}%"),
                  ("decode_measured_tps", "{:.1f}"), ("predicted_tokens_per_s", "{:.1f}"),
                  ("speed_error_pct", "{:+.0f}%"), ("prompt_measured_tps", "{:.0f}"),
                  ("predicted_prompt_tokens_per_s", "{:.0f}"), ("prompt_error_pct", "{:+.0f}%"))


def memory_table(configs: pl.DataFrame, suggested: Mapping[tuple[str, str], Any] | None = None,
                 anchors: Mapping[tuple[str, str, str, str], str] | None = None, spec_name: str = "") -> dict | None:
    """Predicted vs measured memory per configuration that ran: how far the planner's skips can be trusted.
    `suggested` (report.suggested): the spec's catalogue models; each row of one links to its measured
    result (`anchors`: `Details.anchors`, else the profile's table), and one not measured yet gets a row
    with the suggestion's figures and the command that measures it."""
    suggested, anchors = suggested or {}, anchors or {}
    from_catalogue = pl.Series([key in suggested for key in zip(configs["model"], configs["quant"])], dtype=pl.Boolean)
    graded = configs.filter(pl.col("estimated_memory_gb").is_not_null() | pl.col("predicted_peak_rss_gb").is_not_null()
                            | pl.col("predicted_tokens_per_s").is_not_null() | from_catalogue)
    measured = set(zip(configs["model"], configs["quant"]))
    waiting = [s for key, s in suggested.items() if key not in measured]
    if not graded.height and not waiting:
        return None
    many = graded["host"].n_unique() > 1
    errors = [abs(v) for c in ("estimate_error_pct", "prediction_error_pct") for v in graded[c].drop_nulls()]
    body = _graded_rows(graded, many, suggested, anchors)
    for s in waiting:  # a suggested candidate without a result: what was promised, and how to measure it
        promised = {"estimated_memory_gb": s.memory_gb, "predicted_tokens_per_s": s.decode_tps,
                    "predicted_prompt_tokens_per_s": s.prompt_tps}
        body.append("".join((f"<tr>{_td('') if many else ''}{_td(s.model)}{_td(s.quant)}",
                             *(_td(_fmt(promised.get(c), fmt), "num", sort=_sort(promised.get(c)))
                               for c, fmt in MEMORY_COLUMNS),
                             _td(f"{s.entry} (catalogue): not measured yet: ", "suggestion",
                                 inner=f"<code>doit spec={esc(spec_name)}</code>"), "</tr>")))
    speed = [abs(v) for c in ("speed_error_pct", "prompt_error_pct") for v in graded[c].drop_nulls()]
    return {"many_hosts": many, "body": paged(body), "count": len(body), "suggested": bool(suggested),
            "worst": max(errors) if errors else None, "worst_speed": max(speed) if speed else None}


def _graded_rows(graded: pl.DataFrame, many: bool, suggested: Mapping, anchors: Mapping) -> list[str]:
    """The predicted-vs-measured rows of configurations that ran, over whole columns (2,100 rows at
    420 hosts); a catalogue configuration's link (`_suggestion_cell`) row by row, as only those have one."""
    if not graded.height:
        return []
    statuses = [f"{p}_status" for p in ORDER if f"{p}_status" in graded.columns]
    links = ([_suggestion_cell(r, suggested, anchors)
              for r in graded.select("host", "model", "quant", "config", *statuses).iter_rows(named=True)]
             if suggested else [""] * graded.height)
    figures = (_cell(_formatted(graded, c, fmt), pl.lit(' class="num"'), _sort_attr(graded, c))
               for c, fmt in MEMORY_COLUMNS)
    row = pl.concat_str(pl.lit("<tr>"), *([_cell(pl.col("host"))] if many else []), _cell(pl.col("model")),
                        _cell(pl.col("config")), *figures, pl.lit(pl.Series(links, dtype=pl.String)), pl.lit("</tr>"))
    return graded.select(row.alias("row"))["row"].to_list()


def _suggestion_cell(row: dict[str, Any], suggested: Mapping, anchors: Mapping) -> str:
    """A catalogue configuration's link to its measured result: the excerpt of its first profile's
    cell where the report shows one, else that profile's table."""
    found = suggested.get((row["model"], row["quant"]))
    if found is None:
        return _td("-")
    ran = [p for p in ORDER if row.get(f"{p}_status") is not None]
    profile = next((p for p in ran if row[f"{p}_status"] == "ok"), ran[0] if ran else None)
    if profile is None:
        return _td(f"{found.entry} (catalogue)")
    anchor = anchors.get((row["host"], row["model"], row["config"], profile)) or f"profile-{profile}"
    state = "measured" if row[f"{profile}_status"] == "ok" else row[f"{profile}_status"]
    return _td(f"{found.entry} (catalogue): ", "suggestion",
               inner=f'<a href="#{esc(anchor)}">{esc(state)} ({esc(profile)} result)</a>')
