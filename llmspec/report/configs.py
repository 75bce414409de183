"""Configurations: one row per (host, model, quant), the unit a user chooses between.

Result files are per profile; a decision ("run gemma Q4_K_M on this laptop") is per model file.
This module folds a `frame.for_spec` frame into that shape and adds the
derived metrics, so the recommendations, the HTML report and the CSV all compare the same
numbers. Everything is computed at report time from the spec's current thresholds and the
host's measured bandwidth; nothing here is stored in results.

Figures come from the profile that owns them (each profile's `headlines` in its `KIND`: tokens/s
and TTFT from interactive, context and load time from long_context, docs/hour from batch,
quality from quality's overall score, p90 latency from load, drift and temperature from
stress), and only from finished measurements.
Every rated metric and each profile's skip/error reason ride along (`<profile>_reason`), so a
row can be re-rated and explained on its own. `peak_memory_gb` is the server's largest resident
memory over the configuration's profiles (peak_rss_gb, rss_peak_gb, rss_gb_<size>; GiB).

Derived metrics (shown in the report, so written for people):

- **Quality degradation** (`quality_degradation_pts`): the overall quality score of the most
  precise quant of the same model on the same host that has a quality result (by bits per
  weight, F32 first; a quant derived from a less precise file counts as that file, and between
  equals the file it was derived from wins), minus this configuration's score, in percentage points.
  Positive means this quant lost points; 0 for the reference itself. Whether that loss is more
  than luck is `quality_loss_p`: the exact McNemar test on the items both answered (the items
  one got right and the other wrong; `quality_items_compared` is how many items were paired).
  Only a loss with p < 0.05 is stated as a loss; anything else reads "no measurable loss".
- **Efficiency score** (docs/rating.md): `tokens/s x context size / peak memory GB`, where the
  context size is the largest one the long-context profile completed, else the server's
  `ctx_size`. `efficiency_score` scales it so the best configuration in the report is 100.
- **Cost-benefit score** (docs/rating.md): `quality x performance / memory`, with quality the
  overall quality score as a fraction, performance the tokens/s as a fraction of the fastest
  configuration, memory the peak memory as a fraction of the largest. Scaled so the best is 100;
  missing where quality, speed or memory was not measured. Both scores have two decimals.
- **Memory predictions graded** (`estimate_error_pct`, `prediction_error_pct`): for the
  configuration's cell whose llama-server used the most memory (`peak_server_gb`), the pre-flight
  estimate made for that cell's context (weights + KV cache + overhead, `estimated_memory_gb`)
  and the planner's memory-trend prediction from the configurations measured before it
  (`predicted_peak_rss_gb`), each minus the measured peak, in percent of it. Positive: the
  prediction was cautious; negative: it under-predicted, and a skip resting on it may be wrong.
- **Speed predictions graded** (`speed_error_pct`): the decode speed the runner predicted before
  measuring (`predicted_tokens_per_s`: bandwidth roofline calibrated by this host's earlier results,
  `plan.prediction`, as `llmspec suggest` predicts) minus the measured one (`decode_measured_tps`:
  the server's own tokens/s, else the client's, of the first single-user cell that has both), in
  percent of the measured. Positive: the prediction was optimistic. The same for prompt speed
  (`predicted_prompt_tokens_per_s` against `prompt_measured_tps`, the server's prompt tokens/s:
  `prompt_error_pct`).
- **Roofline** (`roofline_pct`): tokens/s x model file bytes / memory bandwidth, in percent.
  Each generated token reads every weight once, so 100 % is the hardware's bound; a figure far
  below it (`roofline_flag`) suggests a misconfiguration (threads, other load).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import polars as pl

from llmspec.machine.bandwidth import FAR_BELOW_PCT, roofline_pct
from llmspec.profiles import KINDS, ORDER, PROFILES, role_name
from llmspec.report.frame import KEYS
from llmspec.results import bound_names
from llmspec.spec import Spec
from llmspec.stats import mcnemar_p

MEMORY_METRICS = ("peak_rss_gb", "rss_peak_gb")  # plus long_context's rss_gb_<size>
MEMORY_PREFIX = "rss_gb_"
PREDICTED = ("estimated_memory_gb", "predicted_peak_rss_gb")  # stored by the runner next to peak_rss_gb

DERIVED: dict[str, pl.DataType] = {
    "peak_memory_gb": pl.Float64, "quality_reference_quant": pl.String, "quality_degradation_pts": pl.Float64,
    "quality_loss_p": pl.Float64, "quality_items_compared": pl.Int64,
    "efficiency_raw": pl.Float64, "efficiency_score": pl.Float64,
    "cost_benefit_raw": pl.Float64, "cost_benefit_score": pl.Float64,
    "bandwidth_gbps": pl.Float64, "roofline_pct": pl.Float64, "roofline_flag": pl.Boolean,
    "peak_server_gb": pl.Float64, "estimated_memory_gb": pl.Float64, "estimate_error_pct": pl.Float64,
    "predicted_peak_rss_gb": pl.Float64, "prediction_error_pct": pl.Float64,
    "decode_measured_tps": pl.Float64, "predicted_tokens_per_s": pl.Float64, "speed_error_pct": pl.Float64,
    "prompt_measured_tps": pl.Float64, "predicted_prompt_tokens_per_s": pl.Float64, "prompt_error_pct": pl.Float64,
    "model_size_bytes": pl.Int64, "context_size": pl.Int64, "capacity": pl.String,
}
INTEGER_FIGURES = {"max_context_tokens"}
# Profiles whose item-level results are compared with the reference quant's (`ProfileKind.paired`), each in
# four columns named after it (`<profile>_reference_quant`, `_degradation_pts`, `_loss_p`, `_items_compared`):
# the quiz's are the quality_* columns above, which it always had (its points are its overall score's).
PAIRED = tuple(k.name for k in KINDS if k.paired)


def paired_columns(profile: str) -> dict[str, pl.DataType]:
    return {f"{profile}_reference_quant": pl.String, f"{profile}_degradation_pts": pl.Float64,
            f"{profile}_loss_p": pl.Float64, f"{profile}_items_compared": pl.Int64}


def schema() -> dict[str, pl.DataType]:
    """Every configs column and its type, in order; the same for an empty report."""
    columns: dict[str, pl.DataType] = {"host": pl.String, "model": pl.String, "quant": pl.String,
                                       "variant": pl.String, "config": pl.String, "model_size_gb": pl.Float64}
    for profile in ORDER:
        columns |= {f"{profile}_status": pl.String, f"{profile}_rating": pl.String}
    headline = [c for k in KINDS for c in k.headlines.values()]
    rated = [c for k in KINDS for c in k.configs_columns().values() if c not in headline]
    for name in headline + list(DERIVED) + rated:
        columns[name] = DERIVED.get(name) or (pl.Int64 if name in INTEGER_FIGURES else pl.Float64)
    for profile in PAIRED:
        columns |= {name: dtype for name, dtype in paired_columns(profile).items() if name not in columns}
    columns |= {bound: pl.Float64 for name in headline + rated for bound in bound_names(name)}
    columns |= {f"{profile}_reason": pl.String for profile in ORDER}  # why skipped / error
    return columns | {f"{profile}_checks": pl.String for profile in ORDER}  # what the rating rests on (JSON)


def configs(frame: pl.DataFrame, spec: Spec, bandwidth_gbps: Mapping[str, float]) -> pl.DataFrame:
    """One row per (host, model, quant, variant) of a `frame.for_spec` frame, in its order (see module doc)."""
    frame = broadcast_serverless(frame)
    ok = pl.col("status") == "ok"
    table = frame.group_by(KEYS, maintain_order=True).agg(
        pl.col("config").first(), pl.col("model_size_bytes").max(),
        _memory(frame).filter(ok).max().alias("peak_memory_gb"))
    for profile in ORDER:
        table = table.join(_profile_columns(frame, profile), on=KEYS, how="left", maintain_order="left")
    table = table.with_columns(
        (pl.col("model_size_bytes") / 1e9).alias("model_size_gb"),
        pl.coalesce(pl.col("max_context_tokens"), pl.lit(float(spec.server.ctx_size))).alias("context_size"),
    )
    table = _with_scores(_with_degradation(table, _items_of(frame, role_name("quiz")), spec))
    for profile in PAIRED:
        if profile != role_name("quiz"):
            table = _with_pairing(table, _items_of(frame, profile), spec, profile)
    table = _with_roofline(table, bandwidth_gbps)
    table = table.join(_predictions(frame), on=KEYS, how="left", maintain_order="left")
    table = table.join(_speed_predictions(frame), on=KEYS, how="left", maintain_order="left")
    table = table.join(_capacity(frame, spec), on=KEYS, how="left", maintain_order="left")
    return table.select(pl.col(name).cast(dtype) for name, dtype in schema().items())


def broadcast_serverless(frame: pl.DataFrame) -> pl.DataFrame:
    """A profile that starts no server (divergence) ran once per (host, model, quant), with no
    variant: its row stands for every server-setting variant of that model file."""
    serverless = [k.name for k in KINDS if not k.needs_server]
    alone = pl.col("profile").is_in(serverless) & (pl.col("variant") == "")
    variants = frame.filter(~alone).select("host", "model", "quant", "variant").unique(maintain_order=True)
    swept = variants.filter(pl.col("variant") != "")
    if swept.height == 0:
        return frame
    rows = frame.filter(alone)
    copies = rows.drop("variant").join(swept, on=["host", "model", "quant"], how="inner").with_columns(
        (pl.col("quant") + "+" + pl.col("variant")).alias("config"))
    unswept = rows.join(swept.select("host", "model", "quant").unique(), on=["host", "model", "quant"], how="anti")
    return pl.concat([frame.filter(~alone), unswept, copies.select(frame.columns)]).sort(["host", "order"],
                                                                                        maintain_order=True)


def _col(frame: pl.DataFrame, name: str) -> pl.Expr:
    """A metric no result recorded is simply absent from the frame: read it as null."""
    return pl.col(name) if name in frame.columns else pl.lit(None, dtype=pl.Float64)


def _memory(frame: pl.DataFrame) -> pl.Expr:
    """The largest memory figure a result holds (server peak, sampled peaks, per context size)."""
    names = [c for c in frame.columns if c in MEMORY_METRICS or c.startswith(MEMORY_PREFIX)]
    return pl.max_horizontal(*names) if names else pl.lit(None, dtype=pl.Float64)


def _profile_columns(frame: pl.DataFrame, profile: str) -> pl.DataFrame:
    """Status, rating and figures of one profile; figures only from a finished measurement."""
    ok = pl.col("status") == "ok"
    values = [pl.when(ok).then(_col(frame, source)).alias(target)  # the figure and its 95 % interval
              for metric, name in PROFILES[profile].configs_columns().items()
              for source, target in zip((metric, *bound_names(metric)), (name, *bound_names(name)))]
    return frame.filter(pl.col("profile") == profile).select(
        *KEYS, pl.col("status").alias(f"{profile}_status"), pl.col("rating").alias(f"{profile}_rating"),
        pl.col("rating_checks").alias(f"{profile}_checks"),
        pl.when(pl.col("reason") != "").then(pl.col("reason")).alias(f"{profile}_reason"), *values)


def _items_of(frame: pl.DataFrame, profile: str) -> dict[tuple[str, str, str, str], dict[str, int]]:
    """(host, model, quant, variant) -> {item id: 1 right / 0 wrong} of each finished result of `profile`."""
    if "items" not in frame.columns:
        return {}
    found = frame.filter((pl.col("profile") == profile) & (pl.col("status") == "ok")
                         & pl.col("items").is_not_null())
    return {(h, m, q, v): json.loads(items) for h, m, q, v, items in found.select(*KEYS, "items").iter_rows()}


def paired_loss(items: dict[str, int] | None, reference: dict[str, int] | None) -> tuple[float | None, int | None]:
    """(exact McNemar p-value, items compared) of a quant against its reference on the shared items."""
    if not items or not reference:
        return None, None
    shared = items.keys() & reference.keys()
    only_reference = sum(1 for i in shared if reference[i] and not items[i])
    only_this = sum(1 for i in shared if items[i] and not reference[i])
    return mcnemar_p(only_reference, only_this), len(shared)


def paired_difference(items: dict[str, int] | None, reference: dict[str, int] | None) -> tuple[
        float | None, float | None, int | None]:
    """(points lost, exact McNemar p-value, items compared) of a quant against its reference on the items
    both answered: the points are the reference's share right minus this one's, on those items."""
    p, n = paired_loss(items, reference)
    if not n:
        return None, None, None
    shared = items.keys() & reference.keys()
    return 100 * sum(reference[i] - items[i] for i in shared) / n, p, n


SIGNIFICANT_P = 0.05


def significant_loss(row: Mapping, prefix: str) -> bool:
    """Whether the row lost against `prefix`'s reference beyond chance (exact McNemar p < 0.05, points lost)."""
    p, points = row.get(f"{prefix}_loss_p"), row.get(f"{prefix}_degradation_pts")
    return p is not None and points is not None and p < SIGNIFICANT_P and points > 0


def loss_statement(row: Mapping, prefix: str | None = None) -> str | None:
    """What a configs row may say about its quality against the reference quant (None: nothing
    to compare, or the row is the reference). A difference is stated as such only when the paired
    test says chance alone rarely gives it; an untested one (no per-item scores) says so. `prefix`:
    whose comparison (a paired profile's name), the quiz's by default."""
    prefix = prefix or role_name("quiz")
    points, reference = row.get(f"{prefix}_degradation_pts"), row.get(f"{prefix}_reference_quant")
    p = row.get(f"{prefix}_loss_p")
    if points is None or reference is None or reference == row.get("quant"):
        return None
    n = row.get(f"{prefix}_items_compared")
    if p is None:
        return f"{round(-points):+d} pts vs {reference} (not compared item by item)"
    if p < SIGNIFICANT_P and points != 0:
        return f"{round(-points):+d} pts vs {reference} (exact McNemar p = {p:.3f} on {n} items)"
    if round(points) == 0:
        return f"no measurable loss vs {reference} on {n} items (the same score)"
    return f"no measurable loss vs {reference} on {n} items ({round(-points):+d} pts is within chance)"


def _precision(spec: Spec) -> pl.DataFrame:
    """(model, quant) -> the bits per weight its file really carries (`Model.precision`: a quant
    derived from a less precise file is no more precise than that file) and whether it is a source."""
    rows = [(m.name, q, m.precision(q), q not in m.derive) for m in spec.models for q in m.quants]
    return pl.DataFrame(rows, schema={"model": pl.String, "quant": pl.String, "bits": pl.Float64,
                                      "original": pl.Boolean}, orient="row")


def _with_degradation(table: pl.DataFrame, items: dict[tuple[str, str, str, str], dict[str, int]],
                      spec: Spec) -> pl.DataFrame:
    """Quality points lost against the most precise quant of the same model, host and server
    settings (variant), and whether the loss is beyond luck (exact McNemar on the paired items)."""
    references = (
        table.join(_precision(spec), on=["model", "quant"], how="left")
        .filter(pl.col("quality_pct").is_not_null() & (pl.col("bits") > 0))
        .sort(["bits", "original", "quant"], descending=[True, True, False])
        .group_by(["host", "model", "variant"], maintain_order=True)
        .agg(pl.col("quant").first().alias("quality_reference_quant"),
             pl.col("quality_pct").first().alias("reference_pct"))
    )
    measured = pl.col("quality_pct").is_not_null()
    table = table.join(references, on=["host", "model", "variant"], how="left", maintain_order="left").with_columns(
        pl.when(measured).then(pl.col("quality_reference_quant")).alias("quality_reference_quant"),
        (pl.col("reference_pct") - pl.col("quality_pct")).alias("quality_degradation_pts"),
    )
    tests = [paired_loss(items.get((h, m, q, v)), items.get((h, m, r, v))) if r is not None else (None, None)
             for h, m, q, v, r in table.select(*KEYS, "quality_reference_quant").iter_rows()]
    return table.with_columns(pl.Series("quality_loss_p", [p for p, _ in tests], dtype=pl.Float64),
                              pl.Series("quality_items_compared", [n for _, n in tests], dtype=pl.Int64))


def _with_pairing(table: pl.DataFrame, items: dict[tuple[str, str, str, str], dict[str, int]], spec: Spec,
                  profile: str) -> pl.DataFrame:
    """`profile`'s items against the most precise quant of the same model, host and server settings that has
    them (chosen as the quiz's reference is): points lost on the shared items and whether that is beyond luck."""
    columns = list(paired_columns(profile))
    has = [(h, m, q, v) for h, m, q, v in table.select(*KEYS).iter_rows() if (h, m, q, v) in items]
    if not has:
        return table.with_columns(pl.lit(None, dtype=dtype).alias(name)
                                  for name, dtype in paired_columns(profile).items())
    measured = pl.DataFrame(has, schema={k: pl.String for k in KEYS}, orient="row")
    references = (
        measured.join(_precision(spec), on=["model", "quant"], how="left").filter(pl.col("bits") > 0)
        .sort(["bits", "original", "quant"], descending=[True, True, False])
        .group_by(["host", "model", "variant"], maintain_order=True)
        .agg(pl.col("quant").first().alias(columns[0]))
    )
    table = table.join(references, on=["host", "model", "variant"], how="left", maintain_order="left")
    found = [paired_difference(items.get((h, m, q, v)), items.get((h, m, r, v))) if r is not None and (h, m, q, v)
             in items else (None, None, None) for h, m, q, v, r in table.select(*KEYS, columns[0]).iter_rows()]
    return table.with_columns(
        pl.when(pl.Series([f[2] is not None for f in found])).then(pl.col(columns[0])).alias(columns[0]),
        *(pl.Series(name, [f[i] for f in found], dtype=dtype)
          for i, (name, dtype) in enumerate(list(paired_columns(profile).items())[1:])))


def _predictions(frame: pl.DataFrame) -> pl.DataFrame:
    """The memory predictions graded against what happened, per configuration, from the finished
    cell whose llama-server used the most memory: that cell's pre-flight estimate (for its own
    context and slots) and the planner's trend prediction, each against its measured `peak_rss_gb`."""
    missing = [c for c in ("peak_rss_gb", *PREDICTED) if c not in frame.columns]
    rows = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in missing)
    peak = pl.col("peak_rss_gb")
    rows = rows.filter((pl.col("status") == "ok") & peak.is_not_null()).sort(peak, descending=True)
    rows = rows.group_by(KEYS, maintain_order=True).first()
    error = {name: pl.when(peak > 0).then((pl.col(name) - peak) / peak * 100) for name in PREDICTED}
    return rows.select(*KEYS, peak.alias("peak_server_gb"),
                       pl.col("estimated_memory_gb"), error["estimated_memory_gb"].alias("estimate_error_pct"),
                       pl.col("predicted_peak_rss_gb"), error["predicted_peak_rss_gb"].alias("prediction_error_pct"))


def _speed_predictions(frame: pl.DataFrame) -> pl.DataFrame:
    """The speeds predicted before measuring against the measured ones, per configuration: decode
    (the server's own tokens/s, else the client's) and prompt (the server's prompt tokens/s), each from
    the first finished cell that has both the prediction and the figure."""
    graded = [_graded(frame, "predicted_tokens_per_s", ("server_tokens_per_s", "tokens_per_s"),
                      "decode_measured_tps", "speed_error_pct"),
              _graded(frame, "predicted_prompt_tokens_per_s", ("prompt_tokens_per_s",),
                      "prompt_measured_tps", "prompt_error_pct")]
    return graded[0].join(graded[1], on=KEYS, how="full", coalesce=True)


def _graded(frame: pl.DataFrame, predicted: str, measured_from: tuple[str, ...], measured_as: str,
            error_as: str) -> pl.DataFrame:
    """One prediction against its measured figure (the first of `measured_from` present), and the error in
    percent of the measured one: positive, the prediction was optimistic."""
    missing = [c for c in (predicted, *measured_from) if c not in frame.columns]
    rows = frame.with_columns(pl.lit(None, dtype=pl.Float64).alias(c) for c in missing)
    measured = pl.coalesce(*(pl.col(c) for c in measured_from))
    rows = rows.filter((pl.col("status") == "ok") & pl.col(predicted).is_not_null() & measured.is_not_null())
    rows = rows.group_by(KEYS, maintain_order=True).first()
    return rows.select(*KEYS, measured.alias(measured_as), pl.col(predicted),
                       pl.when(measured > 0).then((pl.col(predicted) - measured) / measured * 100).alias(error_as))


def _capacity(frame: pl.DataFrame, spec: Spec) -> pl.DataFrame:
    """The capacity answer in words per configuration ("up to 4 concurrent users with ..."), from
    its load result's stored levels against today's service level ([thresholds.load])."""
    from llmspec.capacity import ServiceLevel, level_columns, levels_of, max_users, sentence

    levels_profile = role_name("user_levels")
    slo = ServiceLevel.of(getattr(spec.thresholds, levels_profile))
    rows = frame.filter((pl.col("profile") == levels_profile) & (pl.col("status") == "ok")).select(
        *KEYS, *level_columns(frame.columns)).to_dicts()
    found = [(*(row[k] for k in KEYS), sentence(max_users(levels, slo), slo, levels))
             for row in rows if (levels := levels_of(row))]
    return pl.DataFrame(found, schema={**{k: pl.String for k in KEYS}, "capacity": pl.String}, orient="row")


def _with_scores(table: pl.DataFrame) -> pl.DataFrame:
    """Efficiency and cost-benefit, raw and scaled so the best configuration is 100."""
    tps, memory = pl.col("tokens_per_s"), pl.col("peak_memory_gb")
    has_memory = memory > 0
    table = table.with_columns(
        pl.when(has_memory).then(tps * pl.col("context_size") / memory).alias("efficiency_raw"),
        pl.when(has_memory & (tps.max() > 0)).then(
            pl.col("quality_pct") / 100 * (tps / tps.max()) / (memory / memory.max())).alias("cost_benefit_raw"),
    )
    return table.with_columns(_scaled("efficiency_raw").alias("efficiency_score"),
                              _scaled("cost_benefit_raw").alias("cost_benefit_score"))


def _scaled(column: str) -> pl.Expr:
    top = pl.col(column).max()
    return pl.when(top > 0).then((pl.col(column) * 100 / top).round(2))


def _with_roofline(table: pl.DataFrame, bandwidth_gbps: Mapping[str, float]) -> pl.DataFrame:
    """Speed against the host's bandwidth bound; one scalar call per configuration (a few thousand)."""
    measured = {host: float(gbps) for host, gbps in bandwidth_gbps.items()}
    table = table.with_columns(
        pl.col("host").replace_strict(measured, default=None, return_dtype=pl.Float64).alias("bandwidth_gbps"))
    triples = zip(table["tokens_per_s"], table["model_size_bytes"], table["bandwidth_gbps"])
    pct = [roofline_pct(t, b, g) if t is not None and b is not None and g else None for t, b, g in triples]
    return table.with_columns(pl.Series("roofline_pct", pct, dtype=pl.Float64)).with_columns(
        (pl.col("roofline_pct") < FAR_BELOW_PCT).alias("roofline_flag"))
