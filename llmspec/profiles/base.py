"""What every profile is made of: its declaration (`ProfileKind`), its context and its outcome.

A profile only measures; it never rates. It returns flat metrics with units in their names,
the raw samples they came from, and flags for anything a reader should distrust. Everything
else the project knows about a profile (settings, thresholds, rating rules, headline figures,
its recommendation case, how its figures read) is declared once, in its `KIND`, and read from
the registry in `llmspec.profiles`.
"""

from __future__ import annotations

import hashlib
import json
import statistics
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from llmspec.errors import CellError, UserError
from llmspec.stats import Interval, median_interval

if TYPE_CHECKING:  # the planner imports every profile on each `doit`; requests is 0.1 s of that
    from llmspec.run.client import ChatClient
    from llmspec.run.server import Server

CLOCK_DISAGREEMENT_PCT = 10.0
Direction = Literal["min", "max"]


@dataclass(frozen=True)
class Rule:
    """One metric judged against one threshold field of `thresholds.<profile>` (docs/rating.md)."""

    metric: str
    threshold: str
    direction: Direction  # "min": value must be at least the threshold; "max": at most
    critical: bool  # below threshold here means Failed, not merely Poor
    # A share bounded by this ceiling (100 %): the margin is taken on what is missing from it, so
    # 97.7 % against a 90 % minimum is 2.3 points missing against 10 allowed, not "8.6 % over".
    ceiling: float | None = None


@dataclass(frozen=True)
class Case:
    """How the recommendations present a profile: the use case a person picks a model for."""

    title: str  # may hold {tokens}: the long-context target
    short: str  # in the overall pick's "Excellent for interactive chat"
    figures: tuple[str, ...]  # configs columns shown on a line
    order: tuple[tuple[str, bool], ...]  # (column, descending) ranking after the rating
    joins: tuple[str, ...] = ()  # other profiles whose rating counts too (the worst one is the line's)


@dataclass(frozen=True)
class Figure:
    """How one metric reads: unit taking the number, name in sentences, suffix in figure lists."""

    unit: str
    name: str
    suffix: str = ""


@dataclass(frozen=True)
class Translation:
    """Bands of one quantity: `bounds` split the axis, `texts` has one more entry than bounds.

    A value exactly on a bound belongs to the better band (2 t/s meets the 2 t/s minimum,
    30 s TTFT meets the 30 s maximum), so the direction decides which side a bound falls on.
    """

    higher_is_better: bool
    bounds: tuple[float, ...]
    texts: tuple[str, ...]

    def text(self, value: float) -> str:
        find = bisect_right if self.higher_is_better else bisect_left
        return self.texts[find(self.bounds, value)]


@dataclass(frozen=True)
class LogitsNeed:
    """The prerequisite a profile measured against reference logits declares (`ProfileKind.reference_logits`):
    `chunks` chunks of `ctx` tokens of the prose in the `text` folder. The planner plans the artifact from
    it (llmspec.plan.reference) and doit's `logits:` task or the first such cell builds it, neither
    knowing the profile's settings."""

    ctx: int
    chunks: int
    text: str  # a folder of .txt prose, relative to the project root


# What other parts look a profile up by (`llmspec.profiles.role`: the first profile holding it), instead
# of naming it; "overall" may be held by several. A part whose role no profile holds has nothing to show.
ROLES: dict[str, str] = {
    "default": "runs when a spec names no profiles",
    "endpoint_default": "what an endpoint runs when its entry names no profiles",
    "skip_judge": "its ratings drive the threshold and quantization-path skips and the thread knee",
    "quiz": "the quality evidence: items scored right or wrong, compared pairwise against the most precise quant",
    "reference_logits": "measured against the model's reference logits, an artifact built once per model",
    "overall": "counts in the overall pick beside the performance profiles (the accuracy check)",
    "user_levels": "figures per number of users in flight (the capacity chart, a loadtest file's levels)",
    "context_sizes": "prompt load time per context size (its table and chart; sizes `llmspec init` fits)",
    "sustained": "a long run sampled over time (the report's time series)",
    "turns": "a conversation growing turn by turn, with the cache and without (the TTFT-per-turn chart)",
    "categories": "scores per category as `<headline>_<category>` beside its headline (the per-category chart)",
}


@dataclass(frozen=True)
class ProfileKind:
    """Everything about one profile, declared in its module and nowhere else.

    `run(ctx) -> Outcome` measures; the rest is data the planner, the rating and the report
    read. `version` is part of every fingerprint: bump it when the way the profile measures
    changes, so old results are measured again.
    """

    name: str
    summary: str  # one line, for the spec's JSON Schema and the docs
    version: int
    settings: type[BaseModel]
    thresholds: type[BaseModel]
    run: Callable[[ProfileContext], Outcome]
    # (settings, project root) -> (fingerprint key, the prompt files the settings name); reading
    # them checks they exist (and, for the quality items, that they are valid) at planning time
    files: Callable[[BaseModel, Path], tuple[str, list[Path]]]
    metrics: tuple[str, ...]  # every metric `run` writes (besides the runner's server figures)
    rules: tuple[Rule, ...] = ()
    headlines: dict[str, str] = field(default_factory=dict)  # metric -> configs column, first is the headline
    case: Case | None = None  # None: judges the machine, not a use case (stress)
    figures: dict[str, Figure] = field(default_factory=dict)  # how configs columns read in sentences
    # (settings, spec ctx_size) -> (ctx_size, parallel) of the server this profile needs
    server_overrides: Callable[[BaseModel, int], tuple[int, int]] | None = None
    performance: bool = True  # counts for "does this configuration run well" (stress choice, overall best)
    managed_only: bool = False  # needs llmspec's own llama-server (not possible against an endpoint)
    needs_server: bool = True  # False: runs llama.cpp's tools on the model file itself (`ProfileContext.local`)
    # what the engine must support (llmspec.engines.base: "tokenize", ...); an engine without one is a skip
    engine_needs: frozenset[str] = frozenset()
    # what the server must be started with for this profile (llmspec.engines.base.TOOL_CALLS: llama-server
    # gets --jinja); each must also be in `engine_needs`. Changes the server's arguments, so it restarts.
    server_features: frozenset[str] = frozenset()
    last: bool = False  # runs after every other cell, on one configuration chosen from their results
    # settings -> whether the measurement itself reads the thresholds (a load "sweep" stops where the
    # service level breaks): then they are fingerprinted too, else changing one only re-rates
    uses_thresholds: Callable[[BaseModel], bool] = lambda settings: False
    # (report row, thresholds) -> metrics computed again from stored figures against today's thresholds
    rederive: Callable[[dict[str, Any], BaseModel], dict[str, float]] | None = None
    roles: frozenset[str] = frozenset()  # what other parts look it up by (`ROLES`)
    # settings -> the reference logits it is measured against (with the `reference_logits` role)
    reference_logits: Callable[[BaseModel], LogitsNeed] | None = None
    # Quality evidence (the recommendations list a quant it calls broken below the sound ones, saying why):
    # rated metrics whose failed check means the quant is broken (a KL divergence past its maximum, malformed
    # tool calls past theirs), and `paired`: its item-level results (`Outcome.items`) are compared with the
    # reference quant's by the exact McNemar test, a loss beyond chance counting as evidence too.
    evidence: tuple[str, ...] = ()
    paired: bool = False
    # metric -> what its value means to a person (`llmspec.rating.interpret`), beside the shared readings
    readings: dict[str, Translation] = field(default_factory=dict)
    # (settings, thresholds) -> why a threshold can never be met with these settings ("thresholds.<p>.<key> =
    # ...: ..."), or None; `llmspec check` refuses such a spec instead of rating every cell a failure
    unmeetable: Callable[[BaseModel, BaseModel], str | None] | None = None
    # `llmspec init`: the --use words that switch it on, the settings it writes out (the rest keep their
    # defaults), values it writes instead of the defaults, the design document's reading of the figures
    # above the thresholds, and (settings field, threshold field) of context sizes fitted to this host
    uses: tuple[str, ...] = ()
    init_settings: tuple[str, ...] = ()
    init_values: dict[str, Any] = field(default_factory=dict)
    reading: str = ""
    init_sizes: tuple[str, str] | None = None
    # figures measured within server starts: their intervals hold a rerun's figure only when taken over
    # several starts (the result's `server_starts` above 1); `holds_a_rerun` says which do (issue #27)
    per_start: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = self.roles - ROLES.keys()
        assert not unknown, f"profile {self.name}: unknown roles {sorted(unknown)} (known: {sorted(ROLES)})"
        loose = set(self.evidence) - set(self.rated_metrics)
        assert not loose, f"profile {self.name}: evidence {sorted(loose)} is not among its rated metrics"

    def inputs(self, settings: BaseModel, root: Path, thresholds: BaseModel | None = None) -> dict[str, Any]:
        """Resolved settings plus the content hash of every prompt file: what the fingerprint holds
        (and the thresholds, when the measurement reads them: `uses_thresholds`)."""
        key, files = self.files(settings, root)
        found = {**settings.model_dump(), key: files_digest(files)}
        if thresholds is not None and self.uses_thresholds(settings):
            found["thresholds"] = thresholds.model_dump()
        return found

    def holds_a_rerun(self, metric: str, metrics: dict[str, Any]) -> bool:
        """Whether `metric`'s stored interval is calibrated: wide enough to hold an independent rerun's
        figure, so two such intervals that do not overlap mean a change beyond the noise. A figure
        measured within one server start is not: requests of one start share its luck (five reruns of
        the demo cell spread 18 % where each printed +-5 %), so only intervals over starts judge it."""
        return metric not in self.per_start or self.rerun_interval(metric, metrics)

    def rerun_interval(self, metric: str, metrics: dict[str, Any]) -> bool:
        """Whether `metric`'s stored interval is where a rerun lands (over several server starts,
        llmspec.stats.rerun_interval) rather than an interval of the figure's own estimate: compare and
        history then judge a change by each figure against the other's interval (stats.changed)."""
        starts = metrics.get("server_starts")
        return metric in self.per_start and isinstance(starts, (int, float)) and starts > 1

    @property
    def rated_metrics(self) -> tuple[str, ...]:
        return tuple(rule.metric for rule in self.rules)

    def higher_is_better(self, metric: str) -> bool | None:
        """Which way `metric` is better: from the rating rules (a minimum: higher is better), the
        thresholds' names (`min_<metric>`, `max_<metric>`) or the use case's ordering; None where
        the profile says none."""
        for rule in self.rules:
            if rule.metric == metric:
                return rule.direction == "min"
        fields = self.thresholds.model_fields  # an unrated figure with a limit: [thresholds.load] max_p90_ttft_s
        if f"min_{metric}" in fields or f"max_{metric}" in fields:
            return f"min_{metric}" in fields
        order = dict(self.case.order) if self.case else {}
        return order.get(metric)

    def configs_columns(self) -> dict[str, str]:
        """Frame metric -> configs column: the headline figures, then the rated metrics."""
        return {**self.headlines, **{m: m for m in self.rated_metrics if m not in self.headlines}}


@dataclass
class Outcome:
    metrics: dict[str, float | None]
    samples: list[dict[str, Any]]
    flags: list[str] = field(default_factory=list)
    intervals: dict[str, Interval] = field(default_factory=dict)  # 95 % intervals of summarised metrics
    items: dict[str, int] = field(default_factory=dict)  # item id -> 1 right / 0 wrong: paired comparisons


@dataclass(frozen=True)
class LocalRun:
    """What a profile that runs llama.cpp's tools on the model file (`needs_server=False`) gets."""

    model_path: Path
    quant: str
    tool: Callable[[str], Path]  # llama-perplexity, ...: next to the spec's llama-server
    threads: int
    logs: Path  # a folder for the tools' full output
    reference: Callable[[], tuple[Any, dict]] | None = None  # (Reference, facts), built on first need
    less_precise_origin: str | None = None  # the file this quant was derived from, when less precise


@dataclass
class ProfileContext:
    """What a profile gets: a client bound to a ready server, its settings and a progress line.

    `server` is the managed llama-server (for RSS, swap and its settings, `server.args`), or None
    for an external endpoint; `model_meta` is the GGUF metadata (context_length, ...) when known.
    A profile that needs no server gets `client` None and `local` instead.
    """

    client: ChatClient | None
    settings: BaseModel
    root: Path
    progress: Callable[[str], None]
    server: Server | None = None
    model_meta: dict[str, Any] | None = None
    api_key: str | None = None  # an endpoint's key, for profiles that open more connections
    local: LocalRun | None = None
    thresholds: BaseModel | None = None  # the spec's thresholds of this profile (a load sweep's service level)
    # stops the managed server and starts it again (same file, same arguments); None for an endpoint
    restarter: Callable[[], None] | None = None

    def restart(self) -> None:
        """A fresh start of the managed server, for figures that must hold across starts (the
        interactive profile's `starts`); the context's client follows it to its new port."""
        from llmspec.run.client import ChatClient

        if self.restarter is None or self.server is None:
            raise CellError("only llmspec's own server can be started again")
        old = self.client
        self.restarter()
        self.client = ChatClient(self.server.url, model=self.server.model_name, timeout_s=old.timeout_s,
                                 deadline_s=old.deadline_s, engine=old.engine)
        self.client.on_record = old.on_record
        old.close()

    def warm_up(self, prompt: str, max_tokens: int, label: str = "", system: str | None = None, **params) -> None:
        """One unmeasured request after the server started: it pays the cold start (first
        request after loading), so no measured request does. A failure is the cell's error."""
        self.progress(f"warm-up request{f' ({label})' if label else ''}")
        record = self.client.chat(prompt, prompt_name=f"warm-up{f' {label}' if label else ''}", max_tokens=max_tokens,
                                  system=system, **params)
        if record.error:
            raise CellError(f"warm-up request failed: {record.error}")

    def new_client(self, timeout_s: float, stop=None) -> ChatClient:
        """Another connection to the same server (URL, model, key), e.g. one per load worker."""
        from llmspec.run.client import ChatClient

        base = self.client
        client = ChatClient(base.base_url, base.model, self.api_key, timeout_s, deadline_s=timeout_s, stop=stop,
                            engine=base.engine)
        client.on_record = base.on_record  # whoever listens to the profile's requests hears these too
        return client


def project_path(root: Path, relative: str) -> Path:
    """A path from a spec: relative ones mean `<project root>/...` (the folder holding specs/)."""
    path = Path(relative).expanduser()
    return path if path.is_absolute() else root / path


def prompt_files(root: Path, folder: str, suffix: str = ".txt") -> list[Path]:
    path = project_path(root, folder)
    files = sorted(path.glob(f"*{suffix}"))
    if not files:
        raise UserError(f"profiles: no {suffix} prompt files in {path}")
    return files


def read_prose(root: Path, folder: str) -> str:
    """Every .txt file of a prose folder, in name order, as one text (long context, divergence)."""
    return "\n\n".join(f.read_text(encoding="utf-8").strip() for f in prompt_files(root, folder))


def files_digest(files: list[Path]) -> dict[str, str]:
    """Prompt files by name and content hash: editing a prompt re-measures the cells using it."""
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest()[:16] for f in files}


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def clock_check(client_value: float | None, server_value: float | None, what: str) -> tuple[float | None, list[str]]:
    """Percent by which our clock and the server's disagree, and a flag when over 10 percent."""
    if not client_value or not server_value:
        return None, []
    pct = abs(client_value - server_value) / server_value * 100
    flag = [f"{what}: client and server clocks disagree by {pct:.0f}% (over {CLOCK_DISAGREEMENT_PCT:g}%)"]
    return pct, flag if pct > CLOCK_DISAGREEMENT_PCT else []


def require_cache_miss(record) -> None:
    """A measured request that hit the prompt cache would report a fake-fast TTFT."""
    cache_n = (record.timings or {}).get("cache_n", 0)
    if cache_n:
        raise CellError(f"prompt cache hit (cache_n={cache_n}) on a measured request; refusing the number")


# Figures of a reasoning model's requests, written only where the model reasoned (a model that does not keeps
# the result it always had). Every streaming profile lists them among its metrics.
REASONING_METRICS = ("ttft_reasoning_s", "ttft_answer_s", "reasoning_tokens", "answer_tokens")


def reasoning_figures(records: list, intervals: dict[str, Interval], ttft: str = "ttft_s") -> tuple[
        dict[str, float | None], list[str]]:
    """Where the model reasons: when it starts thinking, when its answer starts, and how much of each.

    The headline TTFT (`ttft`, the profile's name for it) is then the first answer token, which is
    what a user waits for, and the flag says so beside the figures; a request whose thinking used up
    its token budget has no answer token, which is said too. `intervals` gains the figures' 95 %
    intervals; `records` are the requests the headline TTFT was summarised from.
    """
    if not any(r.reasoning or r.ttft_reasoning_s is not None for r in records):
        return {}, []
    found = {"ttft_reasoning_s": [r.ttft_reasoning_s for r in records], "ttft_answer_s": [r.ttft_s for r in records],
             "reasoning_tokens": [r.reasoning_chunks for r in records],
             "answer_tokens": [r.answer_tokens for r in records]}
    for name, values in found.items():
        if (interval := median_interval(values)) is not None:
            intervals[name] = interval
    metrics = {name: median(values) for name, values in found.items()}
    answer, thought = _seconds(metrics["ttft_answer_s"]), _seconds(metrics["ttft_reasoning_s"])
    flags = [f"the model reasons before it answers: {ttft} is the time to the first answer token (median {answer}), "
             f"after its reasoning started at {thought} and ran for a median {metrics['reasoning_tokens']:g} tokens "
             "(ttft_reasoning_s, reasoning_tokens)"]
    unanswered = sum(1 for r in records if r.ttft_s is None)
    if unanswered:
        flags.append(f"{unanswered} of {len(records)} requests ended while the model was still reasoning (no answer "
                     f"token within max_tokens): their {ttft} is missing; raise max_tokens or cap the reasoning budget")
    return metrics, flags


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g} s"


def item_list(path: Path) -> list:
    """The `items` of a bundled or user-written items file (`{"items": [...], "description": ...}`),
    each problem with the file's shape one line naming it; the profile checks each item itself."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or set(raw) - {"items", "description"}:
        raise UserError(f'{path}: expected an object with "items" (and optionally "description")')
    if not isinstance(raw.get("items"), list) or not raw["items"]:
        raise UserError(f'{path}: "items" must be a non-empty list')
    return raw["items"]
