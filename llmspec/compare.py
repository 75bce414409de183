"""`llmspec compare A B [C ...]`: what changed between runs, figure by figure, and whether it is noise.

A *side* is one of:
- a loadtest file (`results/NAME.json` from `llmspec loadtest`): one row per concurrency level,
  plus its capacity;
- a results tree (`build/results`, one host's `build/results/<host>`, or one spec's
  `build/results/<host>/<spec>`): one row per (spec, model, quant+variant, profile), and per host
  when a side holds several hosts;
- `REV:PATH`, a results tree as committed at a git revision (`HEAD~1:build/results`), read from
  git itself (llmspec.revisions), PATH relative to the current folder;
- `hf://datasets/ORG/NAME`, results published to a Hugging Face dataset (`llmspec publish`), read
  into build/cache/datasets/ORG/NAME/ by the pull's code (llmspec.pull.cached), not into build/results.

Every side after the first is compared with the first. The figures are each profile's headline
figures (its KIND's `headlines`, the same the report leads with); a difference is "beyond noise"
only where both figures carry 95 % intervals that hold a rerun's figure (`ProfileKind.holds_a_rerun`:
a speed from one server start's requests does not, one over several starts does) and these do not
overlap (for two rerun intervals, where a rerun lands 95 % of the time: where each figure lies
outside the other's interval, llmspec.stats.changed), "within noise" otherwise, "not judged" where
they are apart but either covers one server start only, and "no interval" where either has none.
A loadtest file keeps every level's per-request times, so each level's percentiles get intervals
(the load profile's method, llmspec.stats); a file written before levels kept them has them for its
last level only. Each row also says what differs between the two measurements where the files
record it: llama-server version, host, model file.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from llmspec import revisions
from llmspec.errors import UserError
from llmspec.profiles import PROFILES, higher_is_better, role
from llmspec.results import FOR_REPORTS, ResultPath, parse_without
from llmspec.stats import changed, percentile_interval
from llmspec.text import figure, format_table

DATASETS = Path("build/cache/datasets")  # where an hf://datasets/ORG/NAME side is read into (llmspec.pull.cached)
LOAD = role("user_levels").name  # the profile whose headline figures a loadtest file's levels carry


# --- what each side holds -----------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    value: float
    low: float | None = None
    high: float | None = None
    calibrated: bool = True  # False: an interval of one server start's requests, which a rerun can leave
    rerun: bool = False  # its interval is where a rerun lands (over server starts), not the figure's own

    @property
    def bounds(self) -> tuple[float | None, float | None]:
        return self.low, self.high

    def text(self) -> str:
        shown = figure(self.value)
        return f"{shown} ({figure(self.low)}-{figure(self.high)})" if None not in self.bounds else shown


@dataclass
class Entry:
    """One row's measurement on one side."""

    key: tuple[str, ...]  # (host, spec, model, config, profile), or ("users", n) / ("capacity",)
    profile: str
    status: str = "ok"
    reason: str = ""
    figures: dict[str, Figure] = field(default_factory=dict)
    provenance: dict[str, str] = field(default_factory=dict)  # what was measured with what, in words


@dataclass
class Side:
    label: str  # as the user gave it
    description: str  # where it comes from: a file, the working tree, a commit
    kind: str  # "results" or "loadtest"
    entries: list[Entry]

    @property
    def hosts(self) -> set[str]:
        return {e.key[0] for e in self.entries if self.kind == "results"}


def read_side(arg: str, spec: str | None = None) -> Side:
    """A side from what the user typed; a UserError in one line when it is none of the three."""
    path = Path(arg)
    if arg.startswith("hf://"):
        from llmspec.pull import cached

        root = cached(arg, DATASETS)
        side = _tree_side(arg, _dir_results(root), f"dataset on the hub, read into {root}")
    elif path.is_dir():
        side = _tree_side(arg, _dir_results(path), "results tree in the working folder")
    elif path.is_file():
        side = _file_side(arg, path)
    elif ":" in arg:
        side = _git_side(arg)
    else:
        raise UserError(f"{arg}: no such file or folder (give a loadtest file, a results folder such as "
                        "build/results, or REV:PATH such as HEAD~1:build/results)")
    if spec is not None and side.kind == "results":
        side.entries = [e for e in side.entries if e.key[1] == spec]
        if not side.entries:
            raise UserError(f"{arg}: no results of spec {spec!r} there")
    return side


def _file_side(arg: str, path: Path) -> Side:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise UserError(f"{arg}: not a loadtest file or a result file (not readable JSON: {exc})") from None
    if isinstance(data, dict) and isinstance(data.get("meta"), dict) and isinstance(data.get("aggregate"), dict):
        meta = data["meta"]
        when = f"{meta.get('start_date', '?')} {str(meta.get('start_time', ''))[:8]}".strip()
        return Side(arg, f"loadtest file, {when}, model {meta.get('model')} at {meta.get('server')}", "loadtest",
                    loadtest_entries(data))
    if isinstance(data, dict) and isinstance(data.get("cell"), dict):
        return _tree_side(arg, [(str(path.resolve()), data)], "one result file")
    raise UserError(f"{arg}: neither a loadtest file (meta, results, aggregate) nor a result file (cell, metrics)")


def _git_side(arg: str) -> Side:
    rev, _, rel = arg.partition(":")
    repo = revisions.toplevel(Path.cwd())
    if repo is None:
        raise UserError(f"{arg}: not inside a git repository (REV:PATH reads PATH as committed at REV; "
                        "run it in the project's checkout)")
    commit = revisions.describe(repo, rev or "HEAD")
    inside = os.path.relpath(Path.cwd().resolve() / (rel or "."), repo.resolve())
    if inside.startswith(".."):
        raise UserError(f"{arg}: {rel} is outside the git repository {repo}")
    files = [(p, sha) for p, sha in revisions.tree_files(repo, commit.sha, inside) if p.endswith(".json")]
    blobs = revisions.read_blobs(repo, (sha for _, sha in files))
    found = [(p, _parsed(blobs[sha])) for p, sha in files if sha in blobs]
    where = f"commit {commit.short} of {commit.date[:10]} ({commit.subject[:60]})"
    side = _tree_side(arg, [(p, d) for p, d in found if d is not None], where)
    if not side.entries:
        raise UserError(f"{arg}: no result files under {inside} at {rev} (expected "
                        "<host>/<spec>/<model>/<quant>/<profile>.json below it)")
    return side


def _dir_results(root: Path) -> list[tuple[str, dict]]:
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            if name.endswith(".json") and not name.startswith("."):
                path = os.path.join(folder, name)
                try:
                    with open(path, "rb") as fh:
                        data = _parsed(fh.read())
                except OSError:
                    continue
                if data is not None:
                    found.append((path, data))
    if not any(isinstance(d.get("cell"), dict) for _, d in found):
        raise UserError(f"{root}: no result files in this folder (expected "
                        "<host>/<spec>/<model>/<quant>/<profile>.json below it, as under build/results)")
    return found


def _parsed(data: bytes) -> dict | None:
    try:
        found = parse_without(data, FOR_REPORTS)  # the raw samples are most of a file and not needed
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def _tree_side(arg: str, files: list[tuple[str, dict]], description: str) -> Side:
    entries = []
    for path, data in sorted(files):
        if not isinstance(data.get("cell"), dict):
            continue  # bandwidth.json and other files beside the results
        entry = result_entry(path, data)
        if entry is not None:
            entries.append(entry)
    return Side(arg, description, "results", entries)


def result_entry(path: str, data: dict) -> Entry | None:
    """A result file's headline figures with their intervals; the cell identity from its path
    (`<host>/<spec>/<model>/<config>/<profile>.json`, the contract), else from its content."""
    cell, where = data["cell"], ResultPath.parse(path)
    profile = where.profile if where else re.split(r"[\\/]", path)[-1].removesuffix(".json")
    host = (data.get("host") or {}).get("id") or (where.host if where else "?")
    key = (where.host, where.spec, where.model, where.config, profile) if where else \
        (host, str(cell.get("spec")), str(cell.get("model")), str(cell.get("quant")), profile)
    kind = PROFILES.get(profile)
    metrics, intervals = data.get("metrics") or {}, data.get("intervals") or {}
    figures = {}
    for name in (kind.headlines if kind else ()):
        value = metrics.get(name)
        if _number(value):
            found = intervals.get(name) if isinstance(intervals.get(name), dict) else {}
            low, high = found.get("low"), found.get("high")
            figures[name] = Figure(value, *((low, high) if _number(low) and _number(high) else (None, None)),
                                   calibrated=kind.holds_a_rerun(name, metrics),
                                   rerun=kind.rerun_interval(name, metrics))
    return Entry(key, profile, str(data.get("status") or ""), str(data.get("reason") or ""), figures,
                 _provenance(data, host))


def _provenance(data: dict, host: str) -> dict[str, str]:
    model = data.get("model_file") or {}
    fingerprint = str(model.get("sha256") or "")[:12] or (f"{model.get('name')}, {model.get('size')} bytes"
                                                           if model.get("name") else "")
    found = {"llama-server": str((data.get("server") or {}).get("version") or ""), "host": host,
             "model file": fingerprint}
    return {k: v for k, v in found.items() if v}


def loadtest_entries(doc: dict) -> list[Entry]:
    """One entry per concurrency level (the load profile's headline figures that a level has) and
    one for the capacity across levels. Each level's per-request times are in the file (an older file:
    the last level's only, as the plan's `results`), so its p90s get 95 % intervals the way the load
    profile computes them."""
    meta, aggregate = doc.get("meta") or {}, doc.get("aggregate") or {}
    provenance = {k: str(meta[k]) for k in ("server", "model") if meta.get(k)}
    stored = [lv for lv in doc.get("levels") or [] if isinstance(lv, dict) and _number(lv.get("concurrent"))]
    levels = {int(lv["concurrent"]): lv.get("figures") or {} for lv in stored}
    times = {int(lv["concurrent"]): lv["results"] for lv in stored if isinstance(lv.get("results"), list)}
    last = meta.get("concurrent") if _number(meta.get("concurrent")) else None
    if not levels and last is not None:  # one level: the plan's own aggregate, in ms
        levels = {int(last): {name: aggregate[ms] / 1000 for name, ms in
                              (("p90_latency_s", "latency_p90_ms"), ("p90_ttft_s", "ttft_p90_ms"))
                              if _number(aggregate.get(ms))}}
    if last is not None and int(last) not in times:
        times[int(last)] = doc.get("results") or []
    headlines = PROFILES[LOAD].headlines
    entries = []
    for users, figures in sorted(levels.items()):
        bounds = _level_intervals(times.get(users) or [])
        entries.append(Entry(("users", str(users)), LOAD, figures={
            name: Figure(figures[name], *bounds.get(name, (None, None)))
            for name in headlines if _number(figures.get(name))}, provenance=provenance))
    capacity = (doc.get("capacity") or {}).get("max_users_at_slo")
    if _number(capacity):
        entries.append(Entry(("capacity",), LOAD, figures={"max_users_at_slo": Figure(capacity)},
                             provenance=provenance))
    return entries


def _level_intervals(results: list[Any]) -> dict[str, tuple[float, float]]:
    ok = [r for r in results if isinstance(r, dict) and r.get("error") is None and _number(r.get("time"))]
    found = {"p90_latency_s": percentile_interval([r["time"] / 1000 for r in ok], 90),
             "p90_ttft_s": percentile_interval([r["ttft"] / 1000 for r in ok if _number(r.get("ttft"))], 90)}
    return {name: (i.low, i.high) for name, i in found.items() if i is not None}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


# --- matching and judging -----------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One figure of one row, on both sides."""

    metric: str
    a: Figure | None
    b: Figure | None
    higher_is_better: bool | None = None

    @property
    def diff(self) -> float | None:
        return self.b.value - self.a.value if self.a and self.b else None

    @property
    def pct(self) -> float | None:
        return self.diff / abs(self.a.value) * 100 if self.diff is not None and self.a.value else None

    @property
    def beyond_noise(self) -> bool | None:
        """Whether the change is beyond the noise (`stats.changed`: two rerun intervals, each figure
        outside the other's; else two intervals that do not overlap); None where either has none, or
        where they are apart but either covers one server start only: a rerun's figure can leave such
        an interval, so apart says nothing. Not apart says "within noise" either way."""
        if not (self.a and self.b):
            return None
        found = changed(self.a.value, self.a.bounds, self.b.value, self.b.bounds, self.a.rerun and self.b.rerun)
        return None if found and not self.calibrated else found

    @property
    def calibrated(self) -> bool:
        return bool(self.a and self.b and self.a.calibrated and self.b.calibrated)

    def change_text(self) -> str:
        if self.diff is None:
            return "-"
        pct = f" ({self.pct:+.1f}%)" if self.pct is not None else ""
        if not self.diff:
            return "0"
        return f"{'+' if self.diff > 0 else ''}{figure(self.diff)}{pct}"

    def verdict(self) -> str:
        if self.a is None or self.b is None:
            return "only in A" if self.a else "only in B" if self.b else "-"
        if self.beyond_noise is None:
            one_start = not self.calibrated and None not in (*self.a.bounds, *self.b.bounds)
            return "not judged: interval of one server start (set starts > 1)" if one_start else "no interval"
        if not self.beyond_noise:
            return "within noise"
        if self.higher_is_better is None or not self.diff:
            return "beyond noise"
        return f"beyond noise, {'better' if (self.diff > 0) == self.higher_is_better else 'worse'}"


@dataclass
class Row:
    label: str
    a: Entry | None
    b: Entry | None
    changes: list[Change]
    differs: list[str]  # which provenance items differ between the two measurements

    @property
    def unchanged(self) -> bool:
        """Both sides measured the same figures with the same everything: nothing to read here."""
        return bool(self.a and self.b) and not self.differs and self.a.status == self.b.status and all(
            c.a == c.b for c in self.changes)

    @property
    def only(self) -> str:
        return "" if self.a and self.b else "only in A" if self.a else "only in B"

    @property
    def status_note(self) -> str:
        """A side that did not measure (skipped, error) says so instead of a figure."""
        said = {name: f"{e.status}" + (f" ({e.reason[:60]})" if e.reason else "")
                for name, e in (("A", self.a), ("B", self.b)) if e and e.status not in ("ok", "")}
        if len(said) == 2 and said["A"] == said["B"]:
            return f"{said['A']} on both"
        return "; ".join(f"{name}: {text}" for name, text in said.items())


@dataclass
class Pair:
    a: Side
    b: Side
    rows: list[Row]
    differs: list[str]  # sentences: what differs between the two sides overall

    def shown(self, show_all: bool) -> tuple[list[Row], int]:
        """The rows worth reading (all of them with `show_all`), and how many identical ones were left out."""
        rows = self.rows if show_all else [r for r in self.rows if not r.unchanged]
        return rows, len(self.rows) - len(rows)


def compare(a: Side, b: Side) -> Pair:
    """Rows matched by their key (per host only when a side holds several hosts), A's order first."""
    with_host = a.kind == b.kind == "results" and (len(a.hosts) > 1 or len(b.hosts) > 1)
    match = (lambda e: e.key) if with_host or a.kind != "results" else (lambda e: e.key[1:])
    left = {match(e): e for e in a.entries}
    right = {match(e): e for e in b.entries}
    keys = [*left, *(k for k in right if k not in left)]
    if a.kind == b.kind == "loadtest":  # levels by users, capacity last
        keys.sort(key=lambda k: (k[0] == "capacity", int(k[1]) if k[0] == "users" else 0))
    rows = [_row(key, left.get(key), right.get(key), with_host or a.kind != "results") for key in keys]
    return Pair(a, b, rows, _side_differences(a, b))


def _row(key: tuple, a: Entry | None, b: Entry | None, full_key: bool) -> Row:
    entry = a or b
    assert entry is not None
    metrics = [*(a.figures if a else {}), *(m for m in (b.figures if b else {}) if not a or m not in a.figures)]
    changes = [Change(m, a.figures.get(m) if a else None, b.figures.get(m) if b else None,
                      higher_is_better(entry.profile, m)) for m in metrics]
    differs = [k for k in ("llama-server", "host", "model file", "server", "model")
               if a and b and a.provenance.get(k) != b.provenance.get(k)]
    return Row(_label(entry, full_key), a, b, changes, differs)


def _label(entry: Entry, full_key: bool) -> str:
    if entry.key[0] == "users":
        return f"{entry.key[1]} user{'' if entry.key[1] == '1' else 's'}"
    if entry.key[0] == "capacity":
        return "capacity"
    return " ".join(entry.key if full_key else entry.key[1:])


def _side_differences(a: Side, b: Side) -> list[str]:
    """What differs between the sides as a whole, e.g. "llama-server: X in A, Y in B"."""
    out = []
    for item in ("llama-server", "host", "model file", "server", "model"):
        seen_a = sorted({e.provenance[item] for e in a.entries if item in e.provenance})
        seen_b = sorted({e.provenance[item] for e in b.entries if item in e.provenance})
        if seen_a != seen_b and (seen_a or seen_b):
            out.append(f"{item}: {_listed(seen_a)} in A, {_listed(seen_b)} in B")
    return out


def _listed(values: list[str]) -> str:
    if not values:
        return "not recorded"
    return ", ".join(values[:3]) + (f" and {len(values) - 3} more" if len(values) > 3 else "")


# --- the console table --------------------------------------------------------------------------


def table(pair: Pair, show_all: bool = False) -> str:
    """The comparison as plain text: a header naming both sides, what differs, then one line per figure
    of every row that changed (every row with `show_all`)."""
    lines = [f"A: {pair.a.label}  ({pair.a.description})", f"B: {pair.b.label}  ({pair.b.description})"]
    lines += [f"differs: {d}" for d in pair.differs] or ["differs: nothing the files record"]
    rows: list[tuple] = [("configuration", "figure", "A", "B", "change", "noise", "differs")]
    rows_shown, same = pair.shown(show_all)
    for row in rows_shown:
        note = row.only or row.status_note
        if not row.changes:
            rows.append((row.label, "-", "", "", "", note or "no headline figure", ", ".join(row.differs)))
        for i, c in enumerate(row.changes):
            rows.append((row.label if i == 0 else "", c.metric, c.a.text() if c.a else "-",
                         c.b.text() if c.b else "-", c.change_text(),
                         c.verdict() if c.a and c.b else note or c.verdict(),
                         ", ".join(row.differs) if i == 0 else ""))
    beyond = sum(1 for r in pair.rows for c in r.changes if c.beyond_noise)
    judged = sum(1 for r in pair.rows for c in r.changes if c.beyond_noise is not None)
    lines += ["", format_table(rows) if len(rows) > 1 else "(no row changed)", "",
              f"{beyond} of {judged} figures with intervals changed beyond the noise; "
              f"{sum(1 for r in pair.rows if r.only)} row(s) on one side only"
              + (f"; {same} row(s) identical on both sides left out (--all shows them)" if same else "")]
    return "\n".join(lines)


# --- `llmspec compare` --------------------------------------------------------------------------


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="compare runs: loadtest files, results trees or git revisions of them")
    p.add_argument("sides", nargs="+", metavar="A B [C ...]",
                   help="loadtest files (results/NAME.json), results folders (build/results, "
                        "build/results/<host>/<spec>), REV:PATH (HEAD~1:build/results) or hf://datasets/ORG/NAME")
    p.add_argument("--spec", help="only the results of this spec")
    p.add_argument("--all", action="store_true", help="also the rows identical on both sides")
    p.add_argument("--output", type=Path, metavar="FILE",
                   help="the HTML page (default build/reports/<spec>/compare-A-vs-B.html)")


def command(args) -> int:
    if len(args.sides) < 2:
        raise UserError("compare needs at least two things to compare: A B [C ...]")
    sides = [read_side(arg, args.spec) for arg in args.sides]
    pairs = [compare(sides[0], other) for other in sides[1:]]
    print("\n\n".join(table(p, args.all) for p in pairs))
    path = args.output or default_output(sides)
    from llmspec.report.comparison import generate_comparison
    from llmspec.report.vega import bundle
    from llmspec.results import write_text_atomic

    page = generate_comparison(pairs, datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                               bundle(Path("build/cache")), args.all)
    try:
        write_text_atomic(path, page)
    except OSError as exc:
        raise UserError(f"{path}: cannot write the comparison ({exc.strerror or exc})") from None
    print(f"\nComparison: {path}", file=sys.stdout)
    return 0


def default_output(sides: list[Side]) -> Path:
    """build/reports/<spec>/compare-<A>-vs-<B>.html: beside the spec's report when the results are of
    one spec; loadtest files under build/reports/loadtest/."""
    specs = {e.key[1] for s in sides if s.kind == "results" for e in s.entries}
    folder = next(iter(specs)) if len(specs) == 1 else "loadtest" if not specs else ""
    name = "compare-" + "-vs-".join(_slug(s.label) for s in sides)
    return Path("build/reports", folder, name[:150] + ".html")


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._]+", "_", label.removesuffix(".json")).strip("_.") or "side"
