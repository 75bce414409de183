"""report.html from result files: escaping, heat-map ratings, host comparison, charts, offline, bounded details."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import vl_convert

from llmspec.report.configs import configs
from llmspec.report.details import read_details
from llmspec.report.frame import for_spec, load_frame
from llmspec.report.html import generate_html, generate_index, index_entry, script_json
from llmspec.report.recommend import recommend
from llmspec.report.vega import bundle
from llmspec.results import write_result
from llmspec.spec import Spec
from tests.test_report import HOST, make_result

OTHER_HOST = "intel-n100-4c-16g-123abc"
INJECTION = "<script>alert(1)</script><img src=x onerror=alert(2)>"
LOG_INJECTION = "main: error: <script>alert(3)</script>"
# model -> (quant, file bytes); speeds scale with the inverse of the file size, as on real hardware
MODELS = {"SmolLM2-135M-Instruct": (("Q4_1", 98_000_000), ("Q8_0", 145_000_000)),
          "gemma-3-270m": (("Q4_K_M", 253_000_000), ("Q8_0", 292_000_000))}
STRESSED = ("gemma-3-270m", "Q4_K_M")
FAILED = ("gemma-3-270m", "Q8_0", "load")


def demo_spec() -> Spec:
    return Spec.model_validate({
        "name": "demo", "description": "Two tiny models, every profile",
        "models": [{"name": name, "size": "135M", "quants": [q for q, _ in quants], "package": "x",
                    "files": {q: f"{name}.{q}.gguf" for q, _ in quants}} for name, quants in MODELS.items()],
        "profiles": {"interactive": {"requests": 3}, "long_context": {"sizes": [512, 1024, 65536]},
                     "batch": {"documents": 6}, "quality": {}, "load": {"concurrent": 2, "questions": 6},
                     "stress": {"duration_s": 60, "sample_interval_s": 5}},
        "thresholds": {"interactive": {"min_tokens_per_s": 10.0, "max_ttft_s": 2.0, "max_itl_cv_pct": 30.0},
                       "long_context": {"target_context_tokens": 1024, "max_load_s": 15.0},
                       "batch": {"min_docs_per_hour": 600.0},
                       "quality": {f"min_{c}_pct": 20.0 for c in ("math", "comprehension", "reasoning", "format")},
                       "load": {"max_p90_latency_s": 30.0}},
    })


def _profile(profile: str, speed: float, answer: str) -> tuple[dict, list, list]:
    """(metrics, samples, flags) shaped like the profile modules write them."""
    chat = {"prompt_name": "story-1", "ttft_s": 0.4 / speed, "content": answer, "finish_reason": "length",
            "chunk_times_s": [0.4 + i * 0.02 for i in range(60)], "timings": {"predicted_n": 96}}
    memory = {"peak_rss_gb": 0.3 + 0.4 / speed, "load_time_s": 0.8, "estimated_memory_gb": 0.5}
    if profile == "interactive":
        return {"ttft_s": 0.4 / speed, "tokens_per_s": 40.0 * speed, "itl_cv_pct": 12.0,
                "server_tokens_per_s": 41.0 * speed, **memory}, [chat] * 3, []
    if profile == "long_context":
        sizes = {f"{k}_{n}": v * n / 512 / speed for n in (512, 1024) for k, v in (("load_s", 0.9), ("ttft_s", 1.0))}
        return {**sizes, "max_context_tokens": 1024.0, "target_load_s": sizes["load_s_1024"],
                "rss_gb_1024": 0.5, **memory}, [{"size": 512, **chat}, {"size": 65536, "skipped": "beyond"}], [
                "65536 tokens not attempted: beyond the model's trained context of 8192 tokens"]
    if profile == "batch":
        return {"docs_per_hour": 900.0 * speed, "doc_time_cv_pct": 8.0, "degradation_pct": 2.0, **memory}, [chat], []
    if profile == "quality":
        scores = {f"{c}_pct": min(100.0, 25.0 * speed + i * 10) for i, c in
                  enumerate(("math", "comprehension", "reasoning", "format"))}
        item = {"id": "math-1", "category": "math", "prompt": "What is 2+2?", "answer": answer, "score": 0, **chat}
        return {**scores, "overall_pct": sum(scores.values()) / 4, "items": 20.0, **memory}, [item] * 7, []
    if profile == "load":  # three levels of users, stored flat as the profile does (llmspec.capacity)
        levels = {f"{name}_at_{users}": value for users in (1, 2, 4) for name, value in (
            ("p90_ttft_s", 0.3 * users / speed), ("p90_latency_s", 6.0 * users / speed), ("error_pct", 0.0),
            ("output_tokens_per_s", 30.0 * speed * users ** 0.5),
            ("tokens_per_s_per_user", 30.0 * speed / users ** 0.5))}
        return {"p50_latency_s": 3.0 / speed, "p90_latency_s": 6.0 / speed, "error_pct": 0.0,
                "output_tokens_per_s": 30.0 * speed, "max_users_at_slo": 4.0, **levels, **memory}, [
                {**chat, "index": 0, "latency_s": 3.0}], []
    vitals = [{"kind": "vitals", "elapsed_s": 5.0 * i, "temperature_c": 55.0 + i * 1.5, "tokens_per_s": 30.0}
              for i in range(13)]
    requests = [{"kind": "request", "elapsed_s": 4.0 * i + 2, "decode_tokens_per_s": 31.0 * speed - i * 0.2}
                for i in range(15)]
    return {"tokens_per_s": 31.0 * speed, "drift_pct": 4.0, "max_temperature_c": 73.0, "swap_peak_gb": 0.0,
            "rss_peak_gb": 0.7, "aborted": 0.0}, vitals + requests, []


def write_demo(root: Path, host: str = HOST, speed: float = 1.0, answer: str = INJECTION) -> int:
    """Every profile of every configuration of demo_spec, one failed cell and one stress run; returns files."""
    written = 0
    for model, quants in MODELS.items():
        for quant, size in quants:
            for profile in ("interactive", "long_context", "batch", "quality", "load", "stress"):
                if profile == "stress" and (model, quant) != STRESSED:
                    continue
                metrics, samples, flags = _profile(profile, speed * 100_000_000 / size, answer)
                result = {**make_result(quant, host=host), "metrics": metrics, "samples": samples, "flags": flags,
                          "cell": {"spec": "demo", "model": model, "quant": quant, "profile": profile}}
                result["model_file"] = {**result["model_file"], "name": f"{model}.{quant}.gguf", "size": size}
                if (model, quant, profile) == FAILED:
                    result.update(status="error", metrics={}, reason="llama-server exited with code 1",
                                  server_log_tail=["llama_model_load: loading model", LOG_INJECTION])
                write_result(root / host / "demo" / model / quant / f"{profile}.json", result)
                written += 1
    return written


def render(tmp_path: Path, spec: Spec | None = None, bandwidth: dict | None = None, limit: int = 300) -> str:
    """The report pipeline as build_report runs it, from result files under tmp_path/results."""
    spec = spec or demo_spec()
    frame, _ = for_spec(load_frame(tmp_path / "results", spec.name), spec)
    table = configs(frame, spec, bandwidth or {})
    details = read_details(frame, tmp_path / "results", limit=limit)
    return generate_html(frame, table, recommend(table, spec), spec, "2026-11-23T10:00:00Z", details,
                         bundle(tmp_path.parent / "vega-cache"))


class Page(HTMLParser):
    """Every start tag with its attributes, the text per element id, and inline script bodies."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.scripts: list[tuple[dict[str, str], str]] = []
        self.text: list[str] = []
        self._script: dict[str, str] | None = None
        self.feed(html)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = {k: v or "" for k, v in attrs}
        self.tags.append((tag, attrs))
        if tag == "script":
            self._script = attrs
            self.scripts.append((attrs, ""))

    def handle_endtag(self, tag):
        if tag == "script":
            self._script = None

    def handle_data(self, data):
        if self._script is not None:
            attrs, body = self.scripts[-1]
            self.scripts[-1] = (attrs, body + data)
        else:
            self.text.append(data)

    def by_id(self, ident: str) -> dict[str, str]:
        return next(attrs for _, attrs in self.tags if attrs.get("id") == ident)

    def chart(self, key: str) -> dict:
        body = next(body for attrs, body in self.scripts if attrs.get("id") == f"chart-data-{key}")
        return json.loads(body)


def heat_cells(html: str) -> dict[tuple[str, str], list[tuple[str, str]]]:
    """(model, quant) -> [(class, label)] of the ratings overview table."""
    table = html[html.index('<table class="heatmap">'):]
    table = table[:table.index("</table>")]
    rows = {}
    for row in re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td>(.*?)</tr>", table, re.S):
        rows[row[0], row[1]] = re.findall(r'<td class="rating ([^"]+)"[^>]*>([^<]*)</td>', row[2])
    return rows


def test_model_output_and_log_lines_show_as_text_never_as_markup(tmp_path):
    write_demo(tmp_path / "results")
    html = render(tmp_path)
    page = Page(html)
    assert INJECTION not in html and LOG_INJECTION not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in html
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in html  # the server log excerpt of the failed cell
    assert not [attrs for tag, attrs in page.tags if tag == "img" or "onerror" in attrs]
    # every script is ours: the chart library, our code, or JSON data; none holds the injected call
    assert all("alert(" not in body for _, body in page.scripts)
    assert any(INJECTION in text for text in page.text)  # the answer reads as written, once unescaped


def test_heat_map_cell_carries_the_configurations_rating(tmp_path):
    write_demo(tmp_path / "results")
    html = render(tmp_path)
    cells = heat_cells(html)
    profiles = ["interactive", "long_context", "batch", "quality", "load", "stress"]
    smol = dict(zip(profiles, cells["SmolLM2-135M-Instruct", "Q4_1"]))
    assert smol["interactive"] == ("rating-Excellent", "Excellent")  # 40.8 t/s vs 10, TTFT 0.39 s vs 2
    assert smol["stress"] == ("rating-none", "not run")
    gemma = dict(zip(profiles, cells["gemma-3-270m", "Q8_0"]))
    assert gemma["interactive"] == ("rating-Good", "Good")  # 13.7 t/s: 37% past the 10 t/s minimum
    assert gemma["load"] == ("status-error", "error")
    title = re.search(r'<td class="rating rating-Good" title="([^"]+)">Good', html).group(1)
    assert title.startswith("tokens_per_s 13.6986 &gt;= 10: ok (+37%)")


def test_two_hosts_are_compared_side_by_side(tmp_path):
    write_demo(tmp_path / "results")
    write_demo(tmp_path / "results", host=OTHER_HOST, speed=0.2)
    html = render(tmp_path)
    section = html[html.index('<section id="hosts">'):html.index('<section id="charts">')]
    assert section.index(HOST) < section.index(OTHER_HOST)  # a column group per host, in host order
    row = re.search(r"<tr><td>SmolLM2-135M-Instruct</td><td>Q4_1</td><td>interactive</td>.*?</tr>", section, re.S)
    values = re.findall(r'<td class="num"[^>]*>([^<]*)</td><td class="rating rating-(\w+)"', row.group(0))
    assert values == [("40.8", "Excellent"), ("8.16", "Failed")]  # the slow host misses 10 t/s
    assert len(Page(html).chart("speed")["data"]["values"]) == 8  # 4 configurations on each host
    assert Page(html).chart("speed")["encoding"]["color"]["field"] == "host"


def test_one_host_has_no_comparison_section(tmp_path):
    write_demo(tmp_path / "results")
    assert 'id="hosts"' not in render(tmp_path)


def test_charts_embed_their_points_as_parseable_json(tmp_path):
    write_demo(tmp_path / "results")
    page = Page(render(tmp_path))
    speed = {(v["model"], v["quant"]): v for v in page.chart("speed")["data"]["values"]}
    assert speed["SmolLM2-135M-Instruct", "Q4_1"]["tokens_per_s"] == 40.8163  # 40 x 100 MB / 98 MB, rounded
    assert speed["SmolLM2-135M-Instruct", "Q4_1"]["size_gb"] == 0.098
    assert speed["SmolLM2-135M-Instruct", "Q4_1"]["meaning"] == "Nearly instant for most prompts"
    context = page.chart("context")["data"]["values"]
    assert sorted({v["context_tokens"] for v in context}) == [512, 1024]
    assert len(context) == 8
    quality = page.chart("quality")
    assert quality["encoding"]["x"]["sort"] == ["Q4_K_M", "Q4_1", "Q8_0"]  # lowest precision first
    temps = [v["value"] for v in page.chart("stress-temperature")["data"]["values"]]
    assert temps[0] == 55.0 and temps[-1] == 73.0 and len(temps) == 13
    assert len(page.chart("stress-speed")["data"]["values"]) == 15
    assert len(page.chart("memory")["data"]["values"]) == 4


def test_chart_data_cannot_close_its_script_block():
    value = {"model": "</script><script>alert(4)</script><!--", "note": "a & b > c"}
    text = str(script_json(value))
    assert not set("<>&") & set(text)
    assert json.loads(text) == value


def test_charts_without_data_say_what_to_run(tmp_path):
    write_demo(tmp_path / "results")
    for path in (tmp_path / "results").rglob("*.json"):
        if path.stem != "interactive":
            path.unlink()
    page = Page(render(tmp_path))
    assert page.chart("speed")["data"]["values"]
    text = " ".join(page.text)
    assert "No quality results yet: add [profiles.quality] to the spec and run `doit`." in text
    assert "No stress results yet" in text and "No long-context results yet" in text


def _loaded_urls(html: str) -> list[str]:
    """Every URL an element or stylesheet of the page would load or link: src, href, srcset,
    poster, data, action, formaction, xlink:href, CSS url() and @import, meta refresh, <base>."""
    page = Page(html)
    urls = []
    for tag, attrs in page.tags:
        for name in ("src", "href", "srcset", "poster", "data", "action", "formaction", "xlink:href",
                     "background", "manifest", "ping", "cite", "longdesc"):
            if name in attrs:
                urls.append(attrs[name])
        if tag == "meta" and attrs.get("http-equiv", "").lower() == "refresh":
            urls.append(attrs.get("content", ""))
        urls += re.findall(r"url\(([^)]*)\)", attrs.get("style", ""))
    styles = re.findall(r"<style[^>]*>(.*?)</style>", html, re.S | re.I)
    for css in styles:
        urls += re.findall(r"url\(([^)]*)\)", css) + re.findall(r"@import\s+([^;]+);", css)
    return urls


def test_the_page_loads_nothing_from_the_network(tmp_path):
    write_demo(tmp_path / "results")
    html = render(tmp_path)
    urls = _loaded_urls(html)
    assert all(u.startswith("#") for u in urls), urls  # in-page links only
    assert not [u for u in urls if re.match(r"\s*(https?:)?//", u)]
    page = Page(html)
    scripts = [attrs for tag, attrs in page.tags if tag == "script"]
    assert scripts and not [a for a in scripts if "src" in a]  # every script inline
    assert not [t for t, _ in page.tags if t in ("link", "iframe", "object", "embed", "base")]
    # the check above does catch what it is meant to
    assert _loaded_urls('<link href="https://example.com/x.css"><p style="background:url(//x.org/a)">') == [
        "https://example.com/x.css", "//x.org/a"]


def test_details_are_bounded_and_name_the_other_files(tmp_path):
    files = write_demo(tmp_path / "results")
    html = render(tmp_path, limit=5)
    page = Page(html)
    shown = [attrs["id"] for tag, attrs in page.tags if tag == "details" and "cell" in attrs.get("class", "")]
    assert len(shown) == 5
    assert f"Excerpts are shown for 5 of {files} cells" in html
    # the failed cell is chosen first, with its log; cells beyond the limit name their result file
    failed = re.search(r'<summary>gemma-3-270m Q8_0 · load · <span class="status-error">.*?</details>', html, re.S)
    assert failed and "&lt;script&gt;alert(3)" in failed.group(0)
    assert f"<code class=\"path\">{HOST}/demo/SmolLM2-135M-Instruct/Q8_0/quality.json</code>" in html
    sample = html[html.index("Sample 1"):]
    assert "more characters" not in sample[:sample.index("</pre>")]  # short answers are whole


def test_long_answers_are_cut_with_a_note(tmp_path):
    write_demo(tmp_path / "results", answer="word " * 400)
    html = render(tmp_path)
    assert "… [1500 more characters]" in html
    assert "… [40 more items]" in html  # 60 chunk times, 20 shown


def test_flagged_roofline_shows_a_mark_and_scores_are_explained(tmp_path):
    write_demo(tmp_path / "results")
    html = render(tmp_path, bandwidth={HOST: 1000.0})  # a huge bound: every configuration is far below it
    configs_table = html[html.index('<table class="sortable filterable configs">'):]
    configs_table = configs_table[:configs_table.index("</table>")]
    assert configs_table.count("⚑ check") == 4
    assert "How the derived scores are computed" in html and "<strong>Efficiency score</strong>" in html


def test_memory_predictions_are_graded_in_a_table_of_their_own(tmp_path):
    write_demo(tmp_path / "results")
    html = render(tmp_path)
    table = html[html.index('<table class="sortable memory">'):]
    table = table[:table.index("</table>")]
    rows = re.findall(r"<tr><td>(.*?)</td><td>(.*?)</td>(.*?)</tr>", table, re.S)
    assert len(rows) == 4  # every configuration that ran
    cells = {(m, q): re.findall(r'<td class="num"[^>]*>([^<]*)</td>', rest) for m, q, rest in rows}
    peak = 0.3 + 0.4 * 98_000_000 / 100_000_000  # SmolLM2 Q4_1's speed factor in _profile
    assert cells["SmolLM2-135M-Instruct", "Q4_1"] == [
        f"{peak:.2f}", "0.50", f"{(0.5 - peak) / peak * 100:+.0f}%", "", "",  # no trend prediction stored
        "", "", "", "", "", ""]  # nor a speed prediction
    assert "largest error:" in html


def test_recommendations_and_findings_head_the_page(tmp_path):
    write_demo(tmp_path / "results")
    html = render(tmp_path)
    summary = html[html.index('<section id="summary">'):html.index('<section id="overview">')]
    assert "Interactive chat" in summary and "✓" in summary and "Overall best" in summary
    assert "Fastest generation: SmolLM2-135M-Instruct Q4_1" in summary
    assert f"CPU of {HOST}" in summary


def test_an_empty_report_renders_without_the_chart_library(tmp_path):
    html = render(tmp_path)
    assert "No results for this spec yet" in html and "vegaEmbed(" in html  # our code checks for it
    assert "window.vegaEmbed=" not in html  # 900 KB left out when nothing is drawn


def test_index_links_every_spec_with_its_counts(tmp_path):
    write_demo(tmp_path / "results")
    spec = demo_spec()
    frame, _ = for_spec(load_frame(tmp_path / "results", "demo"), spec)
    html = generate_index([index_entry(frame, spec, "2026-11-23T10:00:00Z")])
    assert '<a href="demo/report.html">demo</a>' in html
    assert HOST in html and "Two tiny models, every profile" in html and "2026-11-23T10:00:00Z" in html
    counts = index_entry(frame, spec, "").ratings
    assert sum(counts.values()) == frame["rating"].drop_nulls().len() and counts["Excellent"] > 0


def test_chart_library_is_cut_out_once_per_vl_convert_version_and_repaired_if_broken(tmp_path):
    script = bundle(tmp_path)
    cached = tmp_path / f"vega-embed-{vl_convert.__version__}.js"
    assert cached.read_text(encoding="utf-8") == script and "window.vegaEmbed=" in script
    cached.write_text("half a file</script>", encoding="utf-8")
    assert bundle(tmp_path) == script == cached.read_text(encoding="utf-8")


def wide_spec(n: int) -> Spec:
    """n configurations of one model family, interactive only: a report whose tables must page."""
    return Spec.model_validate({
        "name": "demo", "profiles": {"interactive": {"requests": 3}},
        "models": [{"name": f"model-{i:03d}", "quants": ["Q4_1"], "package": "x", "files": {"Q4_1": "x.gguf"}}
                   for i in range(n)]})


def write_wide(root: Path, n: int) -> None:
    for i in range(n):
        result = {**make_result("Q4_1", ttft_s=0.5, tokens_per_s=10.0 + i, itl_cv_pct=5.0),
                  "cell": {"spec": "demo", "model": f"model-{i:03d}", "quant": "Q4_1", "profile": "interactive"}}
        write_result(root / HOST / "demo" / f"model-{i:03d}" / "Q4_1" / "interactive.json", result)


def test_a_large_table_shows_a_page_and_packs_the_rest_losslessly(tmp_path):
    """Above PAGE_ROWS rows a table holds its first page, a row saying how many more there are, and
    the rest as compressed row HTML that report.js unpacks: the same rows, none lost or doubled."""
    import base64
    import zlib

    from llmspec.report.tables import PAGE_ROWS, ROWS_TYPE

    write_wide(tmp_path / "results", 130)
    html = render(tmp_path, wide_spec(130))
    table = html[html.index('id="profile-interactive"'):]
    table = table[:table.index("</table>")]
    shown = re.findall(r"<tr data-rating=[^>]*><td>(model-\d+)</td>", table)
    assert len(shown) == PAGE_ROWS == 100
    assert "30 more rows" in table
    packed = re.search(rf'<script type="{ROWS_TYPE}" data-count="130">([^<]+)</script>', table).group(1)
    rest = json.loads(zlib.decompress(base64.b64decode(packed)))
    names = shown + [re.match(r"<tr data-rating=[^>]*><td>(model-\d+)</td>", row).group(1) for row in rest]
    assert sorted(names) == [f"model-{i:03d}" for i in range(130)]
    write_wide(tmp_path / "small" / "results", 3)
    small = render(tmp_path / "small", wide_spec(3))
    assert f'<script type="{ROWS_TYPE}"' not in small and "more rows" not in small  # all there, as before


def test_session_ttft_per_turn_and_tool_call_accuracy_per_category_are_drawn(tmp_path):
    """The agent charts (#26): each session's TTFT per turn against its prompt size, with the cache and read
    whole, as medians over its repeats; and tool-call accuracy per BFCL category per quant with intervals."""
    spec = Spec.model_validate({**demo_spec().model_dump(exclude_none=True),
                                "profiles": {"session": {}, "tool_calls": {}}})
    for quant, slow in (("Q4_1", 1.0), ("Q8_0", 1.5)):
        turns = [{"run": run, "repeat": r, "turn": k, "prompt_tokens": 1000 * k + r, "ttft_s": slow * t}
                 for r in (1, 2) for k in (1, 2, 3)
                 for run, t in (("single", 0.1 if k > 1 else 0.5 * k), ("nocache", 0.5 * k + r / 100))]
        session = {**make_result(quant), "metrics": {"ttft_s": 0.1, "cache_hit_pct": 90.0},
                   "samples": [{"calibration": True, "ttft_s": 0.2}, *turns],
                   "cell": {"spec": "demo", "model": "SmolLM2-135M-Instruct", "quant": quant, "profile": "session"}}
        write_result(tmp_path / "results" / HOST / "demo" / "SmolLM2-135M-Instruct" / quant / "session.json", session)
        calls = {**make_result(quant), "metrics": {"accuracy_pct": 70.0 / slow, "accuracy_pct_simple": 90.0 / slow,
                                                   "accuracy_pct_parallel": 40.0 / slow, "malformed_call_pct": 0.0,
                                                   "irrelevance_pct": 80.0},
                 "intervals": {"accuracy_pct_simple": {"n": 10, "low": 60.0, "high": 98.0, "method": "Wilson"}},
                 "cell": {"spec": "demo", "model": "SmolLM2-135M-Instruct", "quant": quant, "profile": "tool_calls"}}
        write_result(tmp_path / "results" / HOST / "demo" / "SmolLM2-135M-Instruct" / quant / "tool_calls.json", calls)
    page = Page(render(tmp_path, spec))
    session = page.chart("session")
    on = "cache on (turn 1 read cold: nothing cached yet)"  # turn 1 has nothing to reuse: never called a hit
    points = {(v["quant"], v["cache"], v["turn"]): v for v in session["data"]["values"]}
    assert len(points) == 12 and {c for _, c, _ in points} == {on, "cache off"}  # 2 quants x on/off x 3 turns
    last = points["Q4_1", "cache off", 3]
    assert (round(last["ttft_s"], 6), last["prompt_tokens"]) == (1.515, 3001.5)  # medians over the two repeats
    assert points["Q8_0", on, 2]["ttft_s"] == 0.15
    assert [points["Q4_1", on, turn]["read"] for turn in (1, 2, 3)] == [
        "cold: nothing cached yet", *["cached prefix reused, the new part read"] * 2]
    assert {points["Q4_1", "cache off", turn]["read"] for turn in (1, 2, 3)} == {"whole (cache off)"}
    assert session["encoding"]["strokeDash"]["field"] == "cache"
    assert {"field": "read", "title": "Prompt read"} in session["encoding"]["tooltip"]
    shown = {(v["quant"], v["category"]): v for v in page.chart("categories")["data"]["values"]}
    assert set(shown) == {(q, c) for q in ("Q4_1", "Q8_0") for c in ("simple", "parallel")}
    assert page.chart("categories")["encoding"]["x"]["sort"] == ["simple", "parallel"]  # BFCL's order
    assert (shown["Q4_1", "simple"]["accuracy_pct"], shown["Q4_1", "simple"]["low"]) == (90.0, 60.0)
    assert round(shown["Q8_0", "parallel"]["accuracy_pct"], 3) == 26.667 and shown["Q8_0", "parallel"]["low"] is None


def test_a_results_reason_and_flags_read_as_text_in_its_profile_table(tmp_path):
    """The profile tables' rows are built over whole columns (tables.py); a reason or a flag with
    markup, quotes or an ampersand still reads as written, escaped once, under the status."""
    write_demo(tmp_path / "results")
    path = next((tmp_path / "results").rglob("interactive.json"))
    result = json.loads(path.read_text())
    result.update(reason="<i>why</i>", flags=["<b>bold</b> & co", "it's \"quoted\""])
    path.write_text(json.dumps(result))
    html = render(tmp_path)
    assert "<b>bold</b>" not in html and "<i>why</i>" not in html
    assert ('<div class="reason">&lt;i&gt;why&lt;/i&gt;</div><div class="flags">&lt;b&gt;bold&lt;/b&gt; &amp; co; '
            "it&#x27;s &quot;quoted&quot;</div></td>") in html
