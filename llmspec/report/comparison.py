"""The comparison page of `llmspec compare` (llmspec/compare.py): one self-contained HTML file.

It follows report.html's rules (html.py): autoescaped text, chart data in JSON script blocks
escaped by `script_json`, the chart library inlined (vega.py), the report's own style and
behaviour (sortable tables, chart drawing) included, so it opens offline and makes no request.
One table per pair of sides and, per headline figure, a chart of every side's value with its
95 % interval, so a change beyond the noise shows as bars that do not overlap.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from llmspec.report.charts import Chart
from llmspec.report.html import _env  # one Jinja environment (filters, autoescape) for every page

CHART_STEP = 18  # pixels per (configuration, side) point of a chart


def generate_comparison(pairs: list[Any], generated_at: str, vega_js: str, show_all: bool = False) -> str:
    """The page of `llmspec.compare.compare`'s pairs (not imported here: compare imports this module);
    rows identical on both sides are counted, not shown, unless `show_all`."""
    drawn = charts(pairs, show_all)
    return _env().get_template("compare.html").render(
        pairs=[_pair(p, show_all) for p in pairs], sides=[pairs[0].a, *(p.b for p in pairs)],
        generated_at=generated_at, charts=drawn, vega_js=Markup(vega_js) if drawn else "")


def _pair(pair: Any, show_all: bool) -> dict[str, Any]:
    rows = []
    shown, same = pair.shown(show_all)
    for row in shown:
        note = row.only or row.status_note
        for i, c in enumerate(row.changes or [None]):
            verdict = (c.verdict() if c.a and c.b else note or c.verdict()) if c else note or "no headline figure"
            rows.append({
                "label": row.label if i == 0 else "", "metric": c.metric if c else "-",
                "a": c.a.text() if c and c.a else "-", "b": c.b.text() if c and c.b else "-",
                "change": c.change_text() if c else "", "sort": repr(c.pct) if c and c.pct is not None else "",
                "verdict": verdict, "cls": _verdict_class(verdict),
                "differs": ", ".join(row.differs) if i == 0 else "",
                "provenance": _provenance_title(row) if i == 0 else "",
            })
    return {"a": pair.a, "b": pair.b, "differs": pair.differs, "rows": rows, "same": same}


def _verdict_class(verdict: str) -> str:
    """Green for better, red for worse, yellow for a change whose better way the profile does not say."""
    if verdict.startswith("beyond noise"):
        return "beyond " + ("worse" if verdict.endswith("worse") else "better" if verdict.endswith("better") else "")
    return "only" if verdict.startswith("only") else ""


def _provenance_title(row) -> str:
    return "; ".join(f"{side}: " + ", ".join(f"{k} {v}" for k, v in e.provenance.items())
                     for side, e in (("A", row.a), ("B", row.b)) if e and e.provenance)


def charts(pairs: list[Any], show_all: bool = False) -> list[Chart]:
    """One chart per headline figure: each configuration's value on every side, with its interval
    (the rows the tables show)."""
    values: dict[str, list[dict[str, Any]]] = {}
    rows = {id(p): p.shown(show_all)[0] for p in pairs}
    order = list(dict.fromkeys(row.label for p in pairs for row in rows[id(p)]))  # the tables' order
    sides = [(pairs[0].a, lambda r: r.a), *((p.b, lambda r: r.b) for p in pairs)]
    for pair, (side, pick) in zip([pairs[0], *pairs], sides):
        for row in rows[id(pair)]:
            entry = pick(row)
            for metric, fig in (entry.figures.items() if entry else ()):
                point = {"configuration": row.label, "side": side.label, "value": fig.value,
                         "low": fig.low, "high": fig.high}
                if point not in values.setdefault(metric, []):
                    values[metric].append(point)
    return [Chart(metric, metric, _spec(metric, points, order)) for metric, points in values.items()]


def _spec(metric: str, points: list[dict[str, Any]], order: list[str]) -> dict[str, Any]:
    shown = {p["configuration"] for p in points}
    y = {"field": "configuration", "type": "nominal", "title": None, "sort": [c for c in order if c in shown],
         "axis": {"labelLimit": 320}}
    color = {"field": "side", "type": "nominal", "title": "Side", "sort": None}
    return {
        # a fixed height (not a step per line): "container" width makes Vega fit both ways, and it drops a step
        "width": "container", "height": CHART_STEP * len(points),
        "data": {"values": points},
        "encoding": {"y": y, "yOffset": {"field": "side", "sort": None}, "color": color},
        "layer": [
            {"mark": {"type": "rule", "strokeWidth": 2},
             "encoding": {"x": {"field": "low", "type": "quantitative", "title": metric}, "x2": {"field": "high"}}},
            {"mark": {"type": "point", "filled": True, "size": 60, "tooltip": True},
             "encoding": {"x": {"field": "value", "type": "quantitative", "title": metric},
                          "tooltip": [{"field": "configuration"}, {"field": "side"},
                                      {"field": "value", "type": "quantitative", "format": ".4g"},
                                      {"field": "low", "type": "quantitative", "format": ".4g", "title": "95% low"},
                                      {"field": "high", "type": "quantitative", "format": ".4g",
                                       "title": "95% high"}]}},
        ],
    }
