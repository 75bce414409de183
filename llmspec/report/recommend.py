"""Recommendations: "RECOMMENDED CONFIGURATIONS" (README, "Reports"), from the configs table.

A reader wants an answer ("run gemma Q4_K_M for chat"), not a matrix. The rules:

- Use cases are the profiles a person picks a model for: those whose `KIND` declares a `case`
  (interactive, long_context, batch, quality and load). Stress judges the machine, not a use case.
- Within a use case, configurations rank by rating (Excellent, Good, Acceptable, Poor, measured
  but not rated, Failed, then skipped or error), then by the use case's headline figure (fastest;
  longest context, then quickest load; most documents per hour; best quality score; lowest p90
  latency), then by smaller peak memory. Several hosts rank together and lines name the host.
- ✓ Excellent or Good, ⚠ Acceptable, Poor or not rated, ✗ Failed, skipped or error. At most
  MAX_LINES ✓/⚠ lines are shown; ✗ lines with the same reason collapse into one.
- Overall best, per host: the best worst-rating over the performance profiles the configuration
  ran (interactive, long_context, batch, load; an error counts as Failed, a skipped profile as not
  run) and its divergence from the reference quant where measured (a quant that loses too much
  is no all-rounder, however fast); ties go to higher quality, higher cost-benefit score, smaller
  memory, higher efficiency.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import polars as pl

from llmspec.plan import variants
from llmspec.plan.cells import split_config
from llmspec.profiles import KINDS, role_name
from llmspec.profiles.base import Figure
from llmspec.rating import Check, interpret
from llmspec.report.configs import PAIRED, loss_statement, significant_loss
from llmspec.report.engines import EngineFinding
from llmspec.report.engines import findings as engine_findings
from llmspec.report.settings import Finding, findings
from llmspec.results import bound_names
from llmspec.spec import Spec

MAX_LINES = 3
SYMBOLS = {"ok": "✓", "warn": "⚠", "fail": "✗"}
MARK_OF = {"Excellent": "ok", "Good": "ok", "Acceptable": "warn", "Poor": "warn", "Failed": "fail"}
RANK = {"Excellent": 0, "Good": 1, "Acceptable": 2, "Poor": 3, "Failed": 5}  # 4: measured, not rated
NOT_OK_RANK = 6  # skipped or error
ROW = "_row_number"  # a configs row's position, by which a use case orders the rows it already has
REFERENCE = "the most precise quant measured"
DIVERGENCE_REFERENCE = "the divergence reference"  # what a quality reference says instead of "-0 pts vs itself"
# Use cases, in registry order: profiles with a `case` (stress judges the machine, not a use case).
CASES = {k.name: k.case for k in KINDS if k.case is not None}
PERFORMANCE = tuple(k.name for k in KINDS if k.performance and not k.last)
# What the overall pick's worst rating is taken over: the performance profiles and the accuracy check.
OVERALL = (*PERFORMANCE, *(k.name for k in KINDS if "overall" in k.roles))
# The use cases whose lines add the quiz's retention, the share kept against the reference, the capacity.
QUIZ, REFERENCE_LOGITS, LEVELS = role_name("quiz"), role_name("reference_logits"), role_name("user_levels")
# How a figure reads, from each profile's `figures`, plus the columns the report derives.
SHOW: dict[str, Figure] = {
    **{metric: shown for k in KINDS for metric, shown in k.figures.items()},
    "peak_memory_gb": Figure("{} GB", "memory", "RAM"),
}
TRANSLATE_AS = {"peak_memory_gb": "peak_rss_gb"}  # configs column -> rating.interpret's metric name
PROFILE_FIGURES = {k.name: tuple(k.figures) for k in KINDS}  # a joined profile's figures, for its meaning
# Quality evidence (`ProfileKind.evidence`, `.paired`): what makes a quant broken, whatever its speed.
EVIDENCE = {k.name: k.evidence for k in KINDS if k.evidence}


# Skip and error reasons, shortened so that lines with the same cause collapse into one.
SHORT_REASONS = (
    ("needs about", "exceeds memory"), ("predicted peak memory", "exceeds memory (predicted)"),
    ("the smaller ", "a smaller model already failed at this quant"),
    ("all failed the interactive thresholds", "its Q4-Q6 quants already failed"),
    ("did not load", "did not load"), ("failed to load", "did not load"),
)


@dataclass(frozen=True)
class Line:
    mark: str  # "ok" | "warn" | "fail"
    host: str
    model: str
    quant: str
    rating: str | None
    figures: str  # the numbers behind the line, with units
    why: str  # plain language: why recommended / what is borderline / why not
    also: tuple[tuple[str, str, str], ...] = ()  # (host, model, config) of ✗ lines collapsed into this one
    reasons: tuple[str, ...] = ()  # the overall pick's bullets (`why` joins them)
    variant: str = ""  # the server-setting variant ("" without a sweep)
    flags: str = ""  # the llama-server flags that set it, as a user types them

    @property
    def config(self) -> str:
        return f"{self.quant}+{self.variant}" if self.variant else self.quant

    @property
    def symbol(self) -> str:
        return SYMBOLS[self.mark]

    def label(self, with_host: bool = False) -> str:
        """"gemma Q8_0", or every collapsed configuration: "gemma Q8_0, SmolLM2 F16, 3 more"."""
        names = [f"{m} {q}{f' on {h}' if with_host else ''}" for h, m, q in ((self.host, self.model, self.config),
                                                                             *self.also)]
        return ", ".join(names if len(names) <= 4 else names[:3] + [f"{len(names) - 3} more"])

    def as_dict(self) -> dict[str, Any]:
        also = [{"host": h, "model": m, "quant": quant, **({"variant": variant} if variant else {})}
                for h, m, q in self.also for quant, variant in [split_config(q)]]
        return {**self.__dict__, "symbol": self.symbol, "also": also, "reasons": list(self.reasons)}


@dataclass(frozen=True)
class UseCase:
    key: str
    title: str
    lines: tuple[Line, ...]
    note: str  # why there are no lines, or nothing to recommend

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "title": self.title, "note": self.note, "lines": [x.as_dict() for x in self.lines]}


@dataclass(frozen=True)
class Recommendations:
    use_cases: tuple[UseCase, ...]
    overall: tuple[Line, ...]  # one per host
    settings: tuple[Finding, ...] = ()  # the best server-setting variant per model file and use case
    engines: tuple[EngineFinding, ...] = ()  # which engine is ahead per model file and use case

    def text(self) -> str:
        """The console block; with more than one host every line names its host."""
        lines = [*self.overall, *(line for case in self.use_cases for line in case.lines)]
        if not lines:
            return "RECOMMENDED CONFIGURATIONS: nothing measured yet."
        many = len({host for line in lines for host in (line.host, *(h for h, _, _ in line.also))}) > 1
        out = ["RECOMMENDED CONFIGURATIONS:"]
        for case in (c for c in self.use_cases if c.lines):
            out += ["", f"{case.title}:" + (f" {case.note}" if case.note else "")]
            out += [_render(line, many) for line in case.lines]
        empty: dict[str, list[str]] = {}  # use cases without lines share one line per note
        for case in (c for c in self.use_cases if not c.lines):
            empty.setdefault(case.note, []).append(case.title)
        out += [""] * bool(empty) + [f"{note[:1].upper()}{note[1:]}: {', '.join(t)}" for note, t in empty.items()]
        for line in self.overall:
            head = ", ".join(p for p in (line.rating, line.figures) if p)
            out += ["", f"Overall best{f' on {line.host}' if many else ''}: {line.symbol} {line.model} {line.config} "
                        f"({head})", *(f"  - {reason}" for reason in line.reasons)]
        if self.settings:
            out += ["", "Server settings (best variant per use case):"]
            out += [f"  - {found.sentence()}{f' on {found.host}' if many else ''}" for found in self.settings]
        if self.engines:
            out += ["", "Engines (the same file on each engine, per use case):"]
            out += [f"  - {found.sentence()}{f' on {found.host}' if many else ''}" for found in self.engines]
        return "\n".join(out)

    def as_dict(self) -> dict[str, Any]:
        return {"use_cases": [c.as_dict() for c in self.use_cases], "overall": [x.as_dict() for x in self.overall],
                "settings": [f.as_dict() for f in self.settings], "engines": [f.as_dict() for f in self.engines]}


def recommend(configs: pl.DataFrame, spec: Spec, host_info: dict[str, dict] | None = None) -> Recommendations:
    """Recommendations from a `configs.configs` table (ratings already computed for `spec`);
    `host_info` (each host's recorded hardware) places the server-setting baseline."""
    rows = configs.to_dicts()  # once: each use case orders these (2,100 wide rows at 420 hosts)
    by_host: dict[str, list[dict[str, Any]]] = {}
    for row in _all_rounders(configs, rows):  # ranked once for all hosts: 420 hosts each ranked alone took 1.4 s
        by_host.setdefault(row["host"], []).append(row)
    broken: dict[tuple, tuple[str, ...]] = {}  # per configuration, shared by the use cases and picks that rank it
    overall = (_pick(by_host.get(host, []), spec, broken) for host in configs["host"].unique(maintain_order=True))
    return Recommendations(tuple(_use_case(key, configs, rows, spec, broken) for key in CASES),
                           tuple(x for x in overall if x),
                           tuple(findings(configs, spec, host_info or {})),
                           tuple(engine_findings(configs, spec, host_info or {})))


def _use_case(key: str, configs: pl.DataFrame, table: list[dict[str, Any]], spec: Spec,
              broken: dict[tuple, tuple[str, ...]]) -> UseCase:
    """`table`: `configs` as dicts, which the use case ranks by row number. `broken`: each
    configuration's `_broken` reasons, filled as they are first needed: five use cases rank the
    same configurations (10,500 rows, each parsing its checks, at 420 hosts)."""
    target = getattr(spec.thresholds, role_name("context_sizes")).target_context_tokens
    title = CASES[key].title.format(tokens=f"{target // 1024}k" if target % 1024 == 0 else f"{target:,}")
    if getattr(spec.profiles, key) is None:
        return UseCase(key, title, (), "not measured in this spec")
    ranked = [(i, rank) for i, rank in _ranked(configs.with_row_index(ROW), key).select(ROW, "_rank").iter_rows()
              if rank is not None]
    if not ranked:
        return UseCase(key, title, (), "no results yet")
    # Rows are copied (with their rank) only as they are read: the lines shown need the first few.
    rated = ((i, rank) for i, rank in ranked if rank < RANK["Failed"])
    if key in PERFORMANCE:  # a fast quant whose answers are broken goes below every sound one, saying why
        sound = _untied(({**table[i], "_rank": rank} for i, rank in rated if not _broken_once(table[i], broken)),
                        key, MAX_LINES)
        rows = sound + (_untied(({**table[i], "_rank": rank, "_broken": why} for i, rank in ranked
                                 if rank < RANK["Failed"] and (why := _broken_once(table[i], broken))),
                                key, MAX_LINES - len(sound)) if len(sound) < MAX_LINES else [])
    else:
        rows = _untied(({**table[i], "_rank": rank} for i, rank in rated), key, MAX_LINES)
    shown = [_line(key, row, spec) for row in rows[:MAX_LINES]]
    failed = [_line(key, {**table[i], "_rank": rank}, spec) for i, rank in ranked if rank >= RANK["Failed"]]
    note = "" if shown else "nothing to recommend: every configuration failed or was skipped"
    return UseCase(key, title, tuple(shown + _collapsed(failed)), note)


def _untied(rows: Iterable[dict[str, Any]], key: str, wanted: int | None = None) -> list[dict[str, Any]]:
    """Rows of one rating whose headline figures' 95 % intervals overlap are not told apart by that
    figure: within such a group the smaller peak memory goes first, and the lines say why.

    Groups form in ranked order: a row joins the group of the row heading it when it has the same
    rating and its interval overlaps the head's. Rows without an interval keep their rank.
    `wanted`: only the first that many rows are needed (the lines shown): the groups that hold
    them, not the 2,100 rows of 420 hosts."""
    column, _ = CASES[key].order[0]
    low, high = bound_names(column)
    groups: list[list[dict[str, Any]]] = []
    done = 0  # rows in the groups before the last one
    for row in rows:
        head = groups[-1][0] if groups else None
        if head is not None and head["_rank"] == row["_rank"] and _overlap(head, row, low, high):
            groups[-1].append(row)
        else:
            done += len(groups[-1]) if groups else 0
            if wanted is not None and done >= wanted:
                break
            groups.append([row])
    out = []
    name = SHOW[column].name if column in SHOW else column
    for group in groups:
        if len(group) > 1:
            group.sort(key=lambda r: (r["peak_memory_gb"] is None, r["peak_memory_gb"] or 0.0))
            best = f"{group[0]['model']} {group[0]['config']}"
            others = ", ".join(f"{r['model']} {r['config']}" for r in group[1:])
            group[0] = {**group[0], "_tie": f"no measurable {name} difference from {others} "
                                            f"(95% intervals overlap): ahead on memory"}
            group[1:] = [{**r, "_tie": f"no measurable {name} difference from {best} (95% intervals overlap)"}
                         for r in group[1:]]
        out += group
    return out


def _overlap(a: dict[str, Any], b: dict[str, Any], low: str, high: str) -> bool:
    bounds = (a.get(low), a.get(high), b.get(low), b.get(high))
    return None not in bounds and bounds[0] <= bounds[3] and bounds[2] <= bounds[1]


def _ranked(configs: pl.DataFrame, key: str) -> pl.DataFrame:
    status, rating = pl.col(f"{key}_status"), pl.col(f"{key}_rating")
    own = rating.replace_strict(RANK, default=4)
    joined = [pl.when(pl.col(f"{p}_status") == "ok").then(pl.col(f"{p}_rating").replace_strict(RANK, default=None))
              for p in CASES[key].joins]
    rank = pl.when(status != "ok").then(NOT_OK_RANK).otherwise(pl.max_horizontal(own, *joined) if joined else own)
    order = CASES[key].order + (("peak_memory_gb", False),)
    return configs.filter(status.is_not_null()).with_columns(rank.alias("_rank")).sort(
        ["_rank", *(c for c, _ in order)], descending=[False, *(d for _, d in order)], nulls_last=True,
        maintain_order=True)


def _line(key: str, row: dict[str, Any], spec: Spec) -> Line:
    where, status = (row["host"], row["model"], row["quant"]), row[f"{key}_status"]
    setting = {"variant": row["variant"], "flags": flags(spec, row["variant"])}
    if status != "ok":
        reason = _short(row[f"{key}_reason"] or status)
        return Line("fail", *where, None, "", reason if status == "skipped" else f"error: {reason}", **setting)
    label = _label(key, row)
    mark = MARK_OF.get(label, "warn")
    figures = [_figure(m, row[m]) for m in CASES[key].figures if row[m] is not None]
    retention, lead = _retention(row, key) if key in PAIRED else "", ""  # its own items against the reference
    if retention == REFERENCE:
        lead = REFERENCE if mark != "fail" else ""  # ✗ lines collapse by cause: no extra words
    elif retention:
        figures.append(retention)
    kept = _kept(row, spec) if REFERENCE_LOGITS in CASES[key].joins else ""
    if kept and kept != DIVERGENCE_REFERENCE:  # the reference line already says it is the most precise
        figures.append(kept)
    for profile in (p for p in PAIRED if p in CASES[key].joins and p != QUIZ):  # the joined ones', named
        if (loss := loss_statement(row, profile)) is not None:
            figures.append(f"{profile}: {loss}")
    run_with = f"run with {setting['flags']}" if setting["flags"] else ""
    capacity = row.get("capacity") if key == LEVELS else ""
    broken = f"listed lower, its quality evidence says it is broken: {', '.join(row['_broken'])}" \
        if row.get("_broken") else ""
    if broken and mark == "ok":
        mark = "warn"
    why = "; ".join(p for p in (broken, lead, capacity, _judgement(key, label, row, spec), row.get("_tie", ""),
                                run_with) if p)
    return Line(mark, *where, label, ", ".join(figures), why, **setting)


def _broken_once(row: dict[str, Any], broken: dict[tuple, tuple[str, ...]]) -> tuple[str, ...]:
    """`_broken(row)`, worked out once per configuration: it parses the row's checks."""
    config = _config(row)
    if config not in broken:
        broken[config] = _broken(row)
    return broken[config]


def _config(row: dict[str, Any]) -> tuple:
    """A configs row's identity: one row per (host, model, quant, variant)."""
    return row["host"], row["model"], row["quant"], row["variant"]


def _broken(row: dict[str, Any]) -> tuple[str, ...]:
    """Why the quality evidence calls this configuration broken: a failed check of an evidence metric
    (KL divergence, malformed tool calls past their limits), or a loss against the reference quant
    on the paired items beyond chance (the quiz, tool calls, code, structured output)."""
    found = []
    for profile, metrics in EVIDENCE.items():
        if row.get(f"{profile}_status") == "ok":
            checks = (Check.from_dict(c) for c in json.loads(row.get(f"{profile}_checks") or "[]"))
            found += [f"{_phrase(c.name, c.value)} {'below' if c.direction == 'min' else 'above'} the "
                      f"{_value(c.name, c.threshold)} {'minimum' if c.direction == 'min' else 'maximum'}"
                      for c in checks if c.name in metrics and not c.passed]
    for profile in (p for p in PAIRED if row.get(f"{p}_status") == "ok"):
        if significant_loss(row, profile):
            found.append(f"{profile} {loss_statement(row, profile)}")
    return tuple(found)


def _label(key: str, row: dict[str, Any]) -> str | None:
    """The use case's rating: its own profile's, or the worst of it and the profiles it joins."""
    labels = [row[f"{key}_rating"]] + [row.get(f"{p}_rating") for p in CASES[key].joins
                                       if row.get(f"{p}_status") == "ok" and row.get(f"{p}_rating")]
    if labels[0] is None:
        return None
    return max(labels, key=lambda label: RANK.get(label, 4))


def _kept(row: dict[str, Any], spec: Spec) -> str:
    """"keeps 92% of Q4_1's top tokens (KLD 0.0312)", or "" without a divergence result."""
    kld, same = row.get("kld_mean"), row.get("same_top_pct")
    if kld is None or same is None or row["model"] not in {m.name for m in spec.models}:
        return ""
    reference = spec.model(row["model"]).reference_quant()
    if reference == row["quant"]:
        return DIVERGENCE_REFERENCE
    return f"keeps {same:.0f}% of {reference}'s top tokens (KLD {kld:.3g})"


def _judgement(key: str, label: str | None, row: dict[str, Any], spec: Spec) -> str:
    """What the rating means for this line, in words: what it missed, how close it is, what it feels like."""
    if label is None:
        return "measured, but not rated: its rated metrics were not recorded"
    checks = [Check.from_dict(c) for p in (key, *CASES[key].joins) if row.get(f"{p}_status") == "ok"
              for c in json.loads(row.get(f"{p}_checks") or "[]")] if label in ("Failed", "Poor", "Acceptable") else ()
    if label in ("Failed", "Poor"):
        missed = [c for c in checks if not c.passed and (c.critical or label == "Poor")]
        return ", ".join(_missed(c) for c in missed) or f"{label.lower()} against the thresholds"
    if label == "Acceptable" and checks:
        weak = min(checks, key=lambda c: c.margin_pct)
        limit = "minimum" if weak.direction == "min" else "maximum"
        return f"borderline: {_phrase(weak.name, weak.value)} against a {_value(weak.name, weak.threshold)} {limit}"
    shown = [*CASES[key].figures, *(f for p in CASES[key].joins for f in PROFILE_FIGURES[p])]
    meanings = [m for m in (_meaning(f, row[f]) for f in shown if row.get(f) is not None) if m]
    text = "; ".join(m if i == 0 else m[:1].lower() + m[1:] for i, m in enumerate(meanings))
    return text or f"every check beats its threshold by {50 if label == 'Excellent' else 20}% or more"


def _all_rounders(configs: pl.DataFrame, table: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Configurations that ran a performance profile, best all-rounder first (see module doc); a
    stable sort, so each host's rows keep this order among themselves. `table`: `configs` as dicts,
    which are ordered by row number (with `_worst` added) rather than made again."""
    ranks = [pl.when(pl.col(f"{p}_status") == "error").then(RANK["Failed"])
             .otherwise(pl.col(f"{p}_rating").replace_strict(RANK, default=None)) for p in OVERALL]
    ran = pl.max_horizontal(ranks[:len(PERFORMANCE)]).is_not_null()  # an all-rounder ran a performance profile
    order = configs.with_row_index(ROW).with_columns(pl.max_horizontal(ranks).alias("_worst")).filter(ran).sort(
        ["_worst", "quality_pct", "cost_benefit_score", "peak_memory_gb", "efficiency_score"],
        descending=[False, True, True, False, True], nulls_last=True, maintain_order=True)
    return [{**table[i], "_worst": worst} for i, worst in order.select(ROW, "_worst").iter_rows()]


def _pick(ranked: list[dict[str, Any]], spec: Spec, broken: dict[tuple, tuple[str, ...]]) -> Line | None:
    """The host's best all-rounder from its `_all_rounders` rows, with 2-4 bullets saying why.
    `broken`: each configuration's `_broken` reasons, shared with the use cases."""
    if not ranked:
        return None
    # one whose quality evidence says it is broken goes after every sound one that did not fail
    row = {**(chosen := _first_best(ranked, broken)), "_broken": _broken_once(chosen, broken)}
    label = next(name for name, rank in RANK.items() if rank == row["_worst"])
    figures = ", ".join(_figure(m, row[m]) for m in ("tokens_per_s", "ttft_s", "peak_memory_gb") if row[m] is not None)
    reasons = _bullets(row, spec)
    if row["_broken"]:
        reasons += (f"its quality evidence says it is broken ({', '.join(row['_broken'])}), as it says of every "
                    "other candidate that did not fail",)
    mark = "warn" if row["_broken"] and MARK_OF[label] == "ok" else MARK_OF[label]
    return Line(mark, row["host"], row["model"], row["quant"], label, figures, "; ".join(reasons), reasons=reasons,
                variant=row["variant"], flags=flags(spec, row["variant"]))


def _first_best(ranked: list[dict[str, Any]], broken: dict[tuple, tuple[str, ...]]) -> dict[str, Any]:
    """The first row that neither failed nor is broken, else the first of the best of the rest: what
    `min` over those two keys gives, without judging the rows after a sound one (420 hosts' rows)."""
    best: tuple[tuple[bool, bool], dict[str, Any]] | None = None
    for row in ranked:
        key = (row["_worst"] is None or row["_worst"] >= RANK["Failed"], bool(_broken_once(row, broken)))
        if key == (False, False):
            return row
        if best is None or key < best[0]:
            best = (key, row)
    return best[1]


def _bullets(row: dict[str, Any], spec: Spec) -> tuple[str, ...]:
    """Rating per use case, then memory, quality retention and speed where measured, in words."""
    ran = [p for p in PERFORMANCE if row[f"{p}_status"] is not None]
    bullets = [", ".join(f"{row[f'{p}_rating'] or row[f'{p}_status']} for {CASES[p].short}" for p in ran)]
    if row["peak_memory_gb"] is not None:
        bullets.append(_felt("peak_memory_gb", row["peak_memory_gb"], " at peak"))
    if row["quality_pct"] is not None:
        quality = f"{_num(row['quality_pct'])}% on the quality items"
        bullets.append(", ".join(p for p in (quality, _retention(row)) if p))
    if (kept := _kept(row, spec)) and kept != DIVERGENCE_REFERENCE:
        meaning = _meaning("kld_mean", row["kld_mean"])
        bullets.append(f"{kept}: {meaning[:1].lower()}{meaning[1:]}")
    if row["tokens_per_s"] is not None:
        bullets.append(_felt("tokens_per_s", row["tokens_per_s"]))
    if row["variant"] and (found := variants.named(spec.server, row["variant"])):
        typed = found.flags()
        bullets.append(f"run {found.engine}{f' with {typed}' if typed else ''}")
    return tuple(bullets)


def flags(spec: Spec, variant: str) -> str:
    """"-t 2 -fa on": the engine flags of a server-setting variant ("" for none)."""
    found = variants.named(spec.server, variant) if variant else None
    return found.flags() if found else ""


def _felt(metric: str, value: float, context: str = "") -> str:
    """"0.5 GB RAM at peak: plenty of headroom"."""
    meaning = _meaning(metric, value)
    return f"{_figure(metric, value)}{context}: {meaning[:1].lower()}{meaning[1:]}"  # keeps "UX"


def _retention(row: dict[str, Any], profile: str = QUIZ) -> str:
    """REFERENCE, the loss against it where the paired test finds one ("no measurable loss vs
    Q8_0 on 20 items" where it does not), or "" without a comparison: of the quiz's items, or of
    another paired profile's (tool calls, code, structured output), each on its own use-case line."""
    points, reference = row.get(f"{profile}_degradation_pts"), row.get(f"{profile}_reference_quant")
    if points is None or reference is None:
        return ""
    return REFERENCE if reference == row["quant"] else loss_statement(row, profile) or ""


def _collapsed(lines: list[Line]) -> list[Line]:
    """✗ lines with the same reason become one line naming every configuration, best-ranked first;
    beyond MAX_LINES reasons, the rest share the last line (the report lists each)."""
    by_why: dict[str, list[Line]] = {}
    for line in lines:
        by_why.setdefault(line.why, []).append(line)
    groups = list(by_why.values())
    if len(groups) > MAX_LINES:
        rest = [line for group in groups[MAX_LINES - 1:] for line in group]
        groups = groups[: MAX_LINES - 1] + [[replace(rest[0], why="other reasons (see the report)"), *rest[1:]]]
    return [replace(g[0], figures=g[0].figures if len(g) == 1 else "",
                    also=tuple((x.host, x.model, x.config) for x in g[1:])) for g in groups]


def _render(line: Line, with_host: bool) -> str:
    head = " ".join(p for p in (line.rating or "", f"({line.figures})" if line.figures else "") if p)
    return f"  {line.symbol} {line.label(with_host)} - {': '.join(p for p in (head, line.why) if p)}"


def _short(reason: str) -> str:
    found = next((short for needle, short in SHORT_REASONS if needle in reason), None)
    first = reason.split(";")[0].split(" (")[0].strip()
    return found or (first if len(first) <= 60 else first[:59] + "…")


def _num(value: float) -> str:
    """Three significant digits or so, no trailing zeros: 62.4, 0.94, 30, 8,192."""
    text = f"{value:,.{0 if abs(value) >= 100 else 1 if abs(value) >= 10 else 2}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _value(metric: str, value: float) -> str:
    return SHOW[metric].unit.format(_num(value)) if metric in SHOW else _num(value)


def _figure(metric: str, value: float) -> str:
    """"0.94 s TTFT", "62.4 t/s": for the figures of a line."""
    return f"{_value(metric, value)} {SHOW[metric].suffix if metric in SHOW else metric}".strip()


def _phrase(metric: str, value: float, relation: str = "") -> str:
    """"speed 2.2 t/s", "math score below 80%": for sentences."""
    return " ".join(p for p in (SHOW[metric].name if metric in SHOW else metric, relation, _value(metric, value)) if p)


def _missed(check: Check) -> str:
    """"speed below 2 t/s": the threshold, not the value, so that equal causes collapse."""
    return _phrase(check.name, check.threshold, "below" if check.direction == "min" else "above")


def _meaning(metric: str, value: float) -> str:
    return interpret(TRANSLATE_AS.get(metric, metric), value)
