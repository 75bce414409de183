"""Cells run quant level first (Q4_K_M baseline), small models first, one model file at a time."""

from llmspec.plan.cells import expand
from llmspec.plan.planner import Plan
from llmspec.profiles import PROFILES
from llmspec.spec import Spec


def spec_with(models, quant_order=None):
    data = {"name": "s", "models": models}
    if quant_order:
        data["quant_order"] = quant_order
    return Spec.model_validate(data)


def model(name, size, quants):
    return {"name": name, "size": size, "quants": quants, "package": "p",
            "files": {q: f"{name}-{q}.gguf" for q in quants}}


def test_order_by_quant_level_then_size():
    spec = spec_with([model("big", "7B", ["Q8_0", "Q4_K_M"]), model("small", "1B", ["Q5_K_M", "Q4_K_M"])])
    order = [(c.model, c.quant) for c in expand(spec)]
    assert order == [("small", "Q4_K_M"), ("big", "Q4_K_M"), ("small", "Q5_K_M"), ("big", "Q8_0")]


def test_quants_outside_the_order_come_last_in_spec_order():
    spec = spec_with([model("m", "1B", ["Q4_1", "F16", "Q4_K_M"])])
    assert [c.quant for c in expand(spec)] == ["Q4_K_M", "Q4_1", "F16"]


def test_custom_quant_order():
    spec = spec_with([model("m", "1B", ["Q4_K_M", "Q8_0"])], quant_order=["Q8_0", "Q4_K_M"])
    assert [c.quant for c in expand(spec)] == ["Q8_0", "Q4_K_M"]


def test_task_names_and_result_paths(tmp_path):
    cell = expand(spec_with([model("SmolLM2-135M-Instruct", "135M", ["Q4_1"])]))[0]
    assert cell.task_name == "s:SmolLM2-135M-Instruct@Q4_1:interactive"
    path = cell.result_path(tmp_path, "host-abc123")
    assert path == tmp_path / "host-abc123" / "s" / "SmolLM2-135M-Instruct" / "Q4_1" / "interactive.json"


def adjacent(keys: list) -> bool:
    """Every key's occurrences form one unbroken run: a, a, b, b, c (not a, b, a)."""
    runs = [k for i, k in enumerate(keys) if i == 0 or keys[i - 1] != k]
    return len(runs) == len(set(runs))


def test_cells_of_one_model_file_are_adjacent():
    """Two models at two quants, a thread sweep, profiles with and without a server, one that runs last and
    an endpoint: every (model, quant) runs as one block, and the cells of one server (model, quant,
    variant) run back to back, so each server starts once. A matrix looped profile-first or variant-first
    would break both; the check itself is shown to catch those orders on these very cells."""
    spec = spec_with([model("a", "1B", ["Q4_K_M", "Q8_0"]), model("b", "3B", ["Q4_K_M", "Q8_0"])])
    spec = spec.model_validate({**spec.model_dump(exclude_unset=True),
                                "profiles": {"interactive": {}, "quality": {}, "divergence": {}, "stress": {}},
                                "server": {"sweep": {"threads": [1, 2]}},
                                "endpoints": [{"name": "box", "url": "http://127.0.0.1:9",
                                               "profiles": ["interactive", "quality"]}]})
    cells = expand(spec, cores=2)
    last = [c for c in cells if PROFILES[c.profile].last]
    local = [c for c in cells if not c.endpoint and not PROFILES[c.profile].last]
    served = [c for c in local if PROFILES[c.profile].needs_server]
    assert len(local) == 4 * (2 * 2 + 1) and len(last) == 4 * 2  # 4 files x (2 variants x 2 profiles + divergence)
    assert adjacent([(c.model, c.quant) for c in local])
    assert adjacent([(c.model, c.quant, c.variant) for c in served])
    assert cells[len(local):len(cells) - len(last)] == [c for c in cells if c.endpoint]  # endpoints after the files
    assert cells[-len(last):] == last  # what runs last is chosen from everyone else's results
    # the same cells in a wrong order fail the checks: looped variant first, or profile first
    by_variant = sorted(local, key=lambda c: c.variant)
    assert not adjacent([(c.model, c.quant) for c in by_variant])
    by_profile = sorted(served, key=lambda c: c.profile)
    assert not adjacent([(c.model, c.quant, c.variant) for c in by_profile])


def test_quick_mode_plans_only_the_quick_quants():
    spec = spec_with([model("m", "1B", ["Q4_K_M", "Q5_K_M", "Q8_0"])])
    spec = spec.model_validate({**spec.model_dump(exclude_unset=True), "planner": {"mode": "quick"}})
    assert [c.quant for c in Plan(spec).cells] == ["Q4_K_M", "Q5_K_M"]
