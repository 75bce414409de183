"""Cells run quant level first (Q4_K_M baseline), small models first, one model file at a time."""

from llmspec.plan.cells import expand
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


def test_cells_of_one_model_file_are_adjacent():
    spec = spec_with([model("a", "1B", ["Q4_K_M"]), model("b", "3B", ["Q4_K_M"])])
    groups = [(c.model, c.quant) for c in expand(spec)]
    assert groups == sorted(groups, key=groups.index)
