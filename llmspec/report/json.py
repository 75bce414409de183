"""results.json: everything the report knows (README, "Reports": metadata, results, recommendations).

`metadata` (timestamp, hosts and their hardware, the spec as config, test duration), `results`
(one entry per host, model and quant: size, memory, derived scores, and each profile's status,
metrics with their 95 % intervals, rating, per-metric checks and plain-language meaning) and `recommendations`. This is
the machine-readable report: other tools read ratings and checks from here instead of
re-implementing the thresholds. Keys are sorted so two reports diff cleanly.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import polars as pl

from llmspec.rating import METRIC_TRANSLATION, interpret_expr
from llmspec.report.frame import KEYS, filled, hosts, metric_columns
from llmspec.report.memo import NO_MEMO, Memo
from llmspec.results import bound_names

if TYPE_CHECKING:
    from llmspec.spec import Spec

TRANSLATED = frozenset(METRIC_TRANSLATION)
NEEDS_ESCAPE = r'["\\\x00-\x1f]'  # what json.dumps(ensure_ascii=False) escapes in a string
UNWRITTEN = ("spec", "config", "profile", "model_size_bytes", "host_info", "items", "model_sha256", "order",
             "rating_summary")  # not in a profile's entry: left out of its memo's key
DERIVED = ("efficiency_score", "cost_benefit_score", "quality_reference_quant", "quality_degradation_pts",
           "quality_loss_p", "quality_items_compared", "bandwidth_gbps", "roofline_pct", "roofline_flag")


def json_head(frame: pl.DataFrame, recommendations: dict[str, Any], spec: Spec, generated_at: str) -> str:
    """The lines of results.json before its results: metadata and recommendations (a few kB)."""
    head = {"metadata": _metadata(frame, spec, generated_at), "recommendations": recommendations}
    return "".join(f" {_dumps(key)}: {_dumps(value)},\n" for key, value in sorted(head.items()))


def json_text(head: str, results: pl.Series) -> str:
    """results.json: `head` (json_head's lines), then the `entries`, one per line: the file diffs line
    by line between runs, and json's C encoder (used only without `indent`) writes 10,000 cells in a
    fraction of the time indent=1 takes."""
    return "".join((
        "{\n", head,
        ' "results": [', *(("\n  ", results.str.join(",\n  ").item(), "\n ]\n") if len(results) else ("]\n",)), "}\n",
    ))


def _dumps(value: Any) -> str:
    """Compact, sorted JSON; NaN or infinity (not JSON) are written as null."""
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), sort_keys=True, ensure_ascii=False, allow_nan=False)


def _metadata(frame: pl.DataFrame, spec: Spec, generated_at: str) -> dict[str, Any]:
    found = hosts(frame)
    return {
        "timestamp": generated_at,
        "spec": spec.name,
        "description": spec.description,
        "hostname": found[0]["id"] if len(found) == 1 else None,  # the single-host field older readers expect
        "hardware": found[0] if len(found) == 1 else None,
        "hosts": found,
        "config": spec.model_dump(mode="json"),
        "thresholds": spec.thresholds.model_dump(),
        "test_duration_seconds": round(frame["duration_s"].sum() or 0.0, 3),
        "result_count": frame.height,
    }


def entries(frame: pl.DataFrame, configs: pl.DataFrame, memo: Memo = NO_MEMO) -> pl.Series:
    """Each entry's JSON text, one per (host, model, quant) in run order, its profiles nested by name.

    Written by polars over whole columns, a select per profile: 14,700 results as Python dicts and
    a json.dumps each took most of a second. The text is the bytes json.dumps(sort_keys=True) wrote.
    """
    keys = configs.select(KEYS)
    nested = {}  # profile -> each entry's text of it, null where the entry has no result of it
    for (profile,), rows in frame.partition_by("profile", as_dict=True).items():  # one pass, not a filter each
        texts = memo.frame(f"json-{profile}", filled(rows.drop(UNWRITTEN)), "", _profile_texts)
        nested[profile] = keys.join(texts.unique(KEYS, keep="last", maintain_order=True),  # as dict keys did
                                    on=KEYS, how="left", nulls_equal=True, maintain_order="left")["text"]
    size = configs["model_size_gb"].to_list()  # rounded as Python rounds: round(x, 3) is not polars' round(3)
    configs = configs.with_columns(
        model_size_gb=pl.Series([None if s is None else round(s, 3) for s in size], dtype=pl.Float64))
    texts = _Texts(configs, ["host", "model", "quant", "variant", "model_size_gb", "peak_memory_gb",
                             *(name for name in DERIVED if name in configs.columns)])
    entry = _record({
        "host": texts("host"), "model": texts("model"), "quantization": texts("quant"),
        "variant": pl.when(pl.col("variant").fill_null("") != "").then(texts("variant")),
        "model_size_gb": texts("model_size_gb"), "memory_gb": texts("peak_memory_gb"),
        "derived": _object({name: texts.optional(name) for name in DERIVED if name in configs.columns}),
        "profiles": _object({profile: pl.lit(text) for profile, text in nested.items()}),
    }, optional=frozenset({"variant"}))
    return configs.select(entry).to_series()


def _profile_texts(rows: pl.DataFrame) -> pl.DataFrame:
    """The KEYS of `rows` (one profile's results) and the JSON text of each one's results."""
    metrics = metric_columns(rows)  # this profile's own metrics: 10 columns, not every profile's 70
    bounded = [(m, low, high) for m in metrics for low, high in [bound_names(m)]
               if low in rows.columns and high in rows.columns]
    texts = _Texts(rows, [*metrics, *(b for _, low, high in bounded for b in (low, high)),
                          "status", "reason", "rating", "flags", "started_at", "duration_s", "server_version"])
    known = {m: pl.all_horizontal(pl.col(m, low, high).is_not_null()) for m, low, high in bounded}
    text = _record({
        "status": texts("status"), "reason": texts("reason"),
        "metrics": _object({m: texts.optional(m) for m in metrics}),
        "intervals": _object({m: pl.when(known[m]).then(_record({"low": texts(low), "high": texts(high)}))
                              for m, low, high in bounded}),  # 95 %, from the result file's `intervals`
        "meaning": _object({m: _meaning(m) for m in metrics if m in TRANSLATED and texts.schema[m].is_numeric()}),
        "rating": texts("rating"),
        "checks": pl.col("rating_checks"),  # already JSON text (frame.for_spec): spliced in, not re-parsed
        "flags": texts.optional("flags").fill_null("[]"),
        "started_at": texts("started_at"), "duration_s": texts("duration_s"), "server_version": texts("server_version"),
    })
    return rows.select(*KEYS, text=text)


def _object(fields: dict[str, pl.Expr]) -> pl.Expr:
    """JSON objects from each key's JSON text (null leaves the key out), keys sorted and spaced as
    json.dumps(sort_keys=True) writes them."""
    pieces = [pl.concat_str(pl.lit(f"{_dumps(key)}: "), fields[key]) for key in sorted(fields)]
    inner = pl.concat_str(pieces, separator=", ", ignore_nulls=True) if pieces else pl.lit("")
    return pl.concat_str(pl.lit("{"), inner, pl.lit("}"))


def _record(fields: dict[str, pl.Expr], optional: frozenset[str] = frozenset()) -> pl.Expr:
    """`_object` of keys that always have a text, but those `optional`: one concat_str of keys and
    values, a third of `_object`'s time (no piece per key, no separator after a missing one)."""
    keys = sorted(fields)
    if not keys or keys[0] in optional:  # the first key present would have to drop its ", "
        return _object(fields)
    parts = [pl.lit(f"{{{_dumps(keys[0])}: "), fields[keys[0]]]
    for key in keys[1:]:
        part = (pl.lit(f", {_dumps(key)}: "), fields[key])
        parts.extend([pl.concat_str(*part).fill_null("")] if key in optional else part)
    return pl.concat_str(*parts, pl.lit("}"))


class _Texts:
    """Columns of a frame as the JSON text json.dumps writes for each value, as polars expressions.

    Polars writes the common case itself. One select finds the columns holding a value it would
    spell otherwise: a float below 1e-4 or not finite gets its spelling mended (`_floats`), a string
    to escape (or any other type) is written by Python.
    """

    def __init__(self, frame: pl.DataFrame, names: list[str]) -> None:
        names, self.schema = list(dict.fromkeys(names)), frame.schema  # frame.schema is built anew each time
        odd = frame.select(_odd(self.schema[n], pl.col(n)).any().alias(n) for n in names).row(0)
        odd_names = [n for n, is_odd in zip(names, odd, strict=True) if is_odd]
        self.mended = {n for n in odd_names if self.schema[n].is_float()}
        self.python = {n: pl.Series([None if v is None else _dumps(v) for v in frame[n].to_list()], dtype=pl.String)
                       for n in odd_names if n not in self.mended}

    def __call__(self, name: str) -> pl.Expr:
        """The column's JSON text, "null" where it has no value."""
        return self.optional(name).fill_null("null")

    def optional(self, name: str) -> pl.Expr:
        """The column's JSON text, null where it has no value (the key is left out)."""
        if name in self.python:
            return pl.lit(self.python[name])
        if name in self.mended:
            return _floats(pl.col(name))
        column, dtype = pl.col(name), self.schema[name]
        if dtype == pl.Boolean:
            return pl.when(column).then(pl.lit("true")).when(~column).then(pl.lit("false"))
        if dtype == pl.String:
            return pl.concat_str(pl.lit('"'), column, pl.lit('"'))
        if dtype == pl.List(pl.String):
            return pl.concat_str(pl.lit("["), column.list.eval(pl.concat_str(pl.lit('"'), pl.element(), pl.lit('"')))
                                 .list.join(", "), pl.lit("]"))
        return column.cast(pl.String)  # floats: the shortest digits that read back, as Python's repr


def _floats(column: pl.Expr) -> pl.Expr:
    """Floats as Python's repr spells them. Polars writes the same shortest digits, but 1e-6 and
    0.000048 where Python writes 1e-06 and 4.8e-05 (below 1e-4); NaN and infinity are not JSON: null."""
    text = (column.cast(pl.String).str.replace(r"e-(\d)$", "e-0${1}")
            .str.replace(r"^(-?)0\.0000(\d)$", "${1}${2}e-05")
            .str.replace(r"^(-?)0\.0000(\d)(\d+)$", "${1}${2}.${3}e-05"))
    return pl.when(column.is_nan() | column.is_infinite()).then(pl.lit("null")).otherwise(text)


def _odd(dtype: pl.DataType, column: pl.Expr) -> pl.Expr:
    """Where polars would not write json.dumps's text for a value of this column."""
    if dtype.is_float():
        return ((column.abs() < 1e-4) & (column != 0)) | ~column.is_finite()
    if dtype.is_integer() or dtype == pl.Boolean:
        return pl.lit(False)
    if dtype == pl.String:
        return column.str.contains(NEEDS_ESCAPE)
    if dtype == pl.List(pl.String):
        return column.list.eval(pl.element().str.contains(NEEDS_ESCAPE).fill_null(True)).list.any()
    return pl.lit(True)


def _meaning(metric: str) -> pl.Expr:
    """What each finite value of a numeric metric means to a person (rating.interpret_expr), as JSON
    text; a band without words ("") is no meaning: null, so the key is left out."""
    texts = {t: _dumps(t) for t in METRIC_TRANSLATION[metric].texts if t}
    words = interpret_expr(metric, pl.col(metric).cast(pl.Float64))
    return words.replace_strict(texts, default=None, return_dtype=pl.String)


def _finite(value: Any) -> Any:
    """NaN and infinity are not JSON; a metric that came out as either is reported as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
