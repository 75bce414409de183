"""The quality profile: pure scorers on hand-written answers, the test file's validation, and a
full run of the bundled set against the real llama-server on SmolLM2-135M."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from llmspec.errors import UserError
from llmspec.profiles import ProfileContext, quality
from llmspec.profiles.quality import (
    CATEGORIES,
    QualityProfile,
    extract_choice,
    extract_json_object,
    extract_last_number,
    load_items,
    score_choice,
    score_json,
    score_number,
    score_regex,
)
from llmspec.run.client import ChatClient

REPO = Path(__file__).resolve().parent.parent
BUNDLED = REPO / "prompts" / "quality.json"
METRICS = {"math_pct", "comprehension_pct", "reasoning_pct", "format_pct", "overall_pct", "items", "mean_answer_s"}


# ---- number

@pytest.mark.parametrize("text, expected", [
    ("The answer is 42.", 42),
    ("She gets $5.00 in change.", 5.0),
    ("Total: $1,234.50", 1234.5),
    ("Total: USD 1,122.00", 1122),
    ("12,345,678 people", 12345678),
    ("€ 12 and then € 16", 16),
    ("First 1,200, then 1,020, finally 1,122", 1122),  # the last number, commas as thousands
    ("3, 6, 12, 24", 24),  # a list, not a thousands separator
    ("-3 degrees", -3),
    ("It fell to \u22127", -7),  # Unicode minus
    ("a loss of -$40", -40),
    ("10 - 3 = 7", 7),
    ("5-3", 3),  # a hyphen after a digit is not a sign
    ("2024-03-07", 7),
    ("**48**", 48),
    ("#### 55\n", 55),
    ("about .5 of it", 0.5),
    ("rate 15%", 15),
    ("The answer is 2.5.\n", 2.5),
    ("no digits here", None),
    ("H2O and version3", None),  # digits glued to words are names, not answers
    ("", None),
])
def test_extract_last_number(text, expected):
    assert extract_last_number(text) == expected


@pytest.mark.parametrize("text, answer, tolerance, points", [
    ("so the change is $5.", 5, 0.01, 1),
    ("so the change is $5.004", 5, 0.01, 1),
    ("so the change is $5.02", 5, 0.01, 0),
    ("The final amount is $1,122.00", 1122, 0, 1),
    ("72 - 17 = 42 pencils", 55, 0, 0),  # wrong arithmetic
    ("55 pencils, because 72 - 17 = 55", 55, 0, 1),
    ("The answer is 55. Check: 3 * 24 = 72", 55, 0, 0),  # the LAST number counts
    ("0.3", 0.1 + 0.2, 0, 1),  # float noise does not fail an exact item
    ("I don't know", 5, 1, 0),
])
def test_score_number(text, answer, tolerance, points):
    assert score_number(text, answer, tolerance)[0] == points


def test_score_number_reports_what_it_read():
    assert score_number("I think -$1,500.25 overall", -1500.25) == (1, -1500.25)
    assert score_number("nothing", 3) == (0, None)


# ---- choice

OPTIONS = {"A": "Water for every plot", "B": "Tools and compost", "C": "Seeds and plants", "D": "A free plot"}
NAMES = {"A": "Ana", "B": "Ben", "C": "Carl", "D": "Dev"}


@pytest.mark.parametrize("text, options, expected", [
    ("B", OPTIONS, "B"),
    ("B) Tools and compost", OPTIONS, "B"),
    ("The answer is C.", OPTIONS, "C"),
    ("**D**", OPTIONS, "D"),
    ("(A)", OPTIONS, "A"),
    ("Answer: B.", OPTIONS, "B"),
    ("A is correct.", OPTIONS, "A"),
    ("A.", OPTIONS, "A"),
    ("A garden committee gives tools, so the answer is B", OPTIONS, "B"),  # article "A" skipped
    ("They get tools and compost.", OPTIONS, "B"),  # option text, any case
    ("A free plot", OPTIONS, "D"),  # option text that starts with the article
    ("Dev is the shortest.", NAMES, "D"),
    ("Carl is taller than Dev, so D", NAMES, "C"),  # first mention wins, by definition
    ("ABCD", OPTIONS, None),  # letters inside a word are not choices
    ("None of these", OPTIONS, None),
    ("b) tools", {"A": "water", "B": "soil"}, None),  # lowercase letters are not read
    ("", OPTIONS, None),
])
def test_extract_choice(text, options, expected):
    assert extract_choice(text, options) == expected


def test_extract_choice_prefers_the_longer_option_text_and_whole_words():
    assert extract_choice("4 hours 30 minutes", {"A": "4 hours", "B": "4 hours 30 minutes"}) == "B"
    assert extract_choice("It is 120.", {"A": "12", "B": "120"}) == "B"


def test_score_choice():
    assert score_choice("B) Tools and compost", "B", OPTIONS) == (1, "B")
    assert score_choice("A) 24 euros\n\nThe correct answer is C", "C", {k: k * 2 for k in "ABCD"}) == (0, "A")
    assert score_choice("no idea", "B", OPTIONS) == (0, None)


# ---- regex

def test_score_regex():
    assert score_regex("YES.", r"^\s*YES\.?\s*$") == (1, "YES.")
    assert score_regex("Yes", r"^\s*YES\.?\s*$") == (0, None)
    assert score_regex("Yes", r"(?i)^\s*yes\s*$")[0] == 1
    assert score_regex("red\ngreen\nblue", r"^\s*[A-Za-z]+\s*\n\s*[A-Za-z]+\s*\n\s*[A-Za-z]+\s*$")[0] == 1
    assert score_regex("1. red\n2. green\n3. blue", r"^\s*[A-Za-z]+\s*\n\s*[A-Za-z]+\s*\n\s*[A-Za-z]+\s*$")[0] == 0


# ---- json

@pytest.mark.parametrize("text, expected", [
    ('{"a": 1}', {"a": 1}),
    ('Here you go:\n```json\n{\n  "a": 1,\n  "b": [1, 2]\n}\n```\nDone.', {"a": 1, "b": [1, 2]}),
    ('{not json} but then {"a": 2}', {"a": 2}),
    ('{"outer": {"inner": 1}} {"second": 2}', {"outer": {"inner": 1}}),
    ('[1, 2, 3]', None),  # an array is not an object
    ('{"a": 1', None),  # cut off by max_tokens
    ('no braces', None),
])
def test_extract_json_object(text, expected):
    assert extract_json_object(text) == expected


def test_score_json():
    assert score_json('```json\n{"title": "X", "author": "Y", "year": 1999}\n```', ["title", "author", "year"])[0] == 1
    assert score_json('{"title": "X", "year": 1999}', ["title", "author", "year"])[0] == 0
    assert score_json('{"order": 4417, "city": "Lisbon"}', ["order", "city"], {"order": 4417, "city": "Lisbon"})[0] == 1
    assert score_json('{"order": "4417", "city": "Lisbon"}', ["order"], {"order": 4417})[0] == 0  # exact values
    nested = '{"order": {"city": "Lisbon"}}'
    assert score_json(nested, ["order", "city"], {"city": "Lisbon"}) == (0, {"order": {"city": "Lisbon"}})
    assert score_json("sorry", ["a"]) == (0, None)


# ---- the bundled test set

def perfect_answer(item) -> str | None:
    s = item.scorer
    if s.type == "number":
        return f"Working it out step by step gives {s.answer}."
    if s.type == "choice":
        return f"{s.answer}) {s.options[s.answer]}"
    if s.type == "json":
        return "```json\n" + json.dumps({**{k: "x" for k in s.required}, **s.values}) + "\n```"
    return None


def test_bundled_set_covers_every_category_and_its_right_answers_score():
    items = load_items(BUNDLED)
    assert len(items) >= 16
    counts = {c: sum(i.category == c for i in items) for c in CATEGORIES}
    assert all(n >= 3 for n in counts.values()), counts
    assert len({i.id for i in items}) == len(items)
    for item in items:
        answer = perfect_answer(item)
        if answer is not None:
            assert item.scorer.score(answer)[0] == 1, item.id
        if item.scorer.type == "choice":  # naming the option by its text alone must also count
            assert item.scorer.score(item.scorer.options[item.scorer.answer])[0] == 1, item.id
            assert set(item.scorer.options) == set("ABCD")
    regexes = {i.id: i for i in items if i.scorer.type == "regex"}
    assert regexes["fmt-02"].scorer.score("YES")[0] == 1
    assert regexes["fmt-03"].scorer.score("2024-03-07\n")[0] == 1
    assert regexes["fmt-05"].scorer.score("Red\nGreen\nBlue")[0] == 1
    assert regexes["fmt-05"].scorer.score("- Red\n- Green\n- Blue")[0] == 0


def test_choice_prompt_lists_the_options_and_asks_for_a_letter():
    item = next(i for i in load_items(BUNDLED) if i.scorer.type == "choice")
    text = item.rendered_prompt()
    assert text.startswith(item.prompt)
    for key, option in item.scorer.options.items():
        assert f"\n{key}) {option}" in text
    assert text.endswith(quality.CHOICE_INSTRUCTION)


def test_category_scores_from_samples():
    samples = [{"category": "math", "score": 1}, {"category": "math", "score": 0},
               {"category": "format", "score": 1}, {"category": "reasoning", "score": 0}]
    assert quality.category_scores(samples) == {"math_pct": 50.0, "comprehension_pct": None, "reasoning_pct": 0.0,
                                                "format_pct": 100.0, "overall_pct": 50.0}
    intervals = quality.score_intervals(samples)
    assert "comprehension_pct" not in intervals  # no item, no interval
    assert (intervals["math_pct"].n, intervals["overall_pct"].n) == (2, 4)
    assert intervals["format_pct"].low == pytest.approx(20.65, abs=0.01) and intervals["format_pct"].high == 100
    assert all(found.low <= quality.category_scores(samples)[name] <= found.high for name, found in intervals.items())


# ---- validation of a user's file

GOOD = {"id": "m1", "category": "math", "prompt": "1+1?", "scorer": {"type": "number", "answer": 2}}


def write_items(tmp_path: Path, items, name="mine.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"items": items}) if not isinstance(items, str) else items)
    return path


@pytest.mark.parametrize("bad, needle", [
    ({**GOOD, "category": "poetry"}, "item m1: category"),
    ({**GOOD, "prompt": ""}, "item m1: prompt"),
    ({**GOOD, "promt": "x"}, "item m1: promt: unknown key"),
    ({**GOOD, "scorer": {"type": "number"}}, "item m1: scorer.answer: Field required"),
    ({**GOOD, "scorer": {"type": "number", "answer": "two"}}, "item m1: scorer.answer"),
    ({**GOOD, "scorer": {"type": "number", "answer": True}}, "item m1: scorer.answer"),
    ({**GOOD, "scorer": {"type": "number", "answer": 2, "tolerance": -1}}, "item m1: scorer.tolerance"),
    ({**GOOD, "scorer": {"type": "number", "answer": 2, "tol": 1}}, "item m1: scorer.tol: unknown key"),
    ({**GOOD, "scorer": {"type": "essay"}}, "item m1: scorer: Input tag 'essay'"),
    ({**GOOD, "scorer": {"answer": 2}}, "item m1: scorer: Unable to extract tag"),
    ({**GOOD, "scorer": {"type": "choice", "answer": "E", "options": {"A": "x", "B": "y"}}},
     "item m1: scorer: answer 'E' is not one of the options"),
    ({**GOOD, "scorer": {"type": "choice", "answer": "a", "options": {"a": "x", "b": "y"}}},
     "option keys must be single capital letters"),
    ({**GOOD, "scorer": {"type": "choice", "answer": "A", "options": {"A": "x"}}}, "item m1: scorer.options"),
    ({**GOOD, "scorer": {"type": "regex", "pattern": "(unclosed"}}, "item m1: scorer: pattern does not compile"),
    ({**GOOD, "scorer": {"type": "json", "required": []}}, "item m1: scorer.required"),
    ({**GOOD, "id": "has space"}, "item has space: id"),
    ({k: v for k, v in GOOD.items() if k != "id"}, "item #1: id: Field required"),
])
def test_bad_item_names_file_item_and_problem(tmp_path, bad, needle):
    path = write_items(tmp_path, [GOOD | {"id": "ok"}, bad] if "id" in bad else [bad])
    with pytest.raises(UserError) as info:
        load_items(path)
    message = str(info.value)
    assert str(path) in message and needle in message, message


@pytest.mark.parametrize("content, needle", [
    ("{not json", "not valid JSON"),
    (json.dumps([GOOD]), 'expected an object with "items"'),
    (json.dumps({"items": [], }), '"items" must be a non-empty list'),
    (json.dumps({"items": [GOOD], "extra": 1}), 'expected an object with "items"'),
    (json.dumps({"items": [GOOD, GOOD]}), "item m1: id is used twice"),
])
def test_bad_file_names_the_problem(tmp_path, content, needle):
    path = write_items(tmp_path, content)
    with pytest.raises(UserError, match=needle):
        load_items(path)


def test_inputs_fingerprint_the_test_file_and_reject_a_bad_one(tmp_path):
    path = write_items(tmp_path, [GOOD])
    settings = QualityProfile(tests=str(path))
    first = quality.KIND.inputs(settings, REPO)
    assert first["seed"] == 42 and first["tests"] == str(path) and list(first["prompt_files"]) == ["mine.json"]
    write_items(tmp_path, [GOOD | {"prompt": "2+2?"}])
    assert quality.KIND.inputs(settings, REPO)["prompt_files"] != first["prompt_files"]
    write_items(tmp_path, [GOOD | {"category": "poetry"}])
    with pytest.raises(UserError, match="item m1: category"):
        quality.KIND.inputs(settings, REPO)
    with pytest.raises(UserError, match="no such test file"):
        quality.KIND.inputs(QualityProfile(tests="prompts/missing.json"), REPO)
    assert "quality.json" in quality.KIND.inputs(QualityProfile(), REPO)["prompt_files"]


# ---- the real server

class RecordingClient(ChatClient):
    """The real client, remembering the sampling parameters each request was sent with."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sent: list[dict] = []

    def chat(self, prompt, **kwargs):
        self.sent.append(kwargs)
        return super().chat(prompt, **kwargs)


@pytest.fixture(scope="module")
def smol_server(make_server):
    with make_server(ctx_size=1024) as server:
        yield server


def run_profile(server, settings):
    client = RecordingClient(server.url)
    try:
        return quality.run(ProfileContext(client, settings, REPO, progress=print, server=server)), client
    finally:
        client.close()


@pytest.fixture(scope="module")
def full_run(smol_server):
    return run_profile(smol_server, QualityProfile(max_tokens=16, seed=7))


@pytest.mark.server
def test_full_set_metrics_are_consistent_with_the_samples(full_run):
    outcome, _ = full_run
    items = {i.id: i for i in load_items(BUNDLED)}
    m = outcome.metrics
    print("SmolLM2 quality metrics:", m, outcome.flags)
    assert set(m) == METRICS
    assert m["items"] == len(outcome.samples) == len(items)
    for key in [f"{c}_pct" for c in CATEGORIES] + ["overall_pct"]:
        assert m[key] is not None and 0 <= m[key] <= 100, key
    assert {s["category"] for s in outcome.samples} == set(CATEGORIES)
    assert quality.category_scores(outcome.samples) == {k: m[k] for k in m if k.endswith("_pct")}
    assert {k: (v.low <= m[k] <= v.high, v.n) for k, v in outcome.intervals.items()} == {
        k: (True, 20 if k == "overall_pct" else 5) for k in m if k.endswith("_pct")}
    assert m["mean_answer_s"] == pytest.approx(statistics.fmean(s["total_s"] for s in outcome.samples))
    for s in outcome.samples:
        item = items[s["id"]]
        assert s["timings"]["cache_n"] == 0, s["id"]
        assert s["timings"]["predicted_n"] <= 16 and s["timings"]["prompt_n"] > 0
        assert s["answer"] == s["content"] and s["prompt"] == item.rendered_prompt() and s["prompt_name"] == s["id"]
        assert s["category"] == item.category and s["scorer"] == item.scorer.type
        assert s["expected"] == item.scorer.model_dump(exclude={"type"})
        assert (s["score"], s["extracted"]) == item.scorer.score(s["answer"])  # the samples suffice to re-score
    cut = [s for s in outcome.samples if s["finish_reason"] == "length"]
    assert any("hit max_tokens=16" in f for f in outcome.flags) == bool(cut)


@pytest.mark.server
def test_every_request_is_greedy_with_the_fixed_seed(full_run):
    _, client = full_run
    assert len(client.sent) == 21  # one warm-up, then one per item
    assert all(p["temperature"] == 0 and p["seed"] == 7 for p in client.sent)
    assert all(p["max_tokens"] == 16 for p in client.sent[1:])


@pytest.mark.server
def test_second_run_gives_identical_answers(full_run, smol_server, tmp_path):
    """Temperature 0: a user's own file with the same items yields the same answers, word for word."""
    first = {s["id"]: s for s in full_run[0].samples}
    raw = json.loads(BUNDLED.read_text())
    picked = [next(i for i in raw["items"] if i["category"] == c) for c in CATEGORIES]
    path = write_items(tmp_path, picked)
    again, _ = run_profile(smol_server, QualityProfile(tests=str(path), max_tokens=16, seed=7))
    assert again.metrics["items"] == 4
    for s in again.samples:
        assert s["timings"]["cache_n"] == 0
        assert s["answer"] == first[s["id"]]["answer"], s["id"]
        assert s["score"] == first[s["id"]]["score"]
