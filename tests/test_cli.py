"""`llmspec check` validates without running anything: exit 0, or one line per bad spec and exit 2."""

import subprocess
import sys

from conftest import REPO, SMOL_MODEL


def llmspec(*args, cwd):
    return subprocess.run([sys.executable, "-m", "llmspec.cli", *args], cwd=cwd, capture_output=True, text=True)


def test_check_good_spec(project):
    proc = llmspec("check", str(project(SMOL_MODEL)), cwd=project.root)
    assert proc.returncode == 0
    assert proc.stdout.strip().endswith("ok (1 models, 1 cells)")


def test_check_reports_each_bad_spec_in_one_line(project):
    good = project(SMOL_MODEL, name="good")
    bad = project(SMOL_MODEL.replace('"Q4_1"]', '"Q9_K"]'), name="bad")
    proc = llmspec("check", str(good), str(bad), cwd=project.root)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("llmspec: specs/bad.toml: models[0].quants[0]: 'Q9_K' is not a known quantization")


def test_check_demo_spec_from_repo_root():
    proc = llmspec("check", "specs/demo.toml", cwd=REPO)
    assert proc.returncode == 0, proc.stderr
