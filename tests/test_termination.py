"""Every smart-termination rule, decided from specs and result sets made in the test.

The plan applying them to result files on disk is tests/test_planner.py."""

import pytest

from llmspec.plan.termination import GB, Evidence, decide, derived_size, estimate_memory, fit_memory, need_text
from llmspec.spec import Spec

META = {"layers": 32, "heads": 32, "kv_heads": 8, "embedding_length": 4096}


def model(name, size, quants):
    return {"name": name, "size": size, "quants": quants, "package": "p",
            "files": {q: f"{name}-{q}.gguf" for q in quants}}


def spec_of(models, **extra):
    return Spec.model_validate({"name": "s", "models": models, **extra})


def test_estimate_is_weights_plus_kv_cache_plus_compute_buffers_and_never_below_1_2x():
    est = estimate_memory(int(4 * GB), META, 32768)
    kv = 2 * 32 * 32768 * 8 * 128 * 2 / GB  # K and V, f16, GQA with 8 KV heads: 4 GB
    assert est.total_gb == pytest.approx(4 + kv + est.compute_bytes / GB)
    assert 0.05 < est.compute_bytes / GB < 0.25  # a 512-token micro-batch's buffers and the mask at 32k
    assert "KV cache 4.00 GB at 32768 tokens" in est.detail
    assert estimate_memory(int(4 * GB), META, 4096).total_gb == pytest.approx(4.8)  # small KV: the 1.2x floor
    assert estimate_memory(int(10 * GB), None, 4096).total_gb == pytest.approx(12.0)  # the design's size x 1.2 rule


def test_derived_size_scales_by_bits_per_weight():
    assert derived_size(1000, "Q8_0", "Q4_K_M") == int(1000 * 4.85 / 8.5)
    assert derived_size(1000, "Q8_0", "UNKNOWN") is None


def test_fit_memory_is_a_least_squares_line():
    a, b = fit_memory([(1.0, 1.5), (2.0, 2.5), (4.0, 4.5)])
    assert (a, b) == pytest.approx((1.0, 0.5))
    assert fit_memory([(2.0, 3.0)]) == (1.5, 0.0)
    assert fit_memory([]) is None


def decide_for(spec, name, quant, ev, larger=lambda other: True):
    m = next(x for x in spec.models if x.name == name)
    return decide(m, quant, ev, 4096, larger)


def test_memory_preflight_skips_with_figures():
    spec = spec_of([model("big", "13B", ["Q8_0"])])
    ev = Evidence(14.0, "limits.max_memory_gb = 14", sizes={("big", "Q8_0"): int(13 * GB)})
    d = decide_for(spec, "big", "Q8_0", ev)
    assert d.skip and d.rule == "memory"
    assert d.reason.startswith("needs about 15.6 GB (weights 13.00 GB") and "limits.max_memory_gb = 14" in d.reason
    assert not decide_for(spec, "big", "Q8_0", Evidence(64.0, "64 GB", sizes={("big", "Q8_0"): int(13 * GB)})).skip


def test_an_oom_kill_raises_the_memory_preflight_to_the_peak_it_was_seen_at():
    """A server the kernel killed holding 20 GB needs at least that at that context (or a larger one), whatever
    the estimate (15.6 GB) says; a smaller context and other files keep their estimate."""
    spec = spec_of([model("big", "13B", ["Q8_0", "Q4_K_M"])])
    sizes = {("big", "Q8_0"): int(13 * GB), ("big", "Q4_K_M"): int(7 * GB)}
    ev = Evidence(18.0, "the 18.0 GB of RAM available", sizes=sizes, killed={("big", "Q8_0", 4096): 20.0})
    d = decide_for(spec, "big", "Q8_0", ev)
    assert d.skip and d.rule == "memory"
    assert d.reason == ("needs about 20.0 GB (its server was killed (out of memory?) holding 20.0 GB before), "
                        "more than the 18.0 GB of RAM available"), d.reason
    assert ev.killed_at("big", "Q8_0", 8192) == 20.0 and ev.killed_at("big", "Q8_0", 2048) == 0.0
    assert not decide(spec.models[0], "Q8_0", ev, 2048, lambda other: True).skip  # a smaller context: not known
    assert not decide_for(spec, "big", "Q4_K_M", ev).skip  # another file of the model
    assert need_text(int(13 * GB), None, 4096, (None, None), None, None, killed_gb=20.0) == "20.00 GB (killed at)"
    assert need_text(int(13 * GB), None, 4096, (None, None), None, None, killed_gb=2.0) == "15.60 GB"


def test_a_killed_result_is_what_the_planner_learns_the_peak_from():
    from llmspec.results import killed_peak_gb

    assert killed_peak_gb("the server was killed (out of memory?): SIGKILL, peak memory seen 3.25 GB") == 3.25
    assert killed_peak_gb("the server died of SIGSEGV, peak memory seen 3.25 GB") is None  # a crash, not memory


def test_smaller_model_failing_skips_larger_at_same_quant_only():
    spec = spec_of([model("small", "1B", ["Q4_K_M", "Q5_K_M"]), model("big", "7B", ["Q4_K_M", "Q5_K_M"])])
    ev = Evidence(64.0, "64 GB", ratings={("small", "Q4_K_M"): "Failed", ("small", "Q5_K_M"): "Good"})
    d = decide_for(spec, "big", "Q4_K_M", ev)
    assert d.rule == "threshold" and d.evidence == "threshold:small@Q4_K_M"
    assert not decide_for(spec, "big", "Q5_K_M", ev).skip
    assert not decide_for(spec, "big", "Q4_K_M", ev, larger=lambda other: False).skip


def test_q4_q5_q6_all_failing_skips_q8():
    spec = spec_of([model("m", "7B", ["Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0"])])
    failed = {("m", q): "Failed" for q in ("Q4_K_M", "Q5_K_M", "Q6_K")}
    d = decide_for(spec, "m", "Q8_0", Evidence(64.0, "64 GB", ratings=failed))
    assert d.rule == "quant_path" and "Q4_K_M, Q5_K_M, Q6_K all failed" in d.reason
    one_passed = {**failed, ("m", "Q5_K_M"): "Acceptable"}
    assert not decide_for(spec, "m", "Q8_0", Evidence(64.0, "64 GB", ratings=one_passed)).skip


def test_memory_trend_predicts_from_observed_peaks():
    spec = spec_of([model("m", "7B", ["Q8_0"])])
    ev = Evidence(10.0, "10 GB", observed={("a", "Q4_K_M"): (2.0, 3.0), ("b", "Q4_K_M"): (4.0, 5.0)},
                  sizes={("m", "Q8_0"): int(7.5 * GB)})
    d = decide_for(spec, "m", "Q8_0", ev)  # 7.5 GB file: the size x 1.2 rule gives 9 GB (fits); the trend 8.5 (fits)
    assert not d.skip and d.predicted_peak_gb == pytest.approx(8.5)
    ev.limit_gb = 8.7  # the pre-flight estimate (9.0) already says no
    assert decide_for(spec, "m", "Q8_0", ev).rule == "memory"
    ev2 = Evidence(8.0, "8 GB", observed={("a", "Q4_K_M"): (1.0, 3.0), ("b", "Q4_K_M"): (2.0, 6.0)},
                   sizes={("m", "Q8_0"): int(3 * GB)})
    d2 = decide_for(spec, "m", "Q8_0", ev2)  # pre-flight says 3.6 GB, but observed peaks grow 3x the file
    assert d2.rule == "memory_trend" and d2.predicted_peak_gb == pytest.approx(9.0)
    assert d2.reason.startswith("predicted peak memory 9.00 GB from 2 measured configuration(s) exceeds 8 GB")


def test_a_miss_within_the_noise_does_not_skip_larger_models():
    """The planner rates with the same function as the report, intervals included: 1.9 t/s whose
    interval reaches the 2.0 minimum is Poor, not Failed, so no larger model is skipped for it."""
    from llmspec.plan.cells import Cell
    from llmspec.plan.termination import interactive_labels
    from llmspec.results import Result

    spec = spec_of([model("small", "1B", ["Q4_K_M"])])
    noisy = Result(cell={}, status="ok", metrics={"tokens_per_s": 1.9, "ttft_s": 1.0, "itl_cv_pct": 5.0},
                   intervals={"tokens_per_s": {"n": 6, "low": 1.7, "high": 2.2, "method": "m"}})
    stored = {("small", "Q4_K_M"): {Cell(spec.name, "small", "Q4_K_M", "interactive"): noisy}}
    assert interactive_labels(stored, spec.thresholds) == {("small", "Q4_K_M"): "Poor"}
    noisy.intervals = None
    assert interactive_labels(stored, spec.thresholds) == {("small", "Q4_K_M"): "Failed"}
