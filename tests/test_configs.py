"""The configurations table: one row per model file per host, with the derived figures a user compares."""

from pathlib import Path

import polars as pl
import pytest
from test_report import HOST, make_result

from llmspec.machine.bandwidth import FAR_BELOW_PCT
from llmspec.profiles import ORDER as PROFILE_ORDER
from llmspec.report.configs import configs, schema
from llmspec.report.frame import for_spec, load_frame
from llmspec.results import write_result
from llmspec.spec import Spec

OTHER = "intel-n100-4c-16g-123abc"
GEMMA, SMOL = "gemma-3-270m", "SmolLM2-135M-Instruct"
PROFILES = {"interactive": {}, "long_context": {"sizes": [2048, 4096]}, "batch": {}, "quality": {}, "load": {}}


def make_spec(profiles=PROFILES, endpoints=(), **thresholds):
    """gemma Q4_K_M/Q8_0 and SmolLM2 Q8_0/Q4_1/F16; run order: gemma Q4_K_M, SmolLM2 Q8_0, gemma Q8_0, Q4_1, F16."""
    return Spec.model_validate({
        "name": "demo", "server": {"ctx_size": 2048}, "profiles": profiles, "thresholds": thresholds,
        "models": [
            {"name": GEMMA, "size": "270M", "quants": ["Q4_K_M", "Q8_0"], "package": "x",
             "files": {"Q4_K_M": "g4.gguf", "Q8_0": "g8.gguf"}},
            {"name": SMOL, "size": "135M", "quants": ["Q8_0", "Q4_1", "F16"], "package": "x",
             "files": {"Q8_0": "s8.gguf", "Q4_1": "s4.gguf", "F16": "s16.gguf"}},
        ],
        "endpoints": list(endpoints),
    })


def add(root: Path, model, quant, profile, host=HOST, status="ok", reason="", size=100_000_000, intervals=None,
        items=None, **metrics):
    """One result file shaped like a cell's (test_report.make_result), for any model and profile."""
    result = make_result(quant, status, reason, host)
    result["cell"] = {"spec": "demo", "model": model, "quant": quant, "profile": profile}
    result["metrics"] = metrics
    if intervals:
        result["intervals"] = {name: {"n": 8, "low": low, "high": high, "method": "m"}
                               for name, (low, high) in intervals.items()}
    if items:
        result["items"] = items
    result["model_file"] = None if quant == "remote" else {**result["model_file"], "size": size}
    write_result(root / host / "demo" / model / quant / f"{profile}.json", result)


def interactive(root, model, quant, tps, ttft=0.5, cv=5.0, rss=0.3, **kw):
    add(root, model, quant, "interactive", tokens_per_s=tps, ttft_s=ttft, itl_cv_pct=cv, peak_rss_gb=rss,
        swap_peak_gb=0.0, **kw)


def quality(root, model, quant, overall, math=None, **kw):
    math = overall if math is None else math
    add(root, model, quant, "quality", overall_pct=overall, math_pct=math, comprehension_pct=overall,
        reasoning_pct=overall, format_pct=100.0, peak_rss_gb=0.2, **kw)


def right(k: int, n: int) -> dict[str, int]:
    """Per-item scores with the first k of n items right: nested, so two such sets differ only one way."""
    return {f"item-{i:02d}": int(i < k) for i in range(n)}


def table(root, spec, bandwidth=None) -> pl.DataFrame:
    frame, _ = for_spec(load_frame(root, "demo"), spec)
    return configs(frame, spec, bandwidth or {})


def row(t: pl.DataFrame, model, quant, host=HOST) -> dict:
    found = t.filter((pl.col("host") == host) & (pl.col("model") == model) & (pl.col("quant") == quant))
    return found.row(0, named=True)


def test_one_row_per_model_file_with_each_profiles_headline_figures(tmp_path):
    interactive(tmp_path, SMOL, "Q8_0", 62.4, ttft=0.94, rss=0.30)
    add(tmp_path, SMOL, "Q8_0", "long_context", max_context_tokens=4096.0, target_load_s=3.5, rss_gb_2048=0.33,
        rss_gb_4096=0.41, peak_rss_gb=0.40)
    add(tmp_path, SMOL, "Q8_0", "batch", docs_per_hour=120.0, doc_time_cv_pct=4.0, degradation_pct=1.0,
        rss_peak_gb=0.35, tokens_per_s=55.0)  # batch's own speed is not the interactive headline
    quality(tmp_path, SMOL, "Q8_0", 85.0)
    add(tmp_path, SMOL, "Q8_0", "load", p90_latency_s=7.5, error_pct=0.0, output_tokens_per_s=80.0,
        tokens_per_s=20.0, peak_rss_gb=0.38)
    interactive(tmp_path, GEMMA, "Q4_K_M", 33.7, size=253_000_000)
    t = table(tmp_path, make_spec())
    assert t.select("model", "quant").rows() == [(GEMMA, "Q4_K_M"), (SMOL, "Q8_0")]  # the spec's run order
    smol = row(t, SMOL, "Q8_0")
    assert (smol["tokens_per_s"], smol["ttft_s"], smol["max_context_tokens"], smol["target_load_s"]) == (
        62.4, 0.94, 4096, 3.5)
    assert (smol["docs_per_hour"], smol["quality_pct"], smol["p90_latency_s"]) == (120.0, 85.0, 7.5)
    assert smol["peak_memory_gb"] == 0.41  # long_context's rss at 4096 tokens is the largest figure
    assert smol["model_size_gb"] == 0.1
    # 4096 tokens is short of the 8192 target; math 85 % is 6 % past its 80 % minimum
    assert [smol[f"{p}_rating"] for p in PROFILE_ORDER] == ["Excellent", "Failed", "Excellent", "Acceptable",
                                                            None, "Excellent", None,  # no divergence, no stress
                                                            *[None] * (len(PROFILE_ORDER) - 7)]  # nor the agent ones
    gemma = row(t, GEMMA, "Q4_K_M")
    assert (gemma["interactive_status"], gemma["batch_status"], gemma["quality_pct"]) == ("ok", None, None)
    assert gemma["model_size_gb"] == 0.253


def test_quality_degradation_is_against_the_most_precise_quant_with_a_quality_result(tmp_path):
    for quant, score in (("F16", 80.0), ("Q8_0", 75.0), ("Q4_1", 62.0)):
        quality(tmp_path, SMOL, quant, score)
    quality(tmp_path, GEMMA, "Q8_0", 90.0)  # no F16 of gemma: Q8_0 is its reference
    quality(tmp_path, GEMMA, "Q4_K_M", 70.0)
    t = table(tmp_path, make_spec())
    got = {(r["model"], r["quant"]): (r["quality_reference_quant"], r["quality_degradation_pts"])
           for r in t.iter_rows(named=True)}
    assert got == {(SMOL, "F16"): ("F16", 0.0), (SMOL, "Q8_0"): ("F16", 5.0), (SMOL, "Q4_1"): ("F16", 18.0),
                   (GEMMA, "Q8_0"): ("Q8_0", 0.0), (GEMMA, "Q4_K_M"): ("Q8_0", 20.0)}


def test_a_quant_without_quality_result_is_neither_reference_nor_compared(tmp_path):
    add(tmp_path, SMOL, "F16", "quality", status="skipped", reason="needs about 9 GB, more than 4 GB")
    quality(tmp_path, SMOL, "Q8_0", 75.0)
    quality(tmp_path, SMOL, "Q4_1", 60.0)
    interactive(tmp_path, GEMMA, "Q4_K_M", 30.0)
    t = table(tmp_path, make_spec())
    assert (row(t, SMOL, "Q4_1")["quality_reference_quant"], row(t, SMOL, "Q4_1")["quality_degradation_pts"]) == (
        "Q8_0", 15.0)
    for model, quant in ((SMOL, "F16"), (GEMMA, "Q4_K_M")):
        assert (row(t, model, quant)["quality_reference_quant"], row(t, model, quant)["quality_degradation_pts"]) == (
            None, None)
    assert row(t, SMOL, "F16")["quality_reason"] == "needs about 9 GB, more than 4 GB"


def test_efficiency_and_cost_benefit_follow_the_design_formulas_and_the_best_scores_100(tmp_path):
    interactive(tmp_path, SMOL, "Q8_0", 60.0, rss=0.5)
    add(tmp_path, SMOL, "Q8_0", "long_context", max_context_tokens=4096.0, target_load_s=2.0, rss_gb_4096=0.45)
    quality(tmp_path, SMOL, "Q8_0", 80.0)
    interactive(tmp_path, SMOL, "F16", 40.0, rss=1.0)
    quality(tmp_path, SMOL, "F16", 90.0)
    interactive(tmp_path, GEMMA, "Q4_K_M", 100.0, rss=0.4)  # no quality result: no cost-benefit
    t = table(tmp_path, make_spec())
    # efficiency = tokens/s x context / GB; context: measured 4096, else the server's ctx_size 2048
    assert [row(t, m, q)["efficiency_raw"] for m, q in ((SMOL, "Q8_0"), (SMOL, "F16"), (GEMMA, "Q4_K_M"))] == (
        [pytest.approx(60 * 4096 / 0.5), pytest.approx(40 * 2048 / 1.0), pytest.approx(100 * 2048 / 0.4)])
    assert [row(t, m, q)["efficiency_score"] for m, q in ((SMOL, "Q8_0"), (SMOL, "F16"), (GEMMA, "Q4_K_M"))] == [
        96.0, 16.0, 100.0]
    # cost-benefit = quality x (tokens/s / fastest) / (memory / largest): 0.8*0.6/0.5 and 0.9*0.4/1.0
    assert row(t, SMOL, "Q8_0")["cost_benefit_raw"] == pytest.approx(0.96)
    assert row(t, SMOL, "F16")["cost_benefit_raw"] == pytest.approx(0.36)
    assert (row(t, SMOL, "Q8_0")["cost_benefit_score"], row(t, SMOL, "F16")["cost_benefit_score"]) == (100.0, 37.5)
    assert row(t, GEMMA, "Q4_K_M")["cost_benefit_score"] is None


def test_roofline_is_speed_times_file_bytes_over_the_hosts_bandwidth(tmp_path):
    interactive(tmp_path, SMOL, "Q8_0", 50.0, size=150_000_000)
    interactive(tmp_path, GEMMA, "Q4_K_M", 5.0, size=100_000_000)
    interactive(tmp_path, SMOL, "Q8_0", 20.0, host=OTHER)  # no bandwidth measured on this host
    t = table(tmp_path, make_spec(), {HOST: 10.0})
    smol, gemma = row(t, SMOL, "Q8_0"), row(t, GEMMA, "Q4_K_M")
    assert smol["roofline_pct"] == pytest.approx(50 * 150e6 / 10e9 * 100)  # 75 %
    assert gemma["roofline_pct"] == pytest.approx(5.0)
    assert (smol["roofline_flag"], gemma["roofline_flag"]) == (False, 5.0 < FAR_BELOW_PCT)
    other = row(t, SMOL, "Q8_0", host=OTHER)
    assert (other["bandwidth_gbps"], other["roofline_pct"], other["roofline_flag"]) == (None, None, None)


def test_two_hosts_and_an_endpoint_stay_apart(tmp_path):
    spec = make_spec(endpoints=[{"name": "office", "url": "http://10.0.0.5:8000", "profiles": ["interactive"]}])
    quality(tmp_path, SMOL, "F16", 80.0)
    quality(tmp_path, SMOL, "Q8_0", 70.0)
    quality(tmp_path, SMOL, "Q8_0", 72.0, host=OTHER)  # the other host has no F16: its own reference
    quality(tmp_path, SMOL, "Q4_1", 60.0, host=OTHER)
    interactive(tmp_path, "office", "remote", 25.0)
    t = table(tmp_path, spec, {HOST: 10.0, OTHER: 5.0})
    assert t.select("host", "quant").rows() == [(HOST, "Q8_0"), (HOST, "F16"), (HOST, "remote"),
                                                (OTHER, "Q8_0"), (OTHER, "Q4_1")]
    assert row(t, SMOL, "Q8_0")["quality_degradation_pts"] == 10.0
    assert (row(t, SMOL, "Q4_1", OTHER)["quality_reference_quant"], row(t, SMOL, "Q4_1", OTHER)[
        "quality_degradation_pts"]) == ("Q8_0", 12.0)
    remote = row(t, "office", "remote")
    assert (remote["tokens_per_s"], remote["model_size_gb"], remote["roofline_pct"]) == (25.0, None, None)
    assert row(t, SMOL, "Q8_0", OTHER)["bandwidth_gbps"] == 5.0


def test_no_results_give_an_empty_table_with_every_column(tmp_path):
    t = table(tmp_path, make_spec())
    assert t.height == 0
    assert t.schema == pl.Schema(schema())
    named = ["host", "model", "quant", "variant", "config", "model_size_gb",
             *(f"{p}_{c}" for p in PROFILE_ORDER for c in ("status", "rating")),
             "tokens_per_s", "ttft_s", "max_context_tokens", "target_load_s", "docs_per_hour", "quality_pct",
             "kld_mean", "same_top_pct", "ppl_ratio", "max_users_at_slo", "p90_latency_s", "p90_ttft_s",
             "tokens_per_s_per_user", "drift_pct", "max_temperature_c", "json_valid_pct", "fields_correct_pct",
             "constraint_cost_pct", "session_ttft_s", "cache_hit_pct", "session_ttft_s_nocache",
             "session_ttft_s_concurrent", "tool_accuracy_pct", "malformed_call_pct", "pass_at_1_pct",
             "peak_memory_gb", "quality_reference_quant",
             "quality_degradation_pts", "quality_loss_p", "quality_items_compared", "efficiency_raw",
             "efficiency_score", "cost_benefit_raw", "cost_benefit_score", "bandwidth_gbps", "roofline_pct",
             "roofline_flag", "peak_server_gb", "estimated_memory_gb", "estimate_error_pct", "predicted_peak_rss_gb",
             "prediction_error_pct", "decode_measured_tps", "predicted_tokens_per_s", "speed_error_pct",
             "prompt_measured_tps", "predicted_prompt_tokens_per_s", "prompt_error_pct", "model_size_bytes",
             "context_size", "capacity"]
    assert t.columns[: len(named)] == named


def test_skipped_and_error_cells_carry_status_and_reason_but_no_figures(tmp_path):
    add(tmp_path, GEMMA, "Q8_0", "interactive", status="skipped", reason="needs about 9 GB, more than 4 GB")
    add(tmp_path, SMOL, "Q8_0", "interactive", status="error", reason="failed to load: bad magic",
        tokens_per_s=3.0)  # a partial figure in an error result is not a measurement
    t = table(tmp_path, make_spec())
    gemma, smol = row(t, GEMMA, "Q8_0"), row(t, SMOL, "Q8_0")
    assert (gemma["interactive_status"], gemma["interactive_rating"], gemma["interactive_reason"]) == (
        "skipped", None, "needs about 9 GB, more than 4 GB")
    assert (smol["interactive_status"], smol["tokens_per_s"], smol["efficiency_score"]) == ("error", None, None)


def test_memory_predictions_are_graded_against_the_cell_that_used_the_most(tmp_path):
    interactive(tmp_path, SMOL, "Q8_0", 60.0, rss=0.30, estimated_memory_gb=0.36)
    add(tmp_path, SMOL, "Q8_0", "long_context", max_context_tokens=1024.0, target_load_s=1.0, peak_rss_gb=0.40,
        estimated_memory_gb=0.50, predicted_peak_rss_gb=0.30)
    add(tmp_path, SMOL, "Q8_0", "batch", status="error", reason="the machine was busy", peak_rss_gb=0.90,
        estimated_memory_gb=0.10)  # not a measurement: not graded
    interactive(tmp_path, GEMMA, "Q8_0", 30.0, rss=0.50)  # measured before the runner stored predictions
    t = table(tmp_path, make_spec())
    smol = row(t, SMOL, "Q8_0")
    assert smol["peak_server_gb"] == 0.40 and smol["estimated_memory_gb"] == 0.50
    assert smol["estimate_error_pct"] == pytest.approx(25.0)  # cautious by a quarter
    assert smol["prediction_error_pct"] == pytest.approx(-25.0)  # the trend under-predicted
    gemma = row(t, GEMMA, "Q8_0")
    assert gemma["peak_server_gb"] == 0.50 and gemma["estimate_error_pct"] is None


def test_speed_predictions_are_graded_against_the_measured_decode_speed(tmp_path):
    interactive(tmp_path, SMOL, "Q8_0", 60.0, server_tokens_per_s=80.0, predicted_tokens_per_s=100.0)
    interactive(tmp_path, SMOL, "Q4_1", 60.0, predicted_tokens_per_s=45.0)  # no server clock: the client's
    interactive(tmp_path, GEMMA, "Q8_0", 30.0)  # measured before the runner stored predictions
    t = table(tmp_path, make_spec())
    q8, q4, gemma = row(t, SMOL, "Q8_0"), row(t, SMOL, "Q4_1"), row(t, GEMMA, "Q8_0")
    assert (q8["decode_measured_tps"], q8["predicted_tokens_per_s"]) == (80.0, 100.0)
    assert q8["speed_error_pct"] == pytest.approx(25.0)  # optimistic by a quarter
    assert q4["speed_error_pct"] == pytest.approx(-25.0)
    assert gemma["speed_error_pct"] is None


def test_prompt_speed_predictions_are_graded_against_the_servers_prompt_speed(tmp_path):
    interactive(tmp_path, SMOL, "Q8_0", 60.0, prompt_tokens_per_s=200.0, predicted_prompt_tokens_per_s=300.0,
                predicted_tokens_per_s=50.0)
    interactive(tmp_path, SMOL, "Q4_1", 60.0, prompt_tokens_per_s=400.0, predicted_prompt_tokens_per_s=300.0)
    interactive(tmp_path, GEMMA, "Q8_0", 30.0, predicted_prompt_tokens_per_s=300.0)  # no prompt figure: not graded
    t = table(tmp_path, make_spec())
    q8, q4, gemma = row(t, SMOL, "Q8_0"), row(t, SMOL, "Q4_1"), row(t, GEMMA, "Q8_0")
    assert (q8["prompt_measured_tps"], q8["predicted_prompt_tokens_per_s"]) == (200.0, 300.0)
    assert q8["prompt_error_pct"] == pytest.approx(50.0)  # optimistic by half
    assert q8["speed_error_pct"] == pytest.approx(-1 / 6 * 100)  # decode graded beside it, as before
    assert q4["prompt_error_pct"] == pytest.approx(-25.0) and q4["speed_error_pct"] is None
    assert gemma["prompt_error_pct"] is None


def sweep_spec():
    return Spec.model_validate({
        "name": "demo", "server": {"ctx_size": 2048, "sweep": {"threads": [1, 2], "flash_attn": ["on"]}},
        "profiles": {"interactive": {}, "divergence": {}},
        "models": [{"name": SMOL, "size": "135M", "quants": ["Q8_0", "Q4_1"], "package": "x",
                    "files": {"Q8_0": "s8.gguf", "Q4_1": "s4.gguf"}}]})


def test_variants_are_configurations_and_a_divergence_result_stands_for_each(tmp_path):
    from llmspec.report.recommend import recommend
    from llmspec.report.settings import host_info

    spec = sweep_spec()
    for quant, slow, fast in (("Q8_0", (40.0, 38.0, 42.0), (70.0, 66.0, 74.0)),
                              ("Q4_1", (50.0, 45.0, 55.0), (52.0, 47.0, 57.0))):
        for variant, (tps, low, high) in (("t1-fa", slow), ("t2-fa", fast)):
            interactive(tmp_path, SMOL, f"{quant}+{variant}", tps, intervals={"tokens_per_s": (low, high)})
    add(tmp_path, SMOL, "Q4_1", "divergence", kld_mean=0.03, same_top_pct=92.0, ppl_ratio=1.02)
    frame, left_out = for_spec(load_frame(tmp_path, "demo"), spec)
    assert left_out == 0 and set(frame["config"]) == {"Q8_0+t1-fa", "Q8_0+t2-fa", "Q4_1+t1-fa", "Q4_1+t2-fa",
                                                      "Q4_1"}
    t = configs(frame, spec, {})
    assert t.select("quant", "variant", "kld_mean").rows() == [
        ("Q8_0", "t1-fa", None), ("Q8_0", "t2-fa", None), ("Q4_1", "t1-fa", 0.03), ("Q4_1", "t2-fa", 0.03)]
    settings = recommend(t, spec, host_info(frame)).settings
    by_quant = {f.quant: f for f in settings}
    # 2 threads is the spec's [server] default on this 2-core host: the baseline
    assert by_quant["Q8_0"].best == by_quant["Q8_0"].base == "t2-fa"
    q4 = by_quant["Q4_1"]
    assert (q4.best, q4.base, q4.measurable) == ("t2-fa", "t2-fa", False)
    assert "run with -t 2 -fa on" in q4.sentence()


def test_a_gain_over_the_baseline_counts_only_beyond_the_intervals(tmp_path):
    from llmspec.report.recommend import recommend
    from llmspec.report.settings import host_info

    spec = Spec.model_validate({**sweep_spec().model_dump(exclude={"path", "root"}),
                                "server": {"ctx_size": 2048, "threads": 1, "sweep": {"threads": [1, 2, 4]}}})
    for variant, tps, low, high in (("t1", 40.0, 38.0, 42.0), ("t2", 70.0, 66.0, 74.0), ("t4", 41.0, 35.0, 45.0)):
        interactive(tmp_path, SMOL, f"Q8_0+{variant}", tps, intervals={"tokens_per_s": (low, high)})
    frame, _ = for_spec(load_frame(tmp_path, "demo"), spec)
    (found,) = recommend(configs(frame, spec, {}), spec, host_info(frame)).settings
    assert (found.best, found.base, found.variants, found.measurable) == ("t2", "t1", 3, True)
    assert found.gain_pct == pytest.approx(75.0)
    assert found.sentence() == ("SmolLM2-135M-Instruct Q8_0, interactive chat: t2 is best of 3 variants "
                                "(70.0 (66.0-74.0) t/s), +75% over t1's 40.0 (38.0-42.0); run with -t 2")
