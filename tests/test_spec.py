"""A spec is validated strictly, and every problem is one line naming file, key and fix."""

import pytest
from conftest import SMOL_MODEL

from llmspec.errors import UserError
from llmspec.spec import load_spec


def error_of(project, text: str) -> str:
    with pytest.raises(UserError) as exc:
        load_spec(project(text))
    message = str(exc.value)
    assert "\n" not in message
    return message


def test_minimal_spec_gets_defaults(project):
    spec = load_spec(project(SMOL_MODEL, name="mine"))
    assert spec.name == "mine"
    assert spec.server.ctx_size == 4096
    assert list(spec.profiles.enabled()) == ["interactive"]
    assert spec.thresholds.interactive.min_tokens_per_s == 2.0
    assert spec.root == project.root


def test_unknown_quant_names_the_key_and_the_known_ones(project):
    msg = error_of(project, SMOL_MODEL.replace('quants = ["Q4_1"]', 'quants = ["Q4_1", "Q9_K"]'))
    assert msg.startswith("specs/t.toml: models[0].quants[1]: 'Q9_K' is not a known quantization (known: ") or \
        "models[0].quants[1]: 'Q9_K' is not a known quantization (known: F32, F16" in msg
    assert "Q4_K_M" in msg


def test_typo_in_key_is_an_error_listing_allowed_keys(project):
    msg = error_of(project, SMOL_MODEL + "\n[server]\nthread = 4\n")
    assert "server.thread: unknown key (allowed here: engine, binary, ctx_size, threads," in msg


def test_typo_in_threshold_is_not_silently_ignored(project):
    msg = error_of(project, SMOL_MODEL + "\n[thresholds.interactive]\nmin_token_per_s = 4\n")
    assert "thresholds.interactive.min_token_per_s: unknown key" in msg
    assert "min_tokens_per_s" in msg


def test_out_of_range_value_shows_value_and_rule(project):
    msg = error_of(project, SMOL_MODEL + "\n[server]\nthreads = 0\n")
    assert "server.threads: 0: Input should be greater than or equal to 1" in msg


def test_toml_syntax_error_gives_line_and_column(project):
    msg = error_of(project, "name = \n")
    assert "TOML syntax error" in msg and "line 1" in msg


def test_quant_without_a_source(project):
    msg = error_of(project, SMOL_MODEL.replace('["Q4_1"]', '["Q4_1", "Q8_0"]'))
    assert "quant Q8_0 has no file and no derive entry" in msg


def test_derive_cycle_is_rejected(project):
    text = SMOL_MODEL.replace('["Q4_1"]', '["Q4_1", "Q8_0", "Q6_K"]') + 'derive = { Q8_0 = "Q6_K", Q6_K = "Q8_0" }\n'
    assert "cycle" in error_of(project, text)


def test_duplicate_model_names(project):
    assert "used twice" in error_of(project, SMOL_MODEL + SMOL_MODEL)


def test_missing_models(project):
    assert "needs at least one [[models]] or [[endpoints]] entry" in error_of(project, 'description = "x"\n')


def test_missing_file():
    with pytest.raises(UserError, match="no such spec file"):
        load_spec("specs/does-not-exist.toml")


def test_a_bare_name_is_the_projects_spec_of_that_name(tmp_path, monkeypatch):
    """`llmspec plan mine` reads specs/mine.toml, as `doit spec=mine` does (what suggest --write tells a user)."""
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "mine.toml").write_text(SMOL_MODEL)
    monkeypatch.chdir(tmp_path)
    assert load_spec("mine").name == "mine" and load_spec("mine").path.as_posix() == "specs/mine.toml"
    with pytest.raises(UserError, match="no such spec file"):
        load_spec("yours")


def test_bundled_demo_spec_is_valid():
    from conftest import REPO

    spec = load_spec(REPO / "specs" / "demo.toml")
    assert {m.name for m in spec.models} == {"SmolLM2-135M-Instruct", "gemma-3-270m"}
    assert all(m.derive for m in spec.models)
