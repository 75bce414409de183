"""The report's charts as Vega-Lite specifications: plain dicts with their data inline.

Vega-Lite (drawn in the page by the bundled vega-embed, see vega.py) rather than hand-made SVG:
axes, scales, legends and tooltips come for free and look the same in every chart. A chart
with nothing to draw carries instead one sentence saying which profile to run to get it.
When results come from several hosts, colour tells the hosts apart and the shape of a mark
the configurations, so the hosts' figures can be compared at a glance.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl
from markupsafe import Markup

from llmspec.capacity import level_key
from llmspec.models.quants import BITS_PER_WEIGHT
from llmspec.profiles import role_name
from llmspec.rating import interpret
from llmspec.report.details import Details
from llmspec.report.memo import NO_MEMO, Memo
from llmspec.results import bound_names
from llmspec.spec import Spec

# The profiles whose figures the charts below draw, by what they hold (`llmspec.profiles.ROLES`).
QUIZ, REFERENCE_LOGITS = role_name("quiz"), role_name("reference_logits")
LEVELS, SIZES = role_name("user_levels"), role_name("context_sizes")
TURNS, CATEGORIES = role_name("turns"), role_name("categories")
WIDTH, HEIGHT = "container", 260
LOAD_COLUMN = re.compile(r"load_s_(\d+)$")
LEVEL_FIELDS = ("output_tokens_per_s", "p90_ttft_s", "tokens_per_s_per_user")  # a load level's figures drawn
# The configs table's columns the per-configuration charts read (a column the table lacks reads as None).
CONFIG_FIELDS = ("host", "model", "quant", "variant", "model_size_gb", "tokens_per_s", *bound_names("tokens_per_s"),
                 "peak_memory_gb", "quality_pct", "quality_degradation_pts", "quality_reference_quant", "kld_mean",
                 "same_top_pct", "ppl_ratio")


@dataclass(frozen=True)
class Chart:
    key: str  # HTML id suffix
    title: str
    spec: dict[str, Any] | None  # None: no data (`missing` says what to run), or drawn already (`script`)
    missing: str = ""
    script: str = ""  # the spec's script element (html.chart_script), when the chart comes from the memo


MISSING = {
    "speed": "No interactive results yet: run the interactive profile (`doit`; it runs by default).",
    "memory": "No memory measurements yet: run any profile on a managed llama-server with `doit`.",
    QUIZ: "No quality results yet: add [profiles.quality] to the spec and run `doit`.",
    REFERENCE_LOGITS: "No divergence results yet: add [profiles.divergence] to the spec and run `doit`.",
    "same-top": "No divergence results yet: add [profiles.divergence] to the spec and run `doit`.",
    "capacity": "No load levels yet: add [profiles.load] (concurrent = \"sweep\" or a list) and run `doit`.",
    "context": "No long-context results yet: add [profiles.long_context] to the spec and run `doit`.",
    TURNS: "No session results yet: add [profiles.session] to the spec and run `doit`.",
    "categories": "No tool-call results yet: add [profiles.tool_calls] to the spec and run `doit`.",
    "stress-speed": "No stress results yet: add [profiles.stress] to the spec and run `doit`.",
    "stress-temperature": "No temperature readings: add [profiles.stress] to the spec and run `doit` on a machine "
                          "whose CPU temperature sensors are readable.",
}


def charts(frame: pl.DataFrame, configs: pl.DataFrame, details: Details, spec: Spec | None = None,
           memo: Memo = NO_MEMO, script: Callable[[dict, str], str] | None = None) -> list[Chart]:
    """Every chart of the report, in page order: per-configuration figures from `configs`, the
    per-size load times from the cells of `frame` (see `frame.for_spec`), the stress run from `details`.

    With `script` (html.chart_script), each chart comes drawn, and the charts of the configs table
    and of the load, long-context and categories results are kept in `memo` under the digest of
    exactly the columns they read: a threshold edit draws none of them again (0.1 s at 420 hosts).
    """
    ok = frame.filter(pl.col("status") == "ok")
    many = frame["host"].n_unique() > 1
    stress = list(details.stress)
    limit = getattr(spec.thresholds, LEVELS).max_p90_ttft_s if spec is not None else None
    drawn = _Drawn(memo, script, many)
    return [
        *drawn("configs", configs.select(c for c in CONFIG_FIELDS if c in configs.columns), "",
               lambda table: _config_charts(table, many)),
        *drawn("capacity", _level_rows(ok), f"service level: p90 TTFT {limit}", lambda rows: [_chart(
            "capacity", "Throughput vs time to first token per number of users", _capacity(rows, limit), many)]),
        *drawn("context", _sized_rows(ok), "", lambda rows: [_chart(
            "context", "Prompt load time vs context size", _context(rows), many)]),
        *drawn.each([_chart(TURNS, "Time to first token per turn as the session grows, with and without the "
                            "prompt cache", _turns(list(details.turns)), many)]),
        *drawn("categories", _category_rows(ok), "", lambda rows: [_chart(
            "categories", "Tool-call accuracy per category by quantization", _categories(rows), many)]),
        *drawn.each([
            _chart("stress-speed", "Generation speed during the stress run", _series(stress, "tokens_per_s"), many),
            _chart("stress-temperature", "CPU temperature during the stress run", _series(stress, "temperature_c"),
                   many),
            *([_chart("stress-gpu", "GPU power during the stress run", _series(stress, "gpu_power_w"), many)]
              if any(p["series"] == "gpu_power_w" for p in stress) else [])]),
    ]


def _config_charts(table: pl.DataFrame, many: bool) -> list[Chart]:
    """The per-configuration charts, from the configs table's CONFIG_FIELDS."""
    rows = table.to_dicts()  # once for the six charts: 2,100 rows at 420 hosts
    return [
        _chart("speed", "Generation speed vs model size", _speed(rows), many),
        _chart("memory", "Peak memory vs model size", _memory(rows), many),
        _chart(QUIZ, "Quality score by quantization", _quality(rows), many),
        _chart(REFERENCE_LOGITS, "KL divergence from the reference by quantization", _divergence(rows), many),
        _chart("same-top", "Same top token as the reference by quantization", _same_top(rows), many),
        *([_chart("settings", "Generation speed per server-setting variant", _variants(rows), many)]
          if table.height and (table["variant"] != "").any() else []),
    ]


class _Drawn:
    """`(name, inputs, settings, draw)`: the charts `draw(inputs)` makes, with their scripts, kept in
    the memo as `charts-<name>`; `each(charts)`: charts drawn each time (from what no frame holds)."""

    def __init__(self, memo: Memo, script: Callable[[dict, str], str] | None, many: bool) -> None:
        self.memo, self.script, self.many = memo, script, many

    def __call__(self, name: str, inputs: pl.DataFrame, settings: str,
                 draw: Callable[[pl.DataFrame], list[Chart]]) -> list[Chart]:
        if self.script is None:
            return draw(inputs)
        kept = self.memo.frame(f"charts-{name}", inputs, f"many hosts: {self.many}; {settings}",
                               lambda rows: _as_frame([self._scripted(c) for c in draw(rows)]))
        return [Chart(key, title, None, missing, Markup(script)) for key, title, missing, script in kept.iter_rows()]

    def each(self, drawn: list[Chart]) -> list[Chart]:
        return drawn if self.script is None else [self._scripted(c) for c in drawn]

    def _scripted(self, chart: Chart) -> Chart:
        if chart.spec is None:
            return chart
        return Chart(chart.key, chart.title, None, chart.missing, self.script(chart.spec, f"chart-data-{chart.key}"))


def _as_frame(drawn: list[Chart]) -> pl.DataFrame:
    return pl.DataFrame({"key": [c.key for c in drawn], "title": [c.title for c in drawn],
                         "missing": [c.missing for c in drawn], "script": [str(c.script) for c in drawn]},
                        schema={"key": pl.String, "title": pl.String, "missing": pl.String, "script": pl.String})


def _level_rows(ok: pl.DataFrame) -> pl.DataFrame:
    """What the capacity chart reads: the load results' configuration and level figures."""
    levels = [c for c in ok.columns if (found := level_key(c)) is not None and found[1] in LEVEL_FIELDS]
    return ok.filter(pl.col("profile") == LEVELS).select("host", "model", "quant", "config", *levels)


def _sized_rows(ok: pl.DataFrame) -> pl.DataFrame:
    """What the context chart reads: the long-context results' configuration and load times (every
    size a column exists for, as the axis marks them)."""
    return ok.filter(pl.col("profile") == SIZES).select("host", "model", "quant",
                                                        *(c for c in ok.columns if LOAD_COLUMN.match(c)))


def _category_rows(ok: pl.DataFrame) -> pl.DataFrame:
    """What the categories chart reads: the categories profile's results, their configuration and
    per-category accuracies with their intervals."""
    if CATEGORIES is None:
        return ok.select("host", "model", "quant", "config").clear()
    from llmspec.profiles import PROFILES

    stem = next(iter(PROFILES[CATEGORIES].headlines))
    columns = [c for c in ok.columns if c.startswith(f"{stem}_")]  # with the bounds (`<name>:low`)
    return ok.filter(pl.col("profile") == CATEGORIES).select("host", "model", "quant", "config", *columns)


def _chart(key: str, title: str, built: tuple[list[dict], dict] | None, many: bool) -> Chart:
    if built is None or not built[0]:
        return Chart(key, title, None, MISSING.get(key, ""))
    values, layout = built
    return Chart(key, title, {
        "width": WIDTH, "height": HEIGHT,  # the title is the figure's caption, shown without JavaScript too
        "data": {"values": [{k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}
                            for row in values]},  # NaN is not JSON; a missing figure is null
        **_colored(layout, many),
    })


def _colored(layout: dict[str, Any], many: bool) -> dict[str, Any]:
    """Colour by `by` (a configuration field), or by host with `by` as the shape when several hosts."""
    by = layout.pop("by")
    encoding = layout["encoding"] if "encoding" in layout else layout["layer"][0]["encoding"]
    if many:
        encoding["color"] = {"field": "host", "type": "nominal", "title": "Host"}
        encoding["shape"] = {"field": by[0], "type": "nominal", "title": by[1]}
        encoding["detail"] = [{"field": "host"}, {"field": by[0]}]
    else:
        encoding["color"] = {"field": by[0], "type": "nominal", "title": by[1]}
    return layout


def _point_layout(x: tuple[str, str], y: tuple[str, str], by: tuple[str, str], tooltip: list[dict], *,
                  line: bool = False, x_type: str = "quantitative", x_scale: dict | None = None) -> dict:
    x_enc: dict[str, Any] = {"field": x[0], "type": x_type, "title": x[1]}
    if x_scale:
        x_enc["scale"] = x_scale
    return {
        "mark": {"type": "line", "point": True, "tooltip": True} if line else
                {"type": "point", "filled": True, "size": 90, "tooltip": True},
        "encoding": {"x": x_enc, "y": {"field": y[0], "type": "quantitative", "title": y[1]}, "tooltip": tooltip},
        "by": by,
    }


def _tip(field: str, title: str, fmt: str | None = None) -> dict[str, Any]:
    tip: dict[str, Any] = {"field": field, "title": title}
    if fmt:
        tip.update(type="quantitative", format=fmt)
    return tip


CONFIG_TIPS = [_tip("host", "Host"), _tip("model", "Model"), _tip("quant", "Quant")]


def _speed(configs: list[dict[str, Any]]):
    return _versus_size(configs, "tokens_per_s", "tokens_per_s", "tokens_per_s", ("Tokens/s", ".1f"),
                        "Generation speed (tokens/s)")


def _memory(configs: list[dict[str, Any]]):
    return _versus_size(configs, "peak_memory_gb", "memory_gb", "peak_rss_gb", ("Peak memory (GB)", ".2f"),
                        "Peak memory (GB)")


def _versus_size(configs: list[dict[str, Any]], column: str, field: str, meaning_of: str, tip: tuple[str, str],
                 axis: str):
    """One point per configuration: configs' `column` (as `field`) against the file size, colored by quant."""
    rows = _rows(configs, column, "model_size_gb")
    values = [{**_config(r), "size_gb": r["model_size_gb"], field: r[column],
               "meaning": interpret(meaning_of, r[column])} for r in rows]
    tips = [*CONFIG_TIPS, _tip("size_gb", "File size (GB)", ".2f"), _tip(field, *tip), _tip("meaning", "Meaning")]
    return values, _point_layout(("size_gb", "Model file size (GB)"), (field, axis), ("quant", "Quant"), tips)


def _quality(configs: list[dict[str, Any]]):
    """Overall score per quant, lowest precision first, so each model's line shows what quantizing costs."""
    rows = _rows(configs, "quality_pct")
    values = [{**_config(r), "quality_pct": r["quality_pct"], "lost_pts": r["quality_degradation_pts"],
               "reference": r["quality_reference_quant"]} for r in rows]
    tips = [*CONFIG_TIPS, _tip("quality_pct", "Quality (% correct)", ".1f"),
            _tip("lost_pts", "Points lost vs reference", ".1f"), _tip("reference", "Reference quant")]
    return _by_quant(rows, values, ("quality_pct", "Quality score (% correct)"), tips, {"domain": [0, 100]})


def _divergence(configs: list[dict[str, Any]]):
    """Mean KL divergence from the reference quant per quant (log scale: 0.001 and 0.5 both matter)."""
    rows = [r for r in _rows(configs, "kld_mean", "same_top_pct") if r["kld_mean"] > 0]
    values = [{**_config(r), "kld_mean": r["kld_mean"], "same_top_pct": r["same_top_pct"],
               "ppl_ratio": r["ppl_ratio"], "meaning": interpret("kld_mean", r["kld_mean"])} for r in rows]
    tips = [*CONFIG_TIPS, _tip("kld_mean", "Mean KL divergence", ".4f"),
            _tip("same_top_pct", "Same top token (%)", ".1f"), _tip("ppl_ratio", "Perplexity ratio", ".3f"),
            _tip("meaning", "Meaning")]
    return _by_quant(rows, values, ("kld_mean", "Mean KL divergence from the reference (log)"), tips, {"type": "log"})


def _same_top(configs: list[dict[str, Any]]):
    """How often each quant picks the reference's top token."""
    rows = _rows(configs, "same_top_pct")
    values = [{**_config(r), "same_top_pct": r["same_top_pct"], "meaning": interpret("same_top_pct",
                                                                                     r["same_top_pct"])} for r in rows]
    tips = [*CONFIG_TIPS, _tip("same_top_pct", "Same top token (%)", ".1f"), _tip("meaning", "Meaning")]
    return _by_quant(rows, values, ("same_top_pct", "Same top token as the reference (%)"), tips, {"zero": False})


def _by_quant(rows: list[dict[str, Any]], values: list[dict[str, Any]], y: tuple[str, str], tips: list[dict],
              scale: dict[str, Any]):
    """One line per model across its quants, lowest precision first."""
    order = sorted({r["quant"] for r in rows}, key=lambda q: (BITS_PER_WEIGHT.get(q, 99), q))
    layout = _point_layout(("quant", "Quantization (lowest precision first)"), y, ("model", "Model"), tips,
                           line=True, x_type="ordinal")
    layout["encoding"]["x"].update(sort=order, axis={"labelAngle": 0})
    layout["encoding"]["y"]["scale"] = scale
    return values, layout


def _variants(configs: list[dict[str, Any]]):
    """Tokens/s of every server-setting variant with its 95 % interval, in run order (a thread
    sweep reads left to right as the speed-vs-threads curve), one colour per model file."""
    rows = [r for r in _rows(configs, "tokens_per_s") if r["variant"]]
    low, high = bound_names("tokens_per_s")
    values = [{**_config(r), "configuration": f"{r['model']} {r['quant']}", "variant": r["variant"],
               "tokens_per_s": r["tokens_per_s"], "low": r.get(low), "high": r.get(high)} for r in rows]
    tips = [*CONFIG_TIPS, _tip("variant", "Variant"), _tip("tokens_per_s", "Tokens/s", ".1f"),
            _tip("low", "95% low", ".1f"), _tip("high", "95% high", ".1f")]
    layout = _point_layout(("variant", "Server-setting variant (run order)"), ("tokens_per_s", "Tokens/s"),
                           ("configuration", "Model file"), tips, x_type="ordinal")
    layout["encoding"]["x"].update(sort=list(dict.fromkeys(v["variant"] for v in values)), axis={"labelAngle": 0})
    point = {"mark": layout.pop("mark")}
    band = {"mark": {"type": "rule"}, "encoding": {"y": {"field": "low", "type": "quantitative"},
                                                   "y2": {"field": "high"}}}
    return values, {**layout, "layer": [band, point]}


def _capacity(loaded: pl.DataFrame, limit: float | None):
    """One line per configuration through its load levels (`_level_rows`): total output tokens/s
    against p90 TTFT, each point labelled with its number of users, and the service level's TTFT
    (`limit`) drawn across."""
    values = _levels(loaded) if loaded.height else []
    tips = [*CONFIG_TIPS, _tip("users", "Users in flight"), _tip("output_tokens_per_s", "Output tokens/s", ".1f"),
            _tip("p90_ttft_s", "p90 TTFT (s)", ".2f"), _tip("tokens_per_s_per_user", "Tokens/s per user", ".1f")]
    layout = _point_layout(("output_tokens_per_s", "Total output (tokens/s)"), ("p90_ttft_s", "p90 time to first "
                           "token (s)"), ("configuration", "Configuration"), tips, line=True)
    layout["encoding"]["order"] = {"field": "users", "type": "quantitative"}
    if limit is None or not values:
        return values, layout
    line = {"mark": layout.pop("mark"), "encoding": layout.pop("encoding")}  # the rule has its own data
    rule = {"data": {"values": [{"limit": limit}]}, "mark": {"type": "rule", "strokeDash": [4, 4]},
            "encoding": {"y": {"field": "limit", "type": "quantitative"}, "color": {"value": "#c0392b"},
                         "tooltip": [{"field": "limit", "title": "Service level: p90 TTFT (s)"}]}}
    return values, {**layout, "layer": [line, rule]}


def _levels(loaded: pl.DataFrame) -> list[dict[str, Any]]:
    """A point per load result and level where both total output and p90 TTFT are numbers, results
    in order, fewest users first: the levels' flat columns (`<figure>_at_<users>`, named by
    `capacity.level_key`) stacked by polars, as 6,300 levels of 2,100 results one dict at a time
    took a tenth of a second."""
    columns: dict[int, dict[str, str]] = {}
    for column in loaded.columns:
        if (found := level_key(column)) is not None and found[1] in LEVEL_FIELDS:
            columns.setdefault(found[0], {})[found[1]] = column
    numbered = loaded.with_row_index("_result")
    stacked = [numbered.select(
        "_result", "host", "model", "quant", configuration=pl.concat_str("model", pl.lit(" "), "config"),
        users=pl.lit(users, pl.Int64),
        **{field: pl.col(named[field]) if field in named else pl.lit(None, pl.Float64) for field in LEVEL_FIELDS})
        for users, named in sorted(columns.items())]
    if not stacked:
        return []
    drawn = pl.concat(stacked).filter(pl.col("output_tokens_per_s").is_finite() & pl.col("p90_ttft_s").is_finite())
    return drawn.sort("_result", "users", maintain_order=True).drop("_result").to_dicts()


def _context(sized_rows: pl.DataFrame):
    """Load time per context size (`_sized_rows`), one line per configuration."""
    sized = sorted((int(m.group(1)), c) for c in sized_rows.columns if (m := LOAD_COLUMN.match(c)))
    rows = sized_rows.select("host", "model", "quant", *(c for _, c in sized)).to_dicts()
    values = [{**_config(r), "configuration": f"{r['model']} {r['quant']}", "context_tokens": size,
               "load_s": r[col], "meaning": interpret("target_load_s", r[col])}
              for r in rows for size, col in sized if _finite(r[col])]
    tips = [*CONFIG_TIPS, _tip("context_tokens", "Context (tokens)", ",d"), _tip("load_s", "Load time (s)", ".2f"),
            _tip("meaning", "Meaning")]
    layout = _point_layout(("context_tokens", "Prompt size (tokens)"), ("load_s", "Prompt load time (s)"),
                           ("configuration", "Configuration"), tips, line=True, x_scale={"type": "log", "base": 2})
    layout["encoding"]["x"]["axis"] = {"values": [size for size, _ in sized], "format": ",d"}
    return values, layout


# The session chart's line names: the cache-on line's first point is a cold read like the other's.
CACHE_LABELS = {"cache on": "cache on (turn 1 read cold: nothing cached yet)"}


def _read(point: dict[str, Any]) -> str:
    if point["cache"] == "cache off":
        return "whole (cache off)"
    return "cold: nothing cached yet" if point["turn"] == 1 else "cached prefix reused, the new part read"


def _turns(points: list[dict[str, Any]]):
    """One line per configuration and cache setting: the median TTFT of each turn against its prompt size.
    The gap between a configuration's two lines is what reusing the cache saves as the session grows.
    Turn 1 has nothing to reuse (the session profile reads it cold in every repeat), so the cache-on
    line is named for the turns that reuse, and each point says how its prompt was read."""
    values = [{**p, "configuration": f"{p['model']} {p['quant']}", "series": f"{p['model']} {p['quant']}, "
               f"{p['cache']}", "cache": CACHE_LABELS.get(p["cache"], p["cache"]), "read": _read(p)} for p in points]
    tips = [*CONFIG_TIPS, _tip("cache", "Prompt cache"), _tip("turn", "Turn"), _tip("read", "Prompt read"),
            _tip("prompt_tokens", "Prompt (tokens)", ",d"), _tip("ttft_s", "TTFT (s)", ".3f")]
    layout = _point_layout(("prompt_tokens", "Prompt size at the turn (tokens)"), ("ttft_s", "Time to first token "
                           "(s)"), ("configuration", "Configuration"), tips, line=True)
    layout["encoding"]["strokeDash"] = {"field": "cache", "type": "nominal", "title": "Prompt cache"}
    layout["encoding"]["detail"] = [{"field": "series"}]
    layout["encoding"]["order"] = {"field": "turn", "type": "quantitative"}
    return values, layout


def _categories(ok: pl.DataFrame):
    """Accuracy per category (`<headline>_<category>` of the categories profile's rows, `_category_rows`)
    with its 95 % interval, one line per configuration: which kinds of call a quant loses first."""
    if CATEGORIES is None or not ok.height:
        return None
    from llmspec.profiles import PROFILES

    stem = next(iter(PROFILES[CATEGORIES].headlines))
    bounds = {b for c in ok.columns for b in bound_names(c)}
    columns = [c for c in ok.columns if c.startswith(f"{stem}_") and c not in bounds]
    rows = ok.to_dicts()
    values = [{**_config(r), "configuration": f"{r['model']} {r['config']}", "category": c.removeprefix(f"{stem}_"),
               "accuracy_pct": r[c], "low": r.get(bound_names(c)[0]), "high": r.get(bound_names(c)[1])}
              for r in rows for c in columns if _finite(r[c])]
    tips = [*CONFIG_TIPS, _tip("category", "Category"), _tip("accuracy_pct", "Accuracy (%)", ".1f"),
            _tip("low", "95% low", ".1f"), _tip("high", "95% high", ".1f")]
    layout = _point_layout(("category", "Category"), ("accuracy_pct", "Accuracy (% of cases right)"),
                           ("configuration", "Configuration"), tips, line=True, x_type="ordinal")
    declared = [m.removeprefix(f"{stem}_") for m in PROFILES[CATEGORIES].metrics if m.startswith(f"{stem}_")]
    found = list(dict.fromkeys(v["category"] for v in values))
    layout["encoding"]["x"].update(axis={"labelAngle": 0}, sort=[c for c in declared if c in found] +
                                   [c for c in found if c not in declared])  # the set's own order
    layout["encoding"]["y"]["scale"] = {"domain": [0, 100]}
    line = {"mark": layout.pop("mark")}
    band = {"mark": {"type": "rule"}, "encoding": {"y": {"field": "low", "type": "quantitative"},
                                                   "y2": {"field": "high"}}}
    return values, {**layout, "layer": [band, line]}


def _series(points: list[dict[str, Any]], series: str):
    values = [{**p, "configuration": f"{p['model']} {p['quant']}"} for p in points if p["series"] == series]
    title = {"tokens_per_s": "Generation speed (tokens/s)", "temperature_c": "CPU temperature (°C)",
             "gpu_power_w": "GPU power (W)"}[series]
    tips = [*CONFIG_TIPS, _tip("elapsed_s", "Time (s)", ".0f"), _tip("value", title, ".1f")]
    layout = _point_layout(("elapsed_s", "Time into the stress run (s)"), ("value", title),
                           ("configuration", "Configuration"), tips, line=True)
    layout["mark"]["point"] = False
    layout["encoding"]["y"]["scale"] = {"zero": False}
    return values, layout


def _rows(table: list[dict[str, Any]], *needed: str) -> list[dict[str, Any]]:
    """Rows of `table` (the configs table's rows) where every `needed` column holds a number
    (none where the table lacks such a column)."""
    return [r for r in table if all(_finite(r.get(c)) for c in needed)]


def _config(row: dict[str, Any]) -> dict[str, Any]:
    return {"host": row["host"], "model": row["model"], "quant": row["quant"]}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
