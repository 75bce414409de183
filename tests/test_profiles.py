"""The profile registry (llmspec/profiles/__init__.py): a profile from outside the package joins
through `LLMSPEC_PLUGINS` and runs end to end through doit like a built-in one; bad entries are one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PIPELINE_ONLY, REPO, doit, executed_cells

TESTS = Path(__file__).resolve().parent
TOY = TESTS / "toy_profile.py"


@pytest.mark.doit
def test_a_toy_profile_in_one_module_runs_end_to_end_through_doit(fake_server, project, monkeypatch):
    """tests/toy_profile.py plus its registration (one environment line) are all it takes: the spec
    accepts [profiles.toy_echo], an [[endpoints]] cell measures it, the report rates its figure, and a
    second doit runs nothing. Nothing in llmspec/ names it."""
    registration = {"LLMSPEC_PLUGINS": str(TOY)}
    for name, value in registration.items():
        monkeypatch.setenv(name, value)
    fake = fake_server(answer_tokens=4)
    project(f"""
    {PIPELINE_ONLY}
    [profiles.toy_echo]
    requests = 6

    [[endpoints]]
    name = "box"
    url = "{fake.url}"
    profiles = ["toy_echo"]
    """)
    first = doit(project.root)
    assert executed_cells(first.stdout) == ["cell:t:box@remote:toy_echo"]
    (path,) = (project.root / "build" / "results").glob("*/t/box/remote/toy_echo.json")
    result = json.loads(path.read_text())
    assert result["status"] == "ok", result.get("reason")
    assert result["metrics"]["echo_requests"] == 6 and result["metrics"]["echo_ttft_s"] > 0
    assert result["intervals"]["echo_ttft_s"]["n"] == 6
    report = project.root / "build" / "reports" / "t"
    assert "toy_echo" in (report / "results.csv").read_text()
    assert "echo TTFT" in (report / "report.html").read_text()
    assert executed_cells(doit(project.root).stdout) == []
    # The files the toy touches: its module, and its registration (one line, outside llmspec/).
    naming = [p for p in (REPO / "llmspec").rglob("*") if p.is_file() and p.suffix in (".py", ".html", ".js")
              and "toy_echo" in p.read_text()]
    assert naming == [] and len(registration) == 1


def check(root: Path, plugins: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmspec.cli", "check", "specs/t.toml"], cwd=root,
                          capture_output=True, text=True, env={**os.environ, "LLMSPEC_PLUGINS": plugins})


def test_the_spec_knows_a_registered_profile_and_a_bad_entry_is_one_line(project):
    project("[profiles.toy_echo]\nrequests = 2\n" + '[[endpoints]]\nname = "box"\nurl = "http://127.0.0.1:9"\n'
            'profiles = ["toy_echo"]\n')
    ok = check(project.root, str(TOY))
    assert ok.returncode == 0 and ok.stdout.strip().endswith("ok (0 models, 1 cells)"), ok.stdout + ok.stderr
    for entry, says in (("no_such_module_here", "cannot import it"), ("nowhere/toy.py", "no such file"),
                        ("json", "the module declares no KIND")):
        bad = check(project.root, entry)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
        assert bad.stderr.startswith(f"llmspec: LLMSPEC_PLUGINS: {entry!r}: {says}"), bad.stderr
        assert bad.stderr.count("\n") == 1
