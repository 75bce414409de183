"""The plan (llmspec/plan/planner.py): what it decides from the results on disk, and when it decides again.

The rules themselves are pure and tested in tests/test_termination.py; here the plan applies them to
result files written in the test, so a skip holds while its evidence does and lets go when it changes.
"""

from pathlib import Path

from conftest import SMOL_MODEL
from test_variants import CURVE

from llmspec.freshness import Freshness
from llmspec.plan.cells import Cell
from llmspec.plan.fingerprint import digest
from llmspec.plan.planner import Plan, Workspace
from llmspec.results import read_result, write_result
from llmspec.spec import Spec, load_spec


def model(name, size, quants):
    return {"name": name, "size": size, "quants": quants, "package": "p",
            "files": {q: f"{name}-{q}.gguf" for q in quants}}


def spec_of(models, **extra):
    return Spec.model_validate({"name": "s", "models": models, **extra})


def write(plan, model_name, quant, status="ok", **metrics):
    cell = Cell(plan.spec.name, model_name, quant, "interactive")
    inputs = plan.inputs(cell)
    write_result(plan.result_path(cell), {"status": status, "reason": "", "metrics": metrics,
                                          "fingerprint": digest(inputs), "fingerprint_inputs": inputs})


def test_plan_decides_from_results_on_disk_and_a_skip_does_not_outlive_its_evidence(tmp_path):
    spec = spec_of([model("small", "1B", ["Q4_K_M"]), model("big", "7B", ["Q4_K_M"])],
                   thresholds={"interactive": {"min_tokens_per_s": 10}})
    plan = Plan(spec, Workspace(tmp_path))
    big = Cell("s", "big", "Q4_K_M", "interactive")
    assert not plan.decide(big).skip
    write(plan, "small", "Q4_K_M", tokens_per_s=1.0, ttft_s=0.5, itl_cv_pct=5.0)  # fails min_tokens_per_s
    plan.forget_evidence()
    decision = plan.decide(big)
    assert decision.rule == "threshold"
    # the big cell is recorded as skipped on that evidence: up to date while it holds
    inputs = plan.inputs(big)
    write_result(plan.result_path(big), {"status": "skipped", "reason": decision.reason, "metrics": {},
                                         "skip_evidence": decision.evidence, "fingerprint": digest(inputs),
                                         "fingerprint_inputs": inputs})
    assert plan.freshness(big) == Freshness(True, "up to date")
    write(plan, "small", "Q4_K_M", tokens_per_s=50.0, ttft_s=0.5, itl_cv_pct=5.0)  # re-measured: passes now
    plan.forget_evidence()
    found = plan.freshness(big)
    assert not found and found.reason.startswith("the skip no longer holds")


def test_skipping_can_be_switched_off(tmp_path):
    spec = spec_of([model("big", "13B", ["Q8_0"])], limits={"max_memory_gb": 0.001}, planner={"skip": False})
    assert not Plan(spec, Workspace(tmp_path)).decide(Cell("s", "big", "Q8_0", "interactive")).skip


def test_stress_goes_to_the_largest_passing_configuration_and_follows_new_results(tmp_path):
    """Design document, "Stress Test Model Selection": re-decided whenever the results change,
    and the stress cells' fingerprints follow the choice, so a new choice makes them stale."""
    spec = Spec.model_validate({"name": "s", "root": Path.cwd(),
                                "models": [model("small", "1B", ["Q4_K_M"]), model("big", "7B", ["Q4_K_M"])],
                                "profiles": {"interactive": {}, "stress": {}},
                                "thresholds": {"interactive": {"min_tokens_per_s": 10}}})
    plan = Plan(spec, Workspace(tmp_path))
    assert plan.choice().model is None
    stress_big = Cell("s", "big", "Q4_K_M", "stress")
    before = plan.inputs(stress_big)["selection"]
    passing = {"tokens_per_s": 50.0, "ttft_s": 0.2, "itl_cv_pct": 5.0}
    for name, size in (("small", 1e9), ("big", 4e9)):
        write(plan, name, "Q4_K_M", **passing)
        path = plan.result_path(Cell("s", name, "Q4_K_M", "interactive"))
        write_result(path, {**read_result(path), "model_file": {"size": size}})
    assert plan.choice().model is None  # decided once per state of the results...
    plan.forget_evidence()  # ...and again after a cell wrote one (the runner calls this)
    choice = plan.choice()
    assert (choice.model, choice.quant) == ("big", "Q4_K_M") and "largest of 2 passing" in choice.reason
    assert plan.inputs(stress_big)["selection"] == {"chosen": "big@Q4_K_M", "selected": True} != before
    write(plan, "big", "Q4_K_M", tokens_per_s=1.0, ttft_s=0.2, itl_cv_pct=5.0)  # re-measured: too slow now
    plan.forget_evidence()
    assert plan.choice().model == "small"
    assert plan.inputs(stress_big)["selection"] == {"chosen": "small@Q4_K_M", "selected": False}


def write_speed(plan, cell, tokens_per_s, low, high):
    inputs = plan.inputs(cell)
    write_result(plan.result_path(cell), {
        "status": "ok", "reason": "", "metrics": {"tokens_per_s": tokens_per_s, "ttft_s": 0.5, "itl_cv_pct": 5.0},
        "intervals": {"tokens_per_s": {"n": 8, "low": low, "high": high, "method": "distribution-free median"}},
        "fingerprint": digest(inputs), "fingerprint_inputs": inputs})


def test_the_planner_stops_past_the_knee_and_lets_go_when_the_figures_change(project, tmp_path):
    plan = Plan(load_spec(project(SMOL_MODEL + '\n[server.sweep]\nthreads = "sweep"\n')), Workspace(tmp_path),
                cores=8)
    cell = {n: Cell("t", "SmolLM2-135M-Instruct", "Q4_1", "interactive", variant=f"t{n}") for n in (1, 2, 4, 8)}
    assert [c.variant for c in plan.cells] == ["t1", "t2", "t4", "t8"]
    assert not plan.decide(cell[8]).skip  # nothing measured before it yet
    for point in CURVE[:2]:
        write_speed(plan, cell[point.threads], point.value, point.low, point.high)
    write_speed(plan, cell[4], 29.61, 27.3, 31.9)
    plan.forget_evidence()
    assert not plan.decide(cell[4]).skip  # judged on 1 and 2 threads only, which still improved
    decision = plan.decide(cell[8])
    assert decision.rule == "thread_knee" and decision.evidence == "thread_knee:SmolLM2-135M-Instruct@Q4_1:t4"
    assert decision.reason.startswith("past the thread knee: 4 threads gave 29.6 t/s, no faster beyond the noise "
                                      "than 2 threads' 107.2 t/s")
    write_speed(plan, cell[4], 150.0, 140.0, 160.0)  # measured again: 4 threads did help
    plan.forget_evidence()
    assert not plan.decide(cell[8]).skip
