"""Server settings: which variant of a `[server.sweep]` to run, per model file and use case.

For every (host, model, quant) measured under more than one variant, and every use case it ran,
the variant with the best headline figure (tokens/s for chat, docs/hour for batch, ...) is set
against the baseline: the variant nearest the settings the spec would run without its sweep (the
[server] values, else llama-server's defaults: threads = physical cores, -fa auto, f16 KV cache).
A gain is only called a gain when the two 95 % intervals do not overlap; otherwise the finding
says the settings made no measurable difference, which is worth knowing too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import polars as pl

from llmspec.plan import variants
from llmspec.profiles import KINDS
from llmspec.results import bound_names
from llmspec.spec import Spec

# What llama-server does for a key the spec leaves unset (threads: the host's physical cores).
SERVER_DEFAULTS = {"batch_size": 2048, "ubatch_size": 512, "flash_attn": "auto", "cache_type_k": "f16",
                   "cache_type_v": "f16", "n_gpu_layers": "auto", "mlock": False, "no_mmap": False, "parallel": 1,
                   "reasoning_budget": -1}
CASES = [(k.name, k.case) for k in KINDS if k.case is not None and k.needs_server]
UNITS = {metric: shown for k in KINDS for metric, shown in k.figures.items()}


@dataclass(frozen=True)
class Finding:
    host: str
    model: str
    quant: str
    case: str  # the use case's title
    metric: str
    higher_is_better: bool
    best: str  # variant name
    best_flags: str
    best_value: float
    best_bounds: tuple[float | None, float | None]
    base: str
    base_value: float
    base_bounds: tuple[float | None, float | None]
    variants: int  # how many variants ran this use case

    @property
    def gain_pct(self) -> float:
        """How much better the best is than the baseline, in percent of the baseline."""
        change = (self.best_value - self.base_value) / self.base_value * 100 if self.base_value else 0.0
        return change if self.higher_is_better else -change

    @property
    def measurable(self) -> bool:
        """The intervals do not overlap (without intervals, any difference counts)."""
        (b_low, b_high), (r_low, r_high) = self.best_bounds, self.base_bounds
        if None in (b_low, b_high, r_low, r_high):
            return self.best_value != self.base_value
        return b_low > r_high if self.higher_is_better else b_high < r_low

    def sentence(self) -> str:
        name = f"{self.model} {self.quant}"
        shown = UNITS.get(self.metric)
        unit = (shown.unit.replace("{}", "").strip() or shown.suffix) if shown else self.metric
        figure = f"{_fmt(self.best_value)}{_bounds(self.best_bounds)} {unit}"
        if self.best == self.base:
            return (f"{name}, {self.case}: the baseline {self.best} is best of {self.variants} variants "
                    f"({figure}); run with {self.best_flags}")
        versus = f"{self.base}'s {_fmt(self.base_value)}{_bounds(self.base_bounds)}"
        gain = (f"{self.gain_pct:+.0f}% over {versus}" if self.measurable else
                f"no measurable difference from {versus} (95% intervals overlap)")
        return f"{name}, {self.case}: {self.best} is best of {self.variants} variants ({figure}), {gain}; " \
               f"run with {self.best_flags}"

    def as_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "gain_pct": round(self.gain_pct, 1), "measurable": self.measurable,
                "sentence": self.sentence()}


def findings(configs: pl.DataFrame, spec: Spec, host_info: dict[str, dict]) -> list[Finding]:
    """One finding per (host, model, quant, engine, use case) measured under two or more variants of
    that engine (engines against each other: `llmspec.report.engines`)."""
    if spec.server.sweep is None or not configs.height:
        return []
    out = []
    swept = configs.filter(pl.col("variant") != "")
    engine_of = {n: (v.engine if (v := variants.named(spec.server, n)) else spec.server.engine)
                 for n in swept["variant"].unique().to_list()}
    swept = swept.with_columns(pl.col("variant").replace_strict(engine_of, default=spec.server.engine)
                               .alias("engine"))
    for (host, model, quant, _), rows in swept.group_by(["host", "model", "quant", "engine"], maintain_order=True):
        cores = host_info.get(host, {}).get("cores_physical")
        base = baseline(spec, rows["variant"].to_list(), cores)
        for key, case in CASES:
            column, descending = case.order[0]
            ok = rows.filter((pl.col(f"{key}_status") == "ok") & pl.col(column).is_not_null())
            if ok.height < 2 or base not in ok["variant"].to_list():
                continue
            ranked = ok.sort(column, descending=descending, maintain_order=True).to_dicts()
            best, ref = ranked[0], next(r for r in ranked if r["variant"] == base)
            found = variants.named(spec.server, best["variant"])
            out.append(Finding(host, model, quant, case.short, column, descending, best["variant"],
                               found.flags() if found else "", best[column], _interval(best, column),
                               base, ref[column], _interval(ref, column), ok.height))
    return out


def baseline(spec: Spec, names: list[str], cores: int | None) -> str:
    """The variant nearest the unswept settings: most swept keys equal to the [server] value (or
    llama-server's default), ties to the first in run order."""
    wanted = {key: getattr(spec.server, key) for key in variants.NAME_PARTS}
    wanted = {k: v if v is not None else SERVER_DEFAULTS.get(k) for k, v in wanted.items()}
    wanted["threads"] = spec.server.threads or cores
    found = [(v, variants.named(spec.server, v)) for v in names]
    score = {name: sum(wanted.get(k) == value for k, value in variant.values) if variant else -1
             for name, variant in found}
    return max(names, key=lambda name: (score[name], -names.index(name)))


def host_info(frame: pl.DataFrame) -> dict[str, dict]:
    pairs = frame.select("host", "host_info").unique("host").iter_rows() if frame.height else ()
    return {host: json.loads(info or "{}") for host, info in pairs}


def _interval(row: dict[str, Any], column: str) -> tuple[float | None, float | None]:
    low, high = bound_names(column)
    return row.get(low), row.get(high)


def _bounds(bounds: tuple[float | None, float | None]) -> str:
    low, high = bounds
    return f" ({_fmt(low)}-{_fmt(high)})" if low is not None and high is not None else ""


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
