"""RECOMMENDED CONFIGURATIONS: which lines a user reads, in which order, with which figures and reasons."""

import json

from test_configs import GEMMA, OTHER, SMOL, add, interactive, make_spec, quality, right, row, table
from test_report import HOST

from llmspec.report.configs import loss_statement
from llmspec.report.recommend import recommend

MEMORY = "needs about {} GB (weights + KV cache), more than 4 GB available"


def recommendations(root, spec=None):
    spec = spec or make_spec()
    return recommend(table(root, spec), spec)


def case(recs, key):
    return next(c for c in recs.use_cases if c.key == key)


def test_lines_rank_by_rating_then_speed_and_skips_collapse_into_one_cross(tmp_path):
    interactive(tmp_path, GEMMA, "Q4_K_M", 33.7, ttft=1.32)
    interactive(tmp_path, GEMMA, "Q8_0", 2.2, ttft=3.0)  # 10 % over the 2 t/s minimum: Acceptable
    interactive(tmp_path, SMOL, "Q8_0", 62.4, ttft=0.94)
    add(tmp_path, SMOL, "Q4_1", "interactive", status="skipped", reason=MEMORY.format(5))
    add(tmp_path, SMOL, "F16", "interactive", status="skipped", reason=MEMORY.format(9))
    recs = recommendations(tmp_path)
    lines = case(recs, "interactive").lines
    assert [(x.symbol, x.model, x.quant, x.rating) for x in lines] == [
        ("✓", SMOL, "Q8_0", "Excellent"), ("✓", GEMMA, "Q4_K_M", "Excellent"), ("⚠", GEMMA, "Q8_0", "Acceptable"),
        ("✗", SMOL, "Q4_1", None)]
    assert lines[0].figures == "62.4 t/s, 0.94 s TTFT"
    assert lines[0].why == "Nearly instant for most prompts; feels instant, excellent UX"
    assert lines[2].why == "borderline: speed 2.2 t/s against a 2 t/s minimum"
    assert (lines[3].why, lines[3].also) == ("exceeds memory", ((HOST, SMOL, "F16"),))
    text = recs.text()
    assert text.startswith("RECOMMENDED CONFIGURATIONS:\n\nInteractive chat:\n")
    assert f"  ✓ {SMOL} Q8_0 - Excellent (62.4 t/s, 0.94 s TTFT): Nearly instant" in text
    assert f"  ✗ {SMOL} Q4_1, {SMOL} F16 - exceeds memory" in text
    assert HOST not in text  # one host: lines do not name it
    doc = json.loads(json.dumps(recs.as_dict()))
    assert doc["use_cases"][0]["lines"][3]["also"] == [{"host": HOST, "model": SMOL, "quant": "F16"}]
    assert doc["overall"][0]["model"] == SMOL


def test_at_most_three_lines_are_recommended_and_errors_say_so(tmp_path):
    for model, quant, tps in ((GEMMA, "Q4_K_M", 30.0), (GEMMA, "Q8_0", 20.0), (SMOL, "Q8_0", 50.0),
                              (SMOL, "Q4_1", 70.0)):
        interactive(tmp_path, model, quant, tps)
    add(tmp_path, SMOL, "F16", "interactive", status="error", reason="failed to load: tensor data is not aligned")
    lines = case(recommendations(tmp_path), "interactive").lines
    assert [(x.mark, x.quant, x.figures.split(",")[0]) for x in lines] == [
        ("ok", "Q4_1", "70 t/s"), ("ok", "Q8_0", "50 t/s"), ("ok", "Q4_K_M", "30 t/s"), ("fail", "F16", "")]
    assert lines[-1].why == "error: did not load"


def test_crosses_stop_at_three_lines_and_the_rest_share_the_last(tmp_path):
    interactive(tmp_path, GEMMA, "Q4_K_M", 1.5)  # Failed: below 2 t/s
    add(tmp_path, SMOL, "Q8_0", "interactive", status="skipped", reason=MEMORY.format(5))
    add(tmp_path, GEMMA, "Q8_0", "interactive", status="error", reason="failed to load: bad magic")
    add(tmp_path, SMOL, "Q4_1", "interactive", status="error", reason="request 2 failed: read timed out (600 s)")
    add(tmp_path, SMOL, "F16", "interactive", status="skipped", reason=MEMORY.format(9))
    lines = case(recommendations(tmp_path), "interactive").lines
    assert [(x.label(), x.why) for x in lines] == [
        (f"{GEMMA} Q4_K_M", "speed below 2 t/s"), (f"{SMOL} Q8_0, {SMOL} F16", "exceeds memory"),
        (f"{GEMMA} Q8_0, {SMOL} Q4_1", "other reasons (see the report)")]


def test_accuracy_critical_work_names_the_loss_against_the_reference_quant(tmp_path):
    spec = make_spec(quality={"min_math_pct": 60, "min_comprehension_pct": 60, "min_reasoning_pct": 60,
                              "min_format_pct": 60})
    quality(tmp_path, SMOL, "F16", 90.0, items=right(45, 50))
    quality(tmp_path, SMOL, "Q8_0", 88.0, items=right(44, 50))  # one item apart: chance
    quality(tmp_path, SMOL, "Q4_1", 78.0, math=50.0, items=right(39, 50))  # six apart, all one way: p = 2/64
    quality(tmp_path, GEMMA, "Q8_0", 90.0)
    quality(tmp_path, GEMMA, "Q4_K_M", 80.0)  # measured before per-item scores were kept
    recs = recommendations(tmp_path, spec)
    lines = [x for x in case(recs, "quality").lines if x.model == SMOL]
    assert [(x.symbol, x.quant, x.rating) for x in lines] == [
        ("✓", "F16", "Excellent"), ("✓", "Q8_0", "Good"), ("✗", "Q4_1", "Failed")]
    assert (lines[0].figures, lines[0].why) == (
        "90% overall, 90% math", "the most precise quant measured; every check beats its threshold by 50% or more")
    assert (lines[1].figures, lines[1].why) == (
        "88% overall, 88% math, no measurable loss vs F16 on 50 items (-2 pts is within chance)",
        "every check beats its threshold by 20% or more")
    assert (f"  ✗ {SMOL} Q4_1 - Failed (78% overall, 50% math, -12 pts vs F16 (exact McNemar p = 0.031 on 50 items)):"
            " math score below 60%") in recs.text()
    gemma = row(table(tmp_path, spec), GEMMA, "Q4_K_M")  # not among the three lines shown
    assert (gemma["quality_loss_p"], loss_statement(gemma)) == (None, "-10 pts vs Q8_0 (not compared item by item)")


def test_overall_best_has_the_best_worst_rating_and_quality_breaks_ties(tmp_path):
    interactive(tmp_path, SMOL, "Q8_0", 62.4)  # Excellent, but batch only Acceptable
    add(tmp_path, SMOL, "Q8_0", "batch", docs_per_hour=32.0, doc_time_cv_pct=5.0, degradation_pct=1.0)
    interactive(tmp_path, GEMMA, "Q4_K_M", 2.5)  # Good and Good, quality 70
    add(tmp_path, GEMMA, "Q4_K_M", "batch", docs_per_hour=40.0, doc_time_cv_pct=5.0, degradation_pct=1.0)
    quality(tmp_path, GEMMA, "Q4_K_M", 70.0)
    interactive(tmp_path, SMOL, "F16", 2.6, rss=0.5)  # Good and Excellent, quality 80 (rated Acceptable: not counted)
    add(tmp_path, SMOL, "F16", "batch", docs_per_hour=100.0, doc_time_cv_pct=5.0, degradation_pct=1.0)
    quality(tmp_path, SMOL, "F16", 80.0)
    recs = recommendations(tmp_path)
    (best,) = recs.overall
    assert (best.mark, best.model, best.quant, best.rating) == ("ok", SMOL, "F16", "Good")
    assert best.reasons == ("Good for interactive chat, Excellent for batch",
                            "0.5 GB RAM at peak: plenty of headroom",
                            "80% on the quality items, the most precise quant measured",
                            "2.6 t/s: slow but readable, like careful dictation")
    text = recs.text()
    assert f"Overall best: ✓ {SMOL} F16 (Good, 2.6 t/s, 0.5 s TTFT, 0.5 GB RAM)\n  - Good for interactive" in text
    assert [x.quant for x in case(recs, "batch").lines] == ["F16", "Q4_K_M", "Q8_0"]


def test_two_hosts_are_named_and_each_gets_its_overall_best(tmp_path):
    interactive(tmp_path, SMOL, "Q8_0", 62.4)
    interactive(tmp_path, SMOL, "Q8_0", 1.5, host=OTHER)
    interactive(tmp_path, GEMMA, "Q4_K_M", 2.5, host=OTHER)
    recs = recommendations(tmp_path)
    assert [(x.host, x.model, x.rating) for x in recs.overall] == [(HOST, SMOL, "Excellent"), (OTHER, GEMMA, "Good")]
    text = recs.text()
    assert f"  ✓ {SMOL} Q8_0 on {HOST} - Excellent (62.4 t/s" in text
    assert f"  ✗ {SMOL} Q8_0 on {OTHER} - Failed (1.5 t/s, 0.5 s TTFT): speed below 2 t/s" in text
    assert f"Overall best on {OTHER}: ✓ {GEMMA} Q4_K_M (Good" in text


def test_raising_a_threshold_changes_the_recommendation(tmp_path):
    interactive(tmp_path, SMOL, "Q8_0", 62.4)
    before = recommendations(tmp_path)
    after = recommendations(tmp_path, make_spec(interactive={"min_tokens_per_s": 100.0}))
    assert [(x.symbol, x.rating) for x in case(before, "interactive").lines] == [("✓", "Excellent")]
    assert [(x.symbol, x.rating, x.why) for x in case(after, "interactive").lines] == [
        ("✗", "Failed", "speed below 100 t/s")]
    assert (before.overall[0].mark, after.overall[0].mark) == ("ok", "fail")
    assert case(after, "interactive").note == "nothing to recommend: every configuration failed or was skipped"


def test_use_cases_without_results_say_why_in_one_line(tmp_path):
    interactive(tmp_path, SMOL, "Q8_0", 62.4)
    text = recommendations(tmp_path, make_spec(profiles={"interactive": {}, "batch": {}})).text()
    assert "No results yet: Document processing (batch)" in text
    assert ("Not measured in this spec: Long context work (8k tokens), Accuracy-critical work, "
            "Serving several users") in text


def test_nothing_measured_is_one_line(tmp_path):
    recs = recommendations(tmp_path)
    assert recs.text() == "RECOMMENDED CONFIGURATIONS: nothing measured yet."
    assert recs.overall == () and json.loads(json.dumps(recs.as_dict()))["overall"] == []


def test_configurations_whose_speed_intervals_overlap_are_not_ranked_by_speed(tmp_path):
    """62 and 60 t/s whose intervals overlap are the same speed as far as the measurement can tell:
    the smaller one in memory goes first, and both lines say why. 40 t/s stands apart."""
    interactive(tmp_path, SMOL, "Q8_0", 62.0, rss=0.50, intervals={"tokens_per_s": (57.0, 66.0)})
    interactive(tmp_path, SMOL, "Q4_1", 60.0, rss=0.30, intervals={"tokens_per_s": (55.0, 64.0)})
    interactive(tmp_path, GEMMA, "Q4_K_M", 40.0, rss=0.20, intervals={"tokens_per_s": (39.0, 41.0)})
    lines = case(recommendations(tmp_path), "interactive").lines
    assert [(x.model, x.quant) for x in lines] == [(SMOL, "Q4_1"), (SMOL, "Q8_0"), (GEMMA, "Q4_K_M")]
    assert lines[0].why.endswith(f"no measurable speed difference from {SMOL} Q8_0 (95% intervals overlap): "
                                 "ahead on memory")
    assert lines[1].why.endswith(f"no measurable speed difference from {SMOL} Q4_1 (95% intervals overlap)")
    assert "difference" not in lines[2].why
    interactive(tmp_path, SMOL, "Q8_0", 62.0, rss=0.50, intervals={"tokens_per_s": (61.5, 62.5)})
    interactive(tmp_path, SMOL, "Q4_1", 60.0, rss=0.30, intervals={"tokens_per_s": (59.5, 60.5)})
    apart = case(recommendations(tmp_path), "interactive").lines  # now told apart: speed decides again
    assert [(x.model, x.quant) for x in apart][:2] == [(SMOL, "Q8_0"), (SMOL, "Q4_1")]


def test_key_findings_name_a_quality_loss_only_when_the_paired_test_confirms_it(tmp_path):
    from llmspec.report.html import _quality_loss

    quality(tmp_path, SMOL, "Q8_0", 45.0, items=right(9, 20))
    quality(tmp_path, SMOL, "Q4_1", 35.0, items=right(7, 20))  # two items apart: p = 0.5
    assert _quality_loss(table(tmp_path, make_spec())) == [
        f"No quant lost measurable quality against its reference: the largest difference, {SMOL} Q4_1 on {HOST}, "
        "no measurable loss vs Q8_0 on 20 items (-10 pts is within chance)."]
    quality(tmp_path, SMOL, "Q4_1", 5.0, items=right(1, 20))  # eight apart: p = 0.008
    assert _quality_loss(table(tmp_path, make_spec())) == [
        f"Largest quality loss from quantization: {SMOL} Q4_1 on {HOST}, "
        "-40 pts vs Q8_0 (exact McNemar p = 0.008 on 20 items)."]


def test_accuracy_lines_rate_by_the_worse_of_quiz_and_divergence_and_say_what_a_quant_keeps(tmp_path):
    spec = make_spec(profiles={"quality": {}, "divergence": {}},
                     quality={"min_math_pct": 60, "min_comprehension_pct": 60, "min_reasoning_pct": 60,
                              "min_format_pct": 60})
    for quant, kld, same in (("F16", 0.0, 100.0), ("Q8_0", 0.0014, 97.7), ("Q4_1", 0.35, 67.7)):
        quality(tmp_path, SMOL, quant, 90.0)  # the quiz cannot tell them apart
        add(tmp_path, SMOL, quant, "divergence", kld_mean=kld, same_top_pct=same, ppl_ratio=1.0)
    lines = case(recommendations(tmp_path, spec), "quality").lines
    assert [(x.symbol, x.quant, x.rating) for x in lines] == [
        ("✓", "F16", "Excellent"), ("✓", "Q8_0", "Excellent"), ("✗", "Q4_1", "Failed")]
    assert lines[1].figures.endswith("keeps 98% of F16's top tokens (KLD 0.0014)")
    assert "Indistinguishable from the reference in practice" in lines[1].why
    assert lines[2].figures.endswith("keeps 68% of F16's top tokens (KLD 0.35)")
    assert lines[2].why == "KL divergence from the reference above 0.05"
    assert "keeps" not in lines[0].figures  # the reference itself


def test_a_quant_that_loses_too_much_to_its_reference_is_not_the_overall_best(tmp_path):
    spec = make_spec(profiles={"interactive": {}, "divergence": {}})
    interactive(tmp_path, SMOL, "Q4_1", 120.0)  # fastest, but far from its reference
    add(tmp_path, SMOL, "Q4_1", "divergence", kld_mean=0.35, same_top_pct=67.7, ppl_ratio=1.39)
    interactive(tmp_path, SMOL, "Q8_0", 80.0)
    add(tmp_path, SMOL, "Q8_0", "divergence", kld_mean=0.0045, same_top_pct=97.0, ppl_ratio=1.006)
    (best,) = recommendations(tmp_path, spec).overall
    assert (best.quant, best.rating) == ("Q8_0", "Excellent")
    assert "keeps 97% of F16's top tokens (KLD 0.0045): indistinguishable from the reference in practice" in best.why


# --- quality evidence: a broken quant is not first on speed alone (#26) -------------------------------------

def tool_calls(root, model, quant, accuracy, malformed=0.0, **kw):
    add(root, model, quant, "tool_calls", accuracy_pct=accuracy, malformed_call_pct=malformed, irrelevance_pct=90.0,
        **kw)


def test_a_fast_quant_whose_divergence_says_it_is_broken_is_listed_below_the_sound_ones(tmp_path):
    spec = make_spec(profiles={"interactive": {}, "divergence": {}})
    interactive(tmp_path, SMOL, "Q4_1", 120.0)  # the fastest, far from its reference
    add(tmp_path, SMOL, "Q4_1", "divergence", kld_mean=0.35, same_top_pct=67.7, ppl_ratio=1.39)
    interactive(tmp_path, SMOL, "Q8_0", 80.0)
    add(tmp_path, SMOL, "Q8_0", "divergence", kld_mean=0.0045, same_top_pct=97.0, ppl_ratio=1.006)
    interactive(tmp_path, GEMMA, "Q4_K_M", 30.0)  # no divergence measured: no evidence against it
    lines = case(recommendations(tmp_path, spec), "interactive").lines
    assert [(x.symbol, x.quant, x.rating) for x in lines] == [
        ("✓", "Q8_0", "Excellent"), ("✓", "Q4_K_M", "Excellent"), ("⚠", "Q4_1", "Excellent")]
    assert lines[2].why.startswith("listed lower, its quality evidence says it is broken: KL divergence from the "
                                   "reference 0.35 above the 0.05 maximum; ")
    assert "broken" not in lines[0].why + lines[1].why


def test_a_quiz_loss_beyond_chance_or_malformed_tool_calls_list_a_quant_lower(tmp_path):
    spec = make_spec(profiles={"interactive": {}, "quality": {}, "tool_calls": {}},
                     quality={"min_math_pct": 10, "min_comprehension_pct": 10, "min_reasoning_pct": 10,
                              "min_format_pct": 10})
    interactive(tmp_path, SMOL, "Q4_1", 120.0)
    quality(tmp_path, SMOL, "Q4_1", 35.0, items=right(7, 20))  # eight items behind F16, all one way: p = 0.008
    interactive(tmp_path, SMOL, "Q8_0", 90.0)
    quality(tmp_path, SMOL, "Q8_0", 70.0, items=right(14, 20))  # one behind: chance
    tool_calls(tmp_path, SMOL, "Q8_0", 80.0, malformed=12.0)  # an agent cannot run an eighth of its calls
    interactive(tmp_path, SMOL, "F16", 40.0)
    quality(tmp_path, SMOL, "F16", 75.0, items=right(15, 20))
    lines = case(recommendations(tmp_path, spec), "interactive").lines
    assert [x.quant for x in lines] == ["F16", "Q4_1", "Q8_0"]  # the broken ones keep their speed order
    assert lines[1].why.startswith("listed lower, its quality evidence says it is broken: quality -40 pts vs F16 "
                                   "(exact McNemar p = 0.008 on 20 items)")
    assert lines[2].why.startswith("listed lower, its quality evidence says it is broken: malformed calls 12% "
                                   "above the 1% maximum")
    assert lines[0].mark == "ok" and lines[1].mark == lines[2].mark == "warn"


def test_tool_calls_code_and_structured_items_are_paired_against_the_reference_quant(tmp_path):
    """The exact McNemar test the quiz has, on each item-level profile: the points lost on the shared
    items and whether that is beyond chance, in the configs table and on the agents' lines."""
    spec = make_spec(profiles={"tool_calls": {}, "coding": {}, "structured": {}})
    tool_calls(tmp_path, SMOL, "F16", 90.0, items=right(18, 20))
    tool_calls(tmp_path, SMOL, "Q8_0", 85.0, items=right(17, 20))  # one apart: chance
    tool_calls(tmp_path, SMOL, "Q4_1", 50.0, items=right(10, 20))  # eight apart, one way: p = 0.008
    add(tmp_path, SMOL, "F16", "coding", pass_at_1_pct=60.0, items=right(12, 20))
    add(tmp_path, SMOL, "Q4_1", "coding", pass_at_1_pct=55.0, items=right(11, 20))
    add(tmp_path, SMOL, "Q8_0", "structured", json_valid_pct=100.0, fields_correct_pct=90.0, items=right(9, 10))
    add(tmp_path, SMOL, "Q4_1", "structured", json_valid_pct=100.0, fields_correct_pct=60.0, items=right(3, 10))
    t = table(tmp_path, spec)
    q4 = row(t, SMOL, "Q4_1")
    assert (q4["tool_calls_reference_quant"], q4["tool_calls_degradation_pts"], q4["tool_calls_items_compared"]) == (
        "F16", 40.0, 20)
    assert round(q4["tool_calls_loss_p"], 3) == 0.008
    assert (q4["coding_reference_quant"], q4["coding_degradation_pts"], q4["coding_loss_p"]) == ("F16", 5.0, 1.0)
    assert (q4["structured_reference_quant"], q4["structured_degradation_pts"]) == ("Q8_0", 60.0)  # no F16 result
    assert round(q4["structured_loss_p"], 3) == 0.031
    assert row(t, SMOL, "F16")["tool_calls_degradation_pts"] == 0.0
    assert row(t, SMOL, "F16")["structured_reference_quant"] is None  # no structured result: nothing compared
    recs = recommend(t, spec)
    lines = {x.quant: x for x in case(recs, "tool_calls").lines}
    # its own items as the quiz's line says them (one helper); a joined profile's named
    assert lines["Q4_1"].figures.endswith(", -40 pts vs F16 (exact McNemar p = 0.008 on 20 items), "
                                          "coding: no measurable loss vs F16 on 20 items (-5 pts is within chance)")
    assert "no measurable loss vs F16 on 20 items (-5 pts is within chance)" in lines["Q8_0"].figures
    assert lines["F16"].why.startswith("the most precise quant measured")
    structured = {x.quant: x for x in case(recs, "structured").lines}
    assert structured["Q4_1"].figures == ("100% valid JSON, 60% fields right, "
                                          "-60 pts vs Q8_0 (exact McNemar p = 0.031 on 10 items)")
    assert structured["Q8_0"].why.startswith("the most precise quant measured")
    assert "-60 pts vs Q8_0 (exact McNemar p = 0.031 on 10 items)" in recs.text()


def test_the_overall_best_is_not_a_quant_whose_evidence_says_it_is_broken(tmp_path):
    spec = make_spec(profiles={"interactive": {}, "tool_calls": {}})
    interactive(tmp_path, SMOL, "Q4_1", 120.0, rss=0.2)  # faster and smaller: the pick on speed alone
    tool_calls(tmp_path, SMOL, "Q4_1", 80.0, malformed=12.0)
    interactive(tmp_path, SMOL, "Q8_0", 80.0, rss=0.3)
    tool_calls(tmp_path, SMOL, "Q8_0", 80.0, malformed=0.0)
    (best,) = recommendations(tmp_path, spec).overall
    assert (best.mark, best.quant, best.rating) == ("ok", "Q8_0", "Excellent")
    tool_calls(tmp_path, SMOL, "Q8_0", 80.0, malformed=5.0)  # now both are: the better one, saying so
    (best,) = recommendations(tmp_path, spec).overall
    assert (best.mark, best.quant) == ("warn", "Q4_1")
    assert best.reasons[-1] == ("its quality evidence says it is broken (malformed calls 12% above the 1% maximum), "
                                "as it says of every other candidate that did not fail")
