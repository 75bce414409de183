"""Accuracy/quality: does this quant still get answers right? Scored automatically, greedy decoding.

Every item is sent once at temperature 0 with a fixed seed (settings.seed), so two runs of the
same model file give the same answers and a change in score comes from the quant, not from dice.
Comparing against the highest-precision quant of the same model happens at report time.

Test file format (`settings.tests`, default prompts/quality.json); add your own items freely:

    {"description": "optional text",
     "items": [
       {"id": "math-01", "category": "math", "prompt": "... End with the number.",
        "scorer": {"type": "number", "answer": 42, "tolerance": 0.01}},
       {"id": "comp-01", "category": "comprehension", "prompt": "Passage ... Question ...",
        "scorer": {"type": "choice", "answer": "B", "options": {"A": "...", "B": "...", "C": "..."}}},
       {"id": "fmt-01", "category": "format", "prompt": "Reply with YES only.",
        "scorer": {"type": "regex", "pattern": "^\\s*YES\\s*$"}},
       {"id": "fmt-02", "category": "format", "prompt": "Give JSON with keys a and b.",
        "scorer": {"type": "json", "required": ["a", "b"], "values": {"a": 1}}}]}

- `id`: unique, letters/digits/._- ; `category`: math | comprehension | reasoning | format.
- number: the LAST number in the answer counts ("$1,234.50" -> 1234.5, "-3" -> -3); it scores when
  |number - answer| <= tolerance (absolute, default 0). Word numbers and "1,5" decimals are not read.
- choice: the options (keys are single capital letters) are appended to the prompt as "A) ...",
  followed by an instruction to answer with a letter. The choice is whichever comes first in
  the answer: a standalone capital option letter (the article "A word" is skipped) or an option's
  text (case-insensitive, whole words).
- regex: Python `re.search` on the raw answer; use inline flags such as `(?i)` or `(?m)`.
- json: the first JSON object in the answer (``` fences and prose around it are fine) must have
  every `required` key, and each key in `values` must equal its value exactly.
Unknown keys are errors, so a typo cannot silently disable a check.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from llmspec.errors import CellError, UserError
from llmspec.profiles.base import (
    Case,
    Figure,
    Outcome,
    ProfileContext,
    ProfileKind,
    Rule,
    clock_check,
    item_list,
    median,
    project_path,
    require_cache_miss,
)
from llmspec.stats import Interval, wilson_interval
from llmspec.strict import Strict, format_loc

CATEGORIES = ("math", "comprehension", "reasoning", "format")
SYSTEM = "You are a careful assistant. Answer correctly and follow the requested format exactly."
CHOICE_INSTRUCTION = "Answer with the letter of the correct option."


def _json_number(value: Any) -> Any:
    """A JSON number only: pydantic's lax float would take true or "42" and score against 1 or 42."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise PydanticCustomError("number", "must be a JSON number, not {v}", {"v": json.dumps(value)})
    return value


Number = Annotated[float, BeforeValidator(_json_number)]


# The stress-test plan's (seeds/003) per-answer score field; `llmspec loadtest` fills it with this
# profile's scorers when the questions carry them.
LOADTEST_SCORE = "quality"


class NumberScorer(Strict):
    type: Literal["number"]
    answer: Number
    tolerance: Number = Field(0.0, ge=0)

    def score(self, text: str) -> tuple[int, Any]:
        return score_number(text, self.answer, self.tolerance)


class ChoiceScorer(Strict):
    type: Literal["choice"]
    answer: str
    options: dict[str, str] = Field(min_length=2)

    @model_validator(mode="after")
    def _consistent(self) -> ChoiceScorer:
        bad = [k for k in self.options if not re.fullmatch(r"[A-Z]", k)]
        if bad:
            raise PydanticCustomError("choice", "option keys must be single capital letters, not {k}",
                                      {"k": repr(bad[0])})
        if any(not text.strip() for text in self.options.values()):
            raise PydanticCustomError("choice", "option texts must not be empty")
        if self.answer not in self.options:
            raise PydanticCustomError("choice", "answer {a} is not one of the options", {"a": repr(self.answer)})
        return self

    def score(self, text: str) -> tuple[int, Any]:
        return score_choice(text, self.answer, self.options)


class RegexScorer(Strict):
    type: Literal["regex"]
    pattern: str = Field(min_length=1)

    @model_validator(mode="after")
    def _compiles(self) -> RegexScorer:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise PydanticCustomError("regex", "pattern does not compile: {e}", {"e": str(exc)}) from None
        return self

    def score(self, text: str) -> tuple[int, Any]:
        return score_regex(text, self.pattern)


class JsonScorer(Strict):
    type: Literal["json"]
    required: list[str] = Field(min_length=1)
    values: dict[str, Any] = {}

    def score(self, text: str) -> tuple[int, Any]:
        return score_json(text, self.required, self.values)


Scorer = Annotated[NumberScorer | ChoiceScorer | RegexScorer | JsonScorer, Field(discriminator="type")]


class Item(Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    category: Literal["math", "comprehension", "reasoning", "format"]
    prompt: str = Field(min_length=1)
    scorer: Scorer

    def rendered_prompt(self) -> str:
        """The text sent: choice items get their options listed, so prompt and scorer cannot drift."""
        if not isinstance(self.scorer, ChoiceScorer):
            return self.prompt
        options = "\n".join(f"{key}) {text}" for key, text in self.scorer.options.items())
        return f"{self.prompt}\n\n{options}\n\n{CHOICE_INSTRUCTION}"


# ---- scorers: pure functions of the answer text, each returning (score 0/1, what was extracted)

NUMBER_RE = re.compile(r"(?<![\w.])([-\u2212]?)\s?[$€£¥]?\s?(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?!\d)")


def extract_last_number(text: str) -> float | None:
    """The final answer of a worked solution is conventionally its last number."""
    found = NUMBER_RE.findall(text)
    if not found:
        return None
    sign, digits = found[-1]
    value = float(digits.replace(",", ""))
    return -value if sign else value


def score_number(text: str, answer: float, tolerance: float = 0.0) -> tuple[int, float | None]:
    value = extract_last_number(text)
    # The tiny epsilon keeps 0.1 + 0.2 style float noise from failing an exact (tolerance 0) item.
    ok = value is not None and abs(value - answer) <= tolerance + 1e-9
    return int(ok), value


def extract_choice(text: str, options: dict[str, str]) -> str | None:
    """The option the answer names first, by standalone letter or by the option's own text."""
    found: list[tuple[int, int, str]] = []
    letters = "".join(re.escape(k) for k in options)
    for m in re.finditer(rf"(?<![A-Za-z0-9])([{letters}])(?![A-Za-z0-9])", text):
        if m.group(1) == "A" and re.match(r"\s+(?!is\b|was\b)[a-z]", text[m.end():]):
            continue  # "A train leaves..." is the article, not option A ("A is right" is the option)
        found.append((m.start(), 0, m.group(1)))
        break
    for key, option in options.items():
        m = re.search(rf"(?<!\w){re.escape(option.strip())}(?!\w)", text, re.IGNORECASE)
        if m:
            found.append((m.start(), -len(option), key))  # at the same spot, the longer text wins
    return min(found)[2] if found else None


def score_choice(text: str, answer: str, options: dict[str, str]) -> tuple[int, str | None]:
    choice = extract_choice(text, options)
    return int(choice == answer), choice


def score_regex(text: str, pattern: str) -> tuple[int, str | None]:
    m = re.search(pattern, text)
    return int(m is not None), m.group(0) if m else None


def extract_json_object(text: str) -> dict | None:
    """The first `{...}` that parses as a JSON object, wherever it sits (fences, prose)."""
    decoder = json.JSONDecoder()
    for m in re.finditer(r"\{", text):
        try:
            value, _ = decoder.raw_decode(text, m.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def score_json(text: str, required: list[str], values: dict[str, Any] | None = None) -> tuple[int, dict | None]:
    obj = extract_json_object(text)
    if obj is None:
        return 0, None
    ok = all(k in obj for k in required) and all(k in obj and obj[k] == v for k, v in (values or {}).items())
    return int(ok), obj


# ---- the test file

def tests_path(settings, root: Path) -> Path:
    path = project_path(root, settings.tests)
    if not path.is_file():
        raise UserError(f"profiles.quality.tests: no such test file: {path}")
    return path


def load_items(path: Path) -> list[Item]:
    """Read and validate the test file; any problem is one line naming the file and the item."""
    items, seen = [], set()
    for n, entry in enumerate(item_list(path), 1):
        name = entry.get("id") if isinstance(entry, dict) and isinstance(entry.get("id"), str) else f"#{n}"
        try:
            item = Item.model_validate(entry)
        except ValidationError as exc:
            raise UserError(f"{path}: item {name}: {_describe(exc)}") from None
        if item.id in seen:
            raise UserError(f"{path}: item {name}: id is used twice")
        seen.add(item.id)
        items.append(item)
    return items


def _describe(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = list(first["loc"])
    if len(loc) > 1 and loc[0] == "scorer":
        loc.pop(1)  # the discriminator tag pydantic inserts ("scorer.number.answer")
    where = format_loc(loc) or "item"
    message = "unknown key" if first["type"] == "extra_forbidden" else first["msg"].removeprefix("Value error, ")
    return f"{where}: {message}"


# ---- the profile

class QualityProfile(Strict):
    """Accuracy/quality (docs/profiles.md): scored answers at temperature 0 with a fixed seed."""

    tests: str = Field("prompts/quality.json", description="scored items (format: llmspec/profiles/quality.py)")
    max_tokens: int = Field(256, ge=16, description="longest answer, in tokens (an answer cut off scores 0)")
    seed: int = 42


class QualityThresholds(Strict):
    min_math_pct: float = Field(80.0, ge=0, le=100, description="math items answered right, percent, at least")
    min_comprehension_pct: float = Field(75.0, ge=0, le=100, description="comprehension items right, percent, at least")
    min_reasoning_pct: float = Field(75.0, ge=0, le=100, description="logical reasoning items right, percent, at least")
    min_format_pct: float = Field(90.0, ge=0, le=100, description="answers in the asked format, percent, at least")


def _files(settings, root: Path) -> tuple[str, list[Path]]:
    path = tests_path(settings, root)
    load_items(path)  # a broken test file fails at planning time, not halfway through a run
    return "prompt_files", [path]


def run(ctx: ProfileContext) -> Outcome:
    s = ctx.settings
    items = load_items(tests_path(s, ctx.root))
    params = {"temperature": 0.0, "seed": s.seed}
    ctx.warm_up("Say OK.", 4, system=SYSTEM, **params)
    samples, records = [], []
    for i, item in enumerate(items, 1):
        ctx.progress(f"item {i}/{len(items)} ({item.id})")
        prompt = item.rendered_prompt()
        record = ctx.client.chat(prompt, prompt_name=item.id, max_tokens=s.max_tokens, system=SYSTEM, **params)
        if record.error:
            raise CellError(f"item {item.id} failed: {record.error}")
        require_cache_miss(record)
        points, extracted = item.scorer.score(record.content)
        records.append(record)
        samples.append({**record.as_sample(), "id": item.id, "category": item.category, "prompt": prompt,
                        "answer": record.content, "scorer": item.scorer.type, "score": points,
                        "expected": item.scorer.model_dump(exclude={"type"}), "extracted": extracted})
    return _outcome(samples, records, s.max_tokens)


def category_scores(samples: list[dict]) -> dict[str, float | None]:
    """Percent correct per category (None where the file has no item of it), and overall."""
    metrics: dict[str, float | None] = {}
    for category in CATEGORIES:
        scores = [x["score"] for x in samples if x["category"] == category]
        metrics[f"{category}_pct"] = 100 * sum(scores) / len(scores) if scores else None
    metrics["overall_pct"] = 100 * sum(x["score"] for x in samples) / len(samples) if samples else None
    return metrics


def score_intervals(samples: list[dict]) -> dict[str, Interval]:
    """Wilson 95 % intervals of each category's and the overall share correct: on 5 items, 1 right
    is anything from 4 % to 62 %, which is what a score of 20 % on a small test file means."""
    groups = {f"{c}_pct": [x["score"] for x in samples if x["category"] == c] for c in CATEGORIES}
    groups["overall_pct"] = [x["score"] for x in samples]
    return {name: wilson_interval(sum(scores), len(scores)) for name, scores in groups.items() if scores}


def _outcome(samples: list[dict], records: list, max_tokens: int) -> Outcome:
    metrics = {**category_scores(samples), "items": len(samples),
               "mean_answer_s": statistics.fmean(r.total_s for r in records) if records else None}
    _, flags = clock_check(median([r.decode_tokens_per_s() for r in records]),
                           median([(r.timings or {}).get("predicted_per_second") for r in records]), "decode speed")
    missing = [c for c in CATEGORIES if metrics[f"{c}_pct"] is None]
    if missing:
        flags.append(f"the test file has no {', '.join(missing)} items; those scores are missing")
    cut = [x["id"] for x in samples if x["finish_reason"] == "length"]
    if cut:
        flags.append(f"{len(cut)} of {len(samples)} answers hit max_tokens={max_tokens} before finishing "
                     f"({', '.join(cut[:5])}{', ...' if len(cut) > 5 else ''}); a cut-off answer may score 0")
    return Outcome(metrics, samples, flags, score_intervals(samples), {x["id"]: int(x["score"]) for x in samples})


KIND = ProfileKind(
    name="quality",
    summary="scored answers (math, comprehension, reasoning, format) at temperature 0",
    version=1,
    settings=QualityProfile,
    thresholds=QualityThresholds,
    run=run,
    files=_files,
    metrics=("math_pct", "comprehension_pct", "reasoning_pct", "format_pct", "overall_pct", "items", "mean_answer_s"),
    rules=(
        Rule("math_pct", "min_math_pct", "min", critical=True),
        Rule("comprehension_pct", "min_comprehension_pct", "min", critical=False),
        Rule("reasoning_pct", "min_reasoning_pct", "min", critical=False),
        Rule("format_pct", "min_format_pct", "min", critical=False),
    ),
    headlines={"overall_pct": "quality_pct"},
    # The quiz and the divergence from the reference quant judge accuracy together: a line is rated
    # by the worse of the two, and ranks by quiz score, then by divergence.
    case=Case("Accuracy-critical work", "accuracy", ("quality_pct", "math_pct"),
              (("quality_pct", True), ("kld_mean", False)), joins=("divergence",)),
    figures={"quality_pct": Figure("{}%", "overall score", "overall"), "math_pct": Figure("{}%", "math score", "math"),
             "comprehension_pct": Figure("{}%", "comprehension score", "comprehension"),
             "reasoning_pct": Figure("{}%", "reasoning score", "reasoning"),
             "format_pct": Figure("{}%", "format score", "format")},
    performance=False,  # how well a model answers says nothing about how well this machine runs it
    paired=True,
    roles=frozenset({"quiz"}),
    uses=("accuracy",),
    init_settings=("tests", "max_tokens"),
    reading="the design document's bar for financial work: math 80 %, comprehension and reasoning 75 %, format 90 %",
)
