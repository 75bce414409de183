"""The fleet: which machine should serve which model, when results of several hosts are present.

A team with a dozen machines wants one answer, not a matrix per box. Three parts, all from the
same configs table and recommendations the rest of the report uses (so they agree with it):

- hosts side by side: CPU, cores, memory, GPU and llama-server version, as their results recorded;
- per use case, the best host and configuration across the fleet (the recommendations' first
  line), with the 95 % interval of its headline figure;
- the assignment: for each model, the host that serves it best within the thresholds (worst
  rating over the performance profiles it ran no worse than Acceptable; ties by the first
  performance use case's headline figure, then by smaller memory), and the hosts that cannot
  run it, with the reason their results give (a memory pre-flight skip, a load failure).

- this host vs the fleet: for each model file (sha256) that this host and another measured with
  the same server settings and profile, this host's decode speed (`tokens_per_s`) over the
  other's, with a 95 % interval from the two stored intervals (the delta method on the log
  scale, llmspec.stats.ratio_interval: the hosts measured independently; the samples are not
  read). "This host" is the machine the report is made on, or `llmspec fleet --host`. With more
  than PER_HOST other hosts on a file, one ratio against their median host instead, whose
  interval is the distribution-free median interval over those hosts' figures: how typical a
  host is, which at fleet scale says more than hundreds of pairs.

Files are matched across hosts by the model file's sha256, not its name: a host whose file of the
same name differs is said to, since its figures are then not of the same file.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from llmspec.report.frame import hosts as frame_hosts
from llmspec.report.recommend import CASES, PERFORMANCE, RANK, SHOW
from llmspec.results import bound_names
from llmspec.stats import RATIO_METHOD, median_interval, ratio_interval
from llmspec.text import format_table

WITHIN = RANK["Acceptable"]  # the worst rating that is still within the thresholds
NO_GPU = "no GPU"
SPEED = "tokens_per_s"  # the headline figure compared across hosts: decode speed, in every profile that has it
PER_HOST = 6  # up to this many other hosts on a file, one ratio each; beyond, one against their median


@dataclass(frozen=True)
class Assignment:
    model: str
    host: str | None  # None: no host serves it within the thresholds
    config: str = ""
    rating: str = ""
    figure: str = ""  # the headline figure with its 95 % interval
    same_file_on: tuple[str, ...] = ()  # other hosts that measured the same file (sha256)
    cannot: tuple[tuple[str, str], ...] = ()  # (host, why) of hosts that cannot run it
    others: tuple[tuple[str, str], ...] = ()  # (host, what) of hosts that run it, less well or not within


@dataclass(frozen=True)
class Versus:
    """This host's decode speed on one model file over another host's, on the same settings and profile."""

    model: str  # as this host's result names it
    config: str
    profile: str
    other: str  # the other host
    mine: str  # each host's figure with its 95 % interval
    theirs: str
    ratio: float
    low: float | None = None  # the ratio's 95 % interval; None when either host stored none
    high: float | None = None

    @property
    def shown(self) -> str:
        interval = f" (95 % {_times(self.low)}-{_times(self.high)})" if self.low is not None else \
            " (no interval: a host stored none)"
        return f"{_times(self.ratio)}x{interval}"


@dataclass(frozen=True)
class Fleet:
    hosts: list[dict[str, Any]]
    best: list[dict[str, str]]  # per use case: title, host, model, config, rating, figures, or note
    assignment: list[Assignment] = field(default_factory=list)
    me: str | None = None  # "this host": the host the versus table compares with the others
    versus: list[Versus] = field(default_factory=list)
    method: str = RATIO_METHOD

    def text(self) -> str:
        out = ["FLEET: " + f"{len(self.hosts)} hosts", "",
               format_table([("host", "CPU", "cores", "memory", "GPU", "llama-server"),
                             *((h["id"], h["cpu"], h["cores"], h["memory"], h["gpu"], h["server"])
                               for h in self.hosts)]), "", "Best per use case:"]
        out += [f"  {b['title']}: " + (f"{b['model']} {b['config']} on {b['host']} ({b['rating']}, {b['figures']})"
                                      if b.get("host") else b["note"]) for b in self.best]
        rows = [("model", "serve on", "config", "rating", "figure", "other hosts", "cannot run it")]
        for a in self.assignment:
            cannot = "; ".join(f"{h}: {why}" for h, why in a.cannot) or "-"
            others = "; ".join(f"{h}: {what}" for h, what in a.others) or "-"
            rows.append((a.model, a.host or "none within the thresholds", a.config or "-", a.rating or "-",
                         a.figure or "-", others, cannot))
        return "\n".join([*out, "", "Assignment (each model on the host that serves it best within the thresholds):",
                          format_table(rows), "", *self.versus_text()])

    def versus_text(self) -> list[str]:
        if self.me is None:
            return ["This host has no results of this spec: no comparison with the fleet (--host HOST picks one)."]
        head = f"This host ({self.me}) vs the fleet: decode tokens/s on the same model file (sha256), " \
               f"this host / the other (beyond {PER_HOST} others: their median host; 95 % interval: {self.method}):"
        if not self.versus:
            return [head, "  no model file measured both here and on another host"]
        rows = [("model", "config", "profile", "other host", "this host", "other", "ratio")]
        rows += [(v.model, v.config, v.profile, v.other, v.mine, v.theirs, v.shown) for v in self.versus]
        return [head, format_table(rows)]


def fleet(frame: pl.DataFrame, table: pl.DataFrame, recs: Any, me: str | None = None) -> Fleet | None:
    """The fleet section of a report over `frame` (a `for_spec` frame), or None for one host.
    `me`: the host to set against the others (default: this machine, when it has results here)."""
    if frame.height == 0 or frame["host"].n_unique() < 2:
        return None
    if me is None:
        from llmspec.machine.host import host_id

        me = host_id()
    me = me if me in set(frame["host"].to_list()) else None
    return Fleet(_hosts(frame), _best(recs, table), _assignment(frame, table), me,
                 _versus(frame, me) if me else [])


def _versus(frame: pl.DataFrame, me: str) -> list[Versus]:
    """`me`'s decode speed over each other host's, per model file (sha256), settings variant and profile."""
    low, high = bound_names(SPEED)
    if SPEED not in frame.columns or "model_sha256" not in frame.columns:
        return []
    cols = [c for c in ("host", "model", "config", "variant", "profile", "model_sha256", SPEED, low, high)
            if c in frame.columns]
    rows = frame.filter((pl.col("status") == "ok") & (pl.col(SPEED) > 0) & pl.col("model_sha256").is_not_null()
                        ).select(cols).to_dicts()
    measured: dict[tuple, dict[str, dict[str, Any]]] = {}
    for r in rows:
        measured.setdefault((r["model_sha256"], r["variant"], r["profile"]), {}).setdefault(r["host"], r)
    out = []
    for hosts in measured.values():
        mine = hosts.get(me)
        if mine is None:
            continue
        others = sorted((h, r) for h, r in hosts.items() if h != me)
        if len(others) > PER_HOST:  # a fleet: one line against its median host, not hundreds
            figures = [r[SPEED] for _, r in others]
            spread = median_interval(figures)
            others = [(f"fleet median ({len(others)} hosts)", {SPEED: statistics.median(figures),
                                                                low: spread.low if spread else None,
                                                                high: spread.high if spread else None})]
        for other, theirs in others:
            found = ratio_interval(mine[SPEED], (mine.get(low), mine.get(high)),
                                   theirs[SPEED], (theirs.get(low), theirs.get(high)))
            out.append(Versus(mine["model"], mine["config"], mine["profile"], other, _figure(mine, SPEED),
                              _figure(theirs, SPEED), mine[SPEED] / theirs[SPEED],
                              found.low if found else None, found.high if found else None))
    return sorted(out, key=lambda v: (v.model, v.config, v.profile, v.other))


def _hosts(frame: pl.DataFrame) -> list[dict[str, Any]]:
    versions = {h: sorted({v for v in vs if v}) for h, vs in
                frame.group_by("host").agg(pl.col("server_version").unique()).iter_rows()}
    found = []
    for h in frame_hosts(frame):
        gpu = h.get("gpu")
        gpu = (json.dumps(gpu) if not isinstance(gpu, str) else NO_GPU if not gpu or gpu.lower().startswith("no ")
               else gpu) if gpu is not None else "unknown"
        cores = h.get("cores_logical")
        physical = h.get("cores_physical")
        found.append({"id": h["id"], "cpu": h.get("cpu") or "unknown", "gpu": gpu,
                      "cores": "unknown" if cores is None else f"{cores}" + (f" ({physical} physical)"
                                                                           if physical and physical != cores else ""),
                      "memory": f"{h['ram_gb']} GB" if h.get("ram_gb") is not None else "unknown",
                      "server": ", ".join(versions.get(h["id"], [])) or "unknown"})
    return found


def _best(recs: Any, table: pl.DataFrame) -> list[dict[str, str]]:
    best = []
    for case in (c for c in recs.use_cases if c.lines):  # a use case the spec does not measure is no question here
        line = next((x for x in case.lines if x.mark != "fail"), None)
        if line is None:
            best.append({"title": case.title, "note": case.note or "nothing within the thresholds"})
        else:
            row = table.filter((pl.col("host") == line.host) & (pl.col("model") == line.model)
                               & (pl.col("quant") == line.quant) & (pl.col("variant") == line.variant)).to_dicts()
            headline = _figure(row[0], CASES[case.key].order[0][0]) if row else ""
            best.append({"title": case.title, "host": line.host, "model": line.model, "config": line.config,
                         "rating": line.rating or "measured, not rated",
                         "figures": "; ".join(p for p in (headline, line.figures) if p)})
    return best


def _assignment(frame: pl.DataFrame, table: pl.DataFrame) -> list[Assignment]:
    files = _files(frame)
    headline = next((CASES[p].order[0] for p in PERFORMANCE if p in CASES and f"{p}_status" in table.columns
                     and table[f"{p}_status"].null_count() < table.height), None)
    ranks = [pl.when(pl.col(f"{p}_status") == "error").then(RANK["Failed"])
             .otherwise(pl.col(f"{p}_rating").replace_strict(RANK, default=None)) for p in PERFORMANCE]
    ran = pl.any_horizontal([pl.col(f"{p}_status") == "ok" for p in PERFORMANCE])
    order = [("_worst", False), *([headline] if headline else []), ("peak_memory_gb", False)]
    ranked = table.with_columns(pl.max_horizontal(ranks).alias("_worst"), ran.fill_null(False).alias("_ran")).sort(
        [c for c, _ in order], descending=[d for _, d in order], nulls_last=True, maintain_order=True)
    all_hosts = sorted(frame["host"].unique().to_list())
    read = {"model", "host", "config", "_ran", "_worst", *(f"{p}_{what}" for p in PERFORMANCE for what in
                                                          ("status", "reason")),
            *((headline[0], *bound_names(headline[0])) if headline else ())}
    ranked = ranked.select(c for c in ranked.columns if c in read)  # rows as dicts: only what is read below
    out = []
    for model in ranked["model"].unique(maintain_order=True).to_list():
        rows = ranked.filter(pl.col("model") == model).to_dicts()
        within = [r for r in rows if r["_ran"] and r["_worst"] is not None and r["_worst"] <= WITHIN]
        pick = within[0] if within else None
        cannot, others = [], []
        by_host: dict[str, list[dict[str, Any]]] = {}
        for r in rows:  # in ranked order, as each host's own rows were
            by_host.setdefault(r["host"], []).append(r)
        for host in all_hosts:
            mine = by_host.get(host, [])
            if not mine:
                cannot.append((host, "not measured there"))
            elif not any(r["_ran"] for r in mine):
                cannot.append((host, _why(mine[0])))
            elif pick is None or host != pick["host"]:
                top = next(r for r in mine if r["_ran"])
                within_here = top["_worst"] is not None and top["_worst"] <= WITHIN
                theirs, picked = files.get((host, model, top["config"])), pick and files.get(
                    (pick["host"], model, pick["config"]))
                other_file = " (another file: its sha256 differs)" if theirs and picked and theirs != picked and \
                    top["config"] == pick["config"] else ""
                others.append((host, f"{top['config']} {_label(top['_worst'])}"
                                     f"{'' if within_here else ' (not within)'}{other_file}"))
        if pick is None:
            out.append(Assignment(model, None, cannot=tuple(cannot), others=tuple(others)))
            continue
        sha = files.get((pick["host"], model, pick["config"]))
        same = tuple(sorted({h for (h, m, _), s in files.items()
                             if m == model and sha and s == sha and h != pick["host"]}))
        out.append(Assignment(model, pick["host"], pick["config"], _label(pick["_worst"]),
                              _figure(pick, headline[0]) if headline else "", same, tuple(cannot), tuple(others)))
    return out


def _files(frame: pl.DataFrame) -> dict[tuple[str, str, str], str]:
    """(host, model, config) -> the model file's sha256, as the results recorded it."""
    if "model_sha256" not in frame.columns:
        return {}
    pairs = frame.filter(pl.col("model_sha256").is_not_null()).select("host", "model", "config", "model_sha256")
    return {(h, m, c): s for h, m, c, s in pairs.unique(["host", "model", "config"]).iter_rows()}


def _why(row: dict[str, Any]) -> str:
    reasons = [row.get(f"{p}_reason") for p in PERFORMANCE if row.get(f"{p}_reason")]
    status = next((row[f"{p}_status"] for p in PERFORMANCE if row.get(f"{p}_status")), "not run")
    text = reasons[0] if reasons else status
    return text if len(text) <= 160 else text[:157] + "..."


def _label(rank: int | None) -> str:
    return next((name for name, r in RANK.items() if r == rank), "measured, not rated")


def _figure(row: dict[str, Any], column: str) -> str:
    value = row.get(column)
    if value is None:
        return ""
    low, high = (row.get(b) for b in bound_names(column))
    unit = SHOW[column].unit if column in SHOW else "{}"
    number = _num(value) + (f" (95 % {_num(low)}-{_num(high)})" if low is not None and high is not None else "")
    return unit.format(number)


def _num(value: float) -> str:
    """Three significant digits, without an exponent: 8,554 / 293 / 55.2 / 0.457."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _times(value: float | None) -> str:
    """A ratio to three significant digits, trailing zeros kept (2.00, 0.250): it reads as a factor."""
    return "-" if value is None else f"{value:.0f}" if value >= 100 else f"{value:#.3g}"
