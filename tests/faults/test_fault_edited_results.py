"""Result files edited by hand or broken in git (a merge left its conflict markers, a key deleted, a figure
turned into text, a file cut short): `doit report` names the file and what is wrong with it in one line and
renders the rest, never a traceback; `doit` measures that cell again and leaves the other alone."""

import json
import shutil
import time

import pytest
from conftest import doit, executed_cells
from faultkit import CELL_A, record, results, two_cells

pytestmark = [pytest.mark.faults, pytest.mark.server]


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """Both cells measured once; each test breaks a copy."""
    root = two_cells(tmp_path_factory.mktemp("measured"), tokens=16)
    doit(root)
    return root


def conflict(text: str) -> str:
    at = text.index('\n "metrics"')
    return text[:at] + "\n<<<<<<< HEAD" + text[at:] + "=======\n" + text[at:] + ">>>>>>> other-host\n"


def without_metrics(text: str) -> str:
    data = json.loads(text)
    del data["metrics"]
    return json.dumps(data)


def figure_as_text(text: str) -> str:
    data = json.loads(text)
    data["metrics"]["tokens_per_s"] = "fast"
    return json.dumps(data)


BREAKS = {
    "merge-conflict markers": (conflict, "it holds merge-conflict markers (line "),
    "a missing key": (without_metrics, "the key 'metrics' is missing"),
    "a wrong type": (figure_as_text, "'metrics.tokens_per_s' is \"fast\", not a number"),
    "cut short": (lambda text: text[: len(text) // 2], "it is not valid JSON (line "),
}


@pytest.mark.parametrize("how", BREAKS)
def test_a_broken_result_is_named_by_the_report_and_measured_again(measured, tmp_path, how):
    root = tmp_path / "p"
    shutil.copytree(measured, root, symlinks=True)
    (path,) = (root / "build" / "results").glob("*/t/smol-a/Q4_1/interactive.json")
    other = next((root / "build" / "results").glob("*/t/smol-b/Q4_1/interactive.json")).read_bytes()
    breaker, why = BREAKS[how]
    path.write_text(breaker(path.read_text()))
    report = doit(root, "report")
    assert "Traceback" not in report.stderr + report.stdout
    (line,) = [x for x in report.stderr.splitlines() if "cannot read" in x]
    assert line.startswith(f"llmspec: WARNING: cannot read the result {path.relative_to(root)}: {why}"), line
    assert "smol-b" in (root / "build" / "reports" / "t" / "results.csv").read_text()  # the rest is reported
    t0 = time.perf_counter()
    again = doit(root)
    recover_s = time.perf_counter() - t0
    assert executed_cells(again.stdout) == [CELL_A]
    assert "cannot read" not in again.stderr  # measured again, so readable again
    assert results(root)["smol-a"]["status"] == "ok"
    lost = int(next((root / "build" / "results").glob("*/t/smol-b/Q4_1/interactive.json")).read_bytes() != other)
    record(f"a result file broken by hand or git ({how})", lost, 0, recover_s)
