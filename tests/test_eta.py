"""How long the rest of a run will take, from earlier results: the cell itself, the same model at
another quant (scaled by file size), the same profile on another model, else no basis."""

from llmspec.plan import eta
from llmspec.plan.cells import Cell
from llmspec.plan.fingerprint import digest
from llmspec.plan.planner import Plan, Workspace
from llmspec.results import write_result
from llmspec.spec import Spec


def spec():
    models = [{"name": n, "size": s, "quants": ["Q4_K_M", "Q8_0"], "package": "p",
               "files": {"Q4_K_M": f"{n}-4.gguf", "Q8_0": f"{n}-8.gguf"}} for n, s in (("small", "1B"), ("big", "7B"))]
    return Spec.model_validate({"name": "s", "models": models, "profiles": {"interactive": {}, "batch": {}}})


def done(plan, model, quant, profile, seconds, size, status="ok"):
    cell = Cell("s", model, quant, profile)
    inputs = plan.inputs(cell)
    write_result(plan.result_path(cell), {"status": status, "reason": "", "metrics": {}, "duration_s": seconds,
                                          "model_file": {"size": size}, "fingerprint": digest(inputs) + "-old",
                                          "fingerprint_inputs": inputs})


def test_each_cell_is_estimated_from_the_best_basis_there_is(tmp_path):
    plan = Plan(spec(), Workspace(tmp_path))
    cell = lambda m, q, p: Cell("s", m, q, p)  # noqa: E731
    assert eta.estimate(plan, cell("small", "Q4_K_M", "interactive")) == eta.Estimate(None, "no basis")
    done(plan, "small", "Q4_K_M", "interactive", 20.0, 1_000)
    done(plan, "big", "Q4_K_M", "batch", 90.0, 4_000)
    done(plan, "big", "Q8_0", "batch", 300.0, 8_000, status="error")  # stopped early: no basis
    plan.forget_evidence()
    # a stale result of the cell itself (its fingerprint no longer matches) still says how long it takes
    assert eta.estimate(plan, cell("small", "Q4_K_M", "interactive")) == eta.Estimate(20.0, "this cell before")
    # the same profile on the same model at another quant, scaled by file size (sizes unknown here: as is)
    assert eta.estimate(plan, cell("small", "Q8_0", "interactive")) == eta.Estimate(20.0, "same model")
    assert eta.estimate(plan, cell("big", "Q8_0", "batch")) == eta.Estimate(90.0, "same model")
    assert eta.estimate(plan, cell("small", "Q8_0", "batch")) == eta.Estimate(90.0, "same profile")
    rest = [cell("small", "Q8_0", "interactive"), cell("big", "Q8_0", "batch")]
    assert eta.left(plan, rest) == "about 2 min left"  # 20 + 90 s
    assert eta.left(plan, []) == "about 0 s left"
    assert eta.duration(7300) == "2 h 1 min" and eta.duration(45) == "45 s"


def test_no_finished_cell_means_no_estimate_and_it_says_so(tmp_path):
    plan = Plan(spec(), Workspace(tmp_path))
    assert eta.left(plan, plan.cells).startswith("no basis for a time estimate yet")


def test_doit_announces_each_cell_with_its_place_and_the_time_left(tmp_path):
    from llmspec.tasks import announce

    plan = Plan(spec(), Workspace(tmp_path))
    done(plan, "small", "Q4_K_M", "interactive", 30.0, 1_000)
    plan.forget_evidence()
    first = plan.cells[0]
    assert announce(plan, first) == (f"cell 1 of {len(plan.cells)} (s: small@Q4_K_M interactive), "
                                     f"about 2 min left (+ 4 cells with no basis yet)")


def test_a_variant_with_fewer_threads_is_estimated_slower_by_the_thread_ratio_capped_by_the_cores(tmp_path):
    models = [{"name": "small", "size": "1B", "quants": ["Q4_K_M"], "package": "p", "files": {"Q4_K_M": "s-4.gguf"}}]
    swept = Spec.model_validate({"name": "s", "models": models, "profiles": {"interactive": {}},
                                 "server": {"sweep": {"threads": [1, 2, 4]}}})
    plan = Plan(swept, Workspace(tmp_path), cores=2)
    cell = lambda variant: Cell("s", "small", "Q4_K_M", "interactive", variant=variant)  # noqa: E731
    assert {c.variant for c in plan.cells} == {"t1", "t2", "t4"}
    inputs = plan.inputs(cell("t2"))
    write_result(plan.result_path(cell("t2")), {"status": "ok", "reason": "", "metrics": {}, "duration_s": 60.0,
                                                "model_file": {"size": 1_000}, "fingerprint": digest(inputs),
                                                "fingerprint_inputs": inputs})
    plan.forget_evidence()
    assert eta.estimate(plan, cell("t1")) == eta.Estimate(120.0, "same model")  # half the threads: twice as long
    assert eta.estimate(plan, cell("t4")) == eta.Estimate(60.0, "same model")  # 4 threads on 2 cores: as 2
    assert eta.left(plan, [cell("t1"), cell("t4")]) == "about 3 min left"  # 120 + 60 s
