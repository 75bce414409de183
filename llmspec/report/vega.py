"""The Vega / Vega-Lite / vega-embed JavaScript that draws report.html's charts, offline.

vl-convert-python ships these libraries compiled into one classic script (it is what its own
`vegalite_to_html(bundle=True)` pages inline), so the report needs no CDN and opens with no
network. Asking vl-convert for that page costs seconds, so the script is cut out once and kept
on disk, keyed by vl-convert's version: a report after the first reads a file.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

import vl_convert

from llmspec.results import write_text_atomic

SCRIPT_OPEN = '<script type="text/javascript">'
# Text that would end or confuse an inline <script> element in the HTML parser.
UNSAFE_IN_SCRIPT = re.compile(r"</script|<!--|<script", re.IGNORECASE)


def bundle(cache_dir: Path | None) -> str:
    """The script defining `window.vegaEmbed`, from `cache_dir` when a previous report cut it out."""
    if cache_dir is None:
        return _extract()
    path = Path(cache_dir) / f"vega-embed-{vl_convert.__version__}.js"
    try:
        script = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        script = ""
    if not _inlineable(script):  # missing, or edited by hand: the page must not break on it
        script = _extract()
        write_text_atomic(path, script)
    return script


@cache
def _extract() -> str:
    """The first inline script of a bundled vl-convert page: the libraries, before the chart's own code."""
    page = vl_convert.vegalite_to_html({"mark": "point"}, bundle=True)
    start = page.find(SCRIPT_OPEN)
    end = page.find("</script>", start)
    script = page[start + len(SCRIPT_OPEN):end] if start >= 0 and end >= 0 else ""
    if not _inlineable(script):
        raise RuntimeError(f"vl-convert {vl_convert.__version__} no longer inlines vega-embed as one plain "
                           "script; report.html's charts need llmspec/report/vega.py updated for it")
    return script


def _inlineable(script: str) -> bool:
    """Defines vegaEmbed and holds nothing that would end or confuse its <script> element."""
    return "window.vegaEmbed" in script and not UNSAFE_IN_SCRIPT.search(script)
