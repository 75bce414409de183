"""The report's history section: each configuration's headline figure across the commits of its results.

Results are committed, so git already holds every earlier measurement; laid side by side with the
commit date and the llama-server version, a regression (an upgrade that cost 20 % tokens/s) stands
out. A step is marked only when it is beyond the noise: the two versions' 95 % intervals do not
overlap (llmspec.stats.changed; for two rerun intervals, each figure lies outside the other's) and
both hold a rerun's figure (`ProfileKind.holds_a_rerun`: a speed
measured within one server start does not), the same rule as `llmspec compare`.

Bounded so that a long history costs little: one `git log --raw` over the last `COMMITS` commits
that touched the spec's results names the blob of every version, and one `git cat-file --batch`
reads at most `MAX_VERSIONS` of them (the newest), only of configurations the report shows. Outside
a git repository, or with no committed results, there is no section (not an error).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from llmspec import revisions
from llmspec.profiles import PROFILES, higher_is_better
from llmspec.report.charts import Chart
from llmspec.results import FOR_REPORTS, ResultPath, bound_names, parse_without
from llmspec.stats import changed
from llmspec.text import figure

COMMITS = 20
MAX_VERSIONS = 2000
Key = tuple[str, str, str, str]  # host, model, config, profile


@dataclass
class Point:
    """One version of a configuration's headline figure."""

    commit: str  # short sha, or "working tree"
    date: str  # commit date; for the working tree, when it was measured
    value: float
    low: float | None
    high: float | None
    server: str  # llama-server version
    step: str = ""  # "up" / "down": beyond the noise from the version before
    calibrated: bool = True  # False: its interval covers one server start only (`ProfileKind.holds_a_rerun`)
    rerun: bool = False  # its interval is where a rerun lands (`ProfileKind.rerun_interval`)
    better: bool | None = None  # whether that step is for the better, where the profile says
    new_server: bool = False  # the first version, or llama-server changed since the one before

    @property
    def text(self) -> str:
        return figure(self.value) + (f" ({figure(self.low)}-{figure(self.high)})"
                                     if self.low is not None and self.high is not None else "")

    @property
    def title(self) -> str:
        return f"{self.commit}, {self.date[:10]}, llama-server {self.server or 'unknown'}"

    @property
    def mark(self) -> str:
        return {"up": "▲", "down": "▼"}.get(self.step, "")

    @property
    def cls(self) -> str:
        return "" if not self.step else "worse" if self.better is False else "better" if self.better else "changed"


@dataclass
class Line:
    key: Key
    metric: str
    points: list[Point] = field(default_factory=list)  # oldest first


@dataclass
class History:
    lines: list[Line]
    commits: int  # how many commits were looked at
    many_hosts: bool
    charts: list[Chart]


def history(frame: pl.DataFrame, results_root: Path, spec_name: str) -> History | None:
    """The section for a `frame.for_spec` frame, or None without a committed earlier version."""
    if not frame.height:
        return None
    logs = [(root, commits) for root in _committed_roots(Path(results_root))
            if (commits := revisions.path_log(root, [f"*/{spec_name}/*"], COMMITS))]
    if not logs:
        return None
    rows = {(r["host"], r["model"], r["config"], r["profile"]): r for r in frame.iter_rows(named=True)}
    versions: list[tuple[Key, revisions.Commit, str]] = []
    blobs: dict[str, bytes] = {}
    for root, commits in logs:
        found_here = []
        for commit in commits:  # newest first, so the bound keeps the newest versions
            for path, sha in commit.changed:
                found = ResultPath.parse(path)
                if found is not None and found.spec == spec_name:
                    key = (found.host, found.model, found.config, found.profile)
                    if key in rows:
                        found_here.append((key, commit, sha))
        found_here = found_here[:MAX_VERSIONS - len(versions)]
        blobs.update(revisions.read_blobs(root, (sha for _, _, sha in found_here)))
        versions += found_here
    commits = [c for _, cs in logs for c in cs]
    lines: dict[Key, Line] = {}
    for key, commit, sha in reversed(versions):  # oldest first
        metric = _headline(key[3])
        point = _point(blobs.get(sha), metric, commit, key[3]) if metric else None
        if point is not None:
            lines.setdefault(key, Line(key, metric)).points.append(point)
    for key, line in lines.items():
        _add_working_tree(line, rows[key])
        _mark_steps(line)
    shown = [line for line in lines.values() if len(line.points) > 1]
    if not shown:
        return None
    many = len({line.key[0] for line in shown}) > 1
    return History(shown, len(commits), many, _charts(shown, many))


def _committed_roots(results_root: Path) -> list[Path]:
    """Where the results' history is: `results_root` itself, or, for the folder of links a report
    `with=` datasets reads (llmspec.pull.with_datasets: outside git), each folder its host links
    point into; this project's build/results has the commits, a dataset's cache has none."""
    try:
        links = [p for p in results_root.iterdir() if p.is_symlink()]
    except OSError:
        return [results_root]
    return sorted({p.resolve().parent for p in links}) if links else [results_root]


def _headline(profile: str) -> str:
    kind = PROFILES.get(profile)
    return next(iter(kind.headlines), "") if kind else ""


def _point(data: bytes | None, metric: str, commit: revisions.Commit, profile: str) -> Point | None:
    try:
        result = parse_without(data, FOR_REPORTS) if data else None
    except ValueError:
        return None
    if not isinstance(result, dict) or result.get("status") != "ok":
        return None
    value = (result.get("metrics") or {}).get(metric)
    if not isinstance(value, (int, float)):
        return None
    found = (result.get("intervals") or {}).get(metric) or {}
    return Point(commit.short, commit.date, value, found.get("low"), found.get("high"),
                 str((result.get("server") or {}).get("version") or ""),
                 calibrated=_calibrated(profile, metric, result.get("metrics") or {}),
                 rerun=_rerun(profile, metric, result.get("metrics") or {}))


def _calibrated(profile: str, metric: str, metrics: dict[str, Any]) -> bool:
    kind = PROFILES.get(profile)
    return kind is None or kind.holds_a_rerun(metric, metrics)


def _rerun(profile: str, metric: str, metrics: dict[str, Any]) -> bool:
    kind = PROFILES.get(profile)
    return kind is not None and kind.rerun_interval(metric, metrics)


def _add_working_tree(line: Line, row: dict[str, Any]) -> None:
    """The figure in the report now, when it is not the last committed one (measured since)."""
    value = row.get(line.metric)
    if row.get("status") != "ok" or not isinstance(value, (int, float)):
        return
    last = line.points[-1]
    low, high = (row.get(b) for b in bound_names(line.metric))
    if (value, low, high) != (last.value, last.low, last.high):
        line.points.append(Point("working tree", row.get("started_at") or "", value, low, high,
                                 row.get("server_version") or "",
                                 calibrated=_calibrated(line.key[3], line.metric, row),
                                 rerun=_rerun(line.key[3], line.metric, row)))


def _mark_steps(line: Line) -> None:
    better_up = higher_is_better(line.key[3], line.metric)
    line.points[0].new_server = True
    for before, after in zip(line.points, line.points[1:]):
        after.new_server = after.server != before.server
        # beyond the noise only between intervals that hold a rerun (issue #27), as in `llmspec compare`
        if before.calibrated and after.calibrated and changed(before.value, (before.low, before.high), after.value,
                                                              (after.low, after.high), before.rerun and after.rerun):
            after.step = "up" if after.value > before.value else "down"
            after.better = None if better_up is None else (after.step == "up") == better_up


def _charts(lines: list[Line], many: bool) -> list[Chart]:
    """Per headline figure, a line per configuration over the versions, intervals as bars."""
    values: dict[str, list[dict[str, Any]]] = {}
    for line in lines:
        host, model, config, profile = line.key
        name = " ".join((host, model, config) if many else (model, config))
        for i, p in enumerate(line.points):
            values.setdefault(f"{profile}: {line.metric}", []).append({
                "configuration": name, "version": i + 1, "commit": p.commit, "date": p.date[:10],
                "value": p.value, "low": p.low, "high": p.high, "server": p.server or "unknown",
                "change": {"up": "up, beyond noise", "down": "down, beyond noise"}.get(p.step, "")})
    return [Chart(f"history-{i}", title, _spec(title, points)) for i, (title, points) in enumerate(values.items())]


def _spec(title: str, points: list[dict[str, Any]]) -> dict[str, Any]:
    x = {"field": "version", "type": "ordinal", "title": "version (oldest first)"}
    color = {"field": "configuration", "type": "nominal", "title": "Configuration"}
    tips = [{"field": k} for k in ("configuration", "commit", "date", "server", "change")] + [
        {"field": "value", "type": "quantitative", "format": ".4g"}]
    return {
        "width": "container", "height": 200, "data": {"values": points},
        "encoding": {"x": x, "color": color},
        "layer": [
            {"mark": {"type": "rule"}, "encoding": {"y": {"field": "low", "type": "quantitative"},
                                                     "y2": {"field": "high"}}},
            {"mark": {"type": "line", "point": True, "tooltip": True},
             "encoding": {"y": {"field": "value", "type": "quantitative", "title": title.split(": ")[-1]},
                          "tooltip": tips}},
        ],
    }
