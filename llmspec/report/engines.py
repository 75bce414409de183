"""Engines: which engine runs a model file faster, per use case, and by how much beyond the noise.

A spec that sweeps `engine` (or names one per variant) measures the same file under several
engines with every other setting equal. For each (host, model, quant, other settings) and each use
case measured on two or more engines, the engines are ranked on the use case's headline figure;
the leader is "ahead" only when its 95 % interval and the runner-up's do not overlap, and the
sentence gives the margin and the command line that runs the leader. Pure: a `configs` table in,
findings out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from llmspec.engines import engine_named
from llmspec.engines.base import ServerArgs
from llmspec.plan import variants
from llmspec.report.settings import CASES, UNITS, _bounds, _fmt, _interval
from llmspec.spec import Spec
from llmspec.stats import apart


@dataclass(frozen=True)
class EngineFinding:
    host: str
    model: str
    quant: str
    settings: str  # the variant's other settings ("" when only the engine differs)
    case: str
    metric: str
    higher_is_better: bool
    ranked: tuple[tuple[str, float, tuple[float | None, float | None]], ...]  # (engine, figure, bounds), best first
    command: str  # how to run the leader by hand

    @property
    def leader(self) -> str:
        return self.ranked[0][0]

    @property
    def ahead(self) -> bool | None:
        """The leader's interval lies clear of the runner-up's (None: an interval is missing)."""
        return apart(self.ranked[0][2], self.ranked[1][2])

    @property
    def margin_pct(self) -> float:
        first, second = self.ranked[0][1], self.ranked[1][1]
        change = (first - second) / second * 100 if second else 0.0
        return change if self.higher_is_better else -change

    def sentence(self) -> str:
        shown = UNITS.get(self.metric)
        unit = (shown.unit.replace("{}", "").strip() or shown.suffix) if shown else self.metric
        figures = ", ".join(f"{name} {_fmt(value)}{_bounds(bounds)} {unit}" for name, value, bounds in self.ranked)
        name = f"{self.model} {self.quant}{f' ({self.settings})' if self.settings else ''}, {self.case}"
        way = "higher" if self.higher_is_better else "lower"
        if self.ahead:
            verdict = f"{self.leader} is ahead beyond the noise, {self.margin_pct:.0f}% {way}"
        elif self.ahead is None:
            verdict = (f"{self.leader} leads, {self.margin_pct:.0f}% {way}, without intervals to say whether "
                       "beyond the noise")
        else:
            verdict = "no measurable difference (95% intervals overlap)"
        return f"{name}: {verdict}: {figures}; run with: {self.command}"

    def as_dict(self) -> dict[str, Any]:
        return {"host": self.host, "model": self.model, "quant": self.quant, "settings": self.settings,
                "case": self.case, "metric": self.metric, "leader": self.leader, "ahead": self.ahead,
                "margin_pct": round(self.margin_pct, 1), "command": self.command, "sentence": self.sentence(),
                "engines": [{"engine": e, "value": v, "low": b[0], "high": b[1]} for e, v, b in self.ranked]}


def findings(configs: pl.DataFrame, spec: Spec, host_info: dict[str, dict]) -> list[EngineFinding]:
    """One finding per (host, model, quant, other settings, use case) measured on two or more engines."""
    if not configs.height:
        return []
    out = []
    named = {name: variants.named(spec.server, name) for name in configs["variant"].unique().to_list()}
    engines = {name: (v.engine if v else spec.server.engine) for name, v in named.items()}
    if len(set(engines.values())) < 2:
        return []
    rows = configs.with_columns(pl.col("variant").replace_strict(engines, default=spec.server.engine).alias("engine"),
                                pl.col("variant").replace_strict({n: _rest(v) for n, v in named.items()},
                                                                 default="").alias("settings"))
    for (host, model, quant, settings), group in rows.group_by(["host", "model", "quant", "settings"],
                                                                maintain_order=True):
        cores = host_info.get(host, {}).get("cores_physical")
        for key, case in CASES:
            found = _deciding(group, key, case.order)
            if found is None:
                continue
            column, descending, ok = found
            ranked = ok.sort(column, descending=descending, maintain_order=True).unique("engine", keep="first",
                                                                                          maintain_order=True)
            top = ranked.to_dicts()
            out.append(EngineFinding(host, model, quant, settings, case.short, column, descending,
                                     tuple((r["engine"], r[column], _interval(r, column)) for r in top),
                                     _command(spec, named.get(top[0]["variant"]), model, quant, cores)))
    return out


def _deciding(group: pl.DataFrame, key: str, order) -> tuple[str, bool, pl.DataFrame] | None:
    """The use case's first ranking figure on which the engines differ (long context: the context
    reached, else the time to load it), with the rows that have it; None below two engines."""
    found = None
    for column, descending in order:
        ok = group.filter((pl.col(f"{key}_status") == "ok") & pl.col(column).is_not_null())
        if ok["engine"].n_unique() < 2:
            continue
        found = (column, descending, ok)
        if ok[column].n_unique() > 1:
            break
    return found


def _rest(variant: variants.Variant | None) -> str:
    """The variant's settings other than the engine, as its name parts (what engines are compared under)."""
    if variant is None:
        return ""
    return "-".join(variants.NAME_PARTS[key](value) for key, value in variant.values if key != "engine")


def _command(spec: Spec, variant: variants.Variant | None, model: str, quant: str, cores: int | None) -> str:
    """The leader's command line as a user would type it (program name, the model's file name)."""
    server = variant.server if variant else spec.server
    found = engine_named(server.engine)
    args = ServerArgs(server.ctx_size, server.threads or cores or 1, server.parallel, tuple(server.extra_args),
                      server.tuned(), server.engine)
    command = found.command(Path(found.program), Path(f"{model}-{quant}.gguf"), "127.0.0.1", 8080, args)
    return " ".join(command)
