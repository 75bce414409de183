"""Coding-assistant session: a multi-turn conversation replayed as a real client sends it, cache on.

The one profile that wants prompt-cache hits and proves them. A session is a system prompt with
tool definitions, then `turns` user turns that add file contents as tool results (the bundled
snapshots in `settings.files`, read as `read_file` results, Cline-style: tools described in the
system prompt, results sent as user messages, so any chat template and engine can run it), each
followed by the model's own answer (`max_tokens`, greedy, `ignore_eos`) appended as an assistant
turn. Every request sends the whole conversation again, as a client does, with `cache_prompt:
true` and pinned to the session's slot (`id_slot`, where the engine has slots): llama-server then
reads only what is new since the slot's last prompt. The engine's own count of reused tokens
(`timings.cache_n`) is the proof; llmspec's `--cache-ram 0` turns off only the RAM cache across
slots, not this per-slot reuse.

Sizes: the conversation grows in equal steps to `final_tokens` (the prompt of the last turn,
chat template included). Content is cut with the server's own /tokenize; the template's tokens
are measured by two tiny calibration requests (which also warm the server up) and again from
every turn's reply (`prompt_n + cache_n`), so the last prompt is the final size to a few tokens.
A model or slot that cannot hold `final_tokens` plus the answer stops at the largest size it
can, said in the flags, and the figures are named after that size.

Each repeat: one session on slot 0 with the cache on, its first turn read cold (`cache_prompt:
false`, so every repeat starts alike; the slot still keeps those tokens for turn 2), then the
baseline: the same conversation with `cache_prompt: false` (its final turn, or with `baseline =
"all"` every turn; `cache_n` must be 0 there). After the repeats, `sessions` sessions at once,
each on its own slot, every turn sent by all of them together (a barrier), so the last turn's
TTFT is what each of that many agents waits with the others reading too.

Figures (per turn in `samples`: total prompt tokens, cached tokens, new tokens, TTFT, prefill
speed): `ttft_s_at_<n>` (last turn, cache on; client clock), `ttft_s_at_<n>_nocache` (the same
prompt read whole), `ttft_s_at_<n>_concurrent` (median over the concurrent sessions) and the same
three under fixed names (`ttft_s`, `ttft_s_nocache`, `ttft_s_concurrent`) for the rating and the
report; `cache_hit_pct` = cached / prompt tokens over the turns after the first;
`prefill_tokens_per_s` = the engine's speed on the tokens the last cached turn had to read;
`final_tokens` = the last prompt's size as processed.

Intervals: the median across repeats, distribution-free (llmspec.stats.median_interval; fewer than
6 repeats give min-max with the lower coverage named). Not a bootstrap across turns: the turns
have different sizes, so they are not samples of one quantity, while the repeats are (the same
greedy session again). The concurrent TTFT's interval is over the sessions of the one round.

An engine that does not report cached tokens (mistral.rs, Ollama, most endpoints) leaves
`cache_hit_pct` missing with a flag saying why, never 0; one that reports 0 (no reuse) gets 0 and
a flag.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from llmspec.engines.base import SLOTS
from llmspec.errors import CellError
from llmspec.profiles.base import (
    REASONING_METRICS,
    Case,
    Figure,
    Outcome,
    ProfileContext,
    ProfileKind,
    Rule,
    clock_check,
    median,
    prompt_files,
    reasoning_figures,
    require_cache_miss,
)
from llmspec.profiles.corpus import Corpus
from llmspec.profiles.long_context import token_counter
from llmspec.stats import Interval, median_interval
from llmspec.strict import Strict

TOOLS = [
    {"name": "read_file", "description": "Read a file of the repository, or some of its lines.",
     "parameters": {"type": "object", "properties": {
         "path": {"type": "string", "description": "path from the repository root"},
         "start_line": {"type": "integer"}, "end_line": {"type": "integer"}}, "required": ["path"]}},
    {"name": "search", "description": "Search the repository for a regular expression.",
     "parameters": {"type": "object", "properties": {
         "pattern": {"type": "string"}, "path": {"type": "string", "description": "folder to search in"}},
         "required": ["pattern"]}},
    {"name": "edit_file", "description": "Replace one exact, unique piece of text in a file.",
     "parameters": {"type": "object", "properties": {
         "path": {"type": "string"}, "old": {"type": "string"}, "new": {"type": "string"}},
         "required": ["path", "old", "new"]}},
    {"name": "run_tests", "description": "Run pytest on a test file, optionally only tests matching -k.",
     "parameters": {"type": "object", "properties": {
         "path": {"type": "string"}, "k": {"type": "string"}}, "required": ["path"]}},
]
SYSTEM = ("You are a coding assistant working in the user's repository. Work in small steps: read what you "
          "need, say briefly what you found, then call one tool. To call a tool, reply with "
          '<tool_call>{"name": ..., "arguments": {...}}</tool_call>; its result comes back in the next user '
          "message. Tools:\n" + json.dumps(TOOLS, indent=1))
TASK = ("I am adding a profile to llmspec that replays a coding session and measures the prompt cache. "
        "Read the code I show you and tell me what to reuse.")
NEXT = ("Noted. Keep going: what should I look at next?", "Which function here would you reuse, and why?",
        "Anything in this part that would break with a cached prompt?", "Summarise this file in one line.")
CALIBRATION_ANSWER, CALIBRATION_TOKENS = "Reading it now.", 1
TOLERANCE_TOKENS = 8  # the last prompt may differ from the final size by this much before we flag it
SLACK_TOKENS = 256  # a slot's room beyond the final prompt and its answer


class SessionProfile(Strict):
    """A coding-assistant session (module doc): TTFT as the conversation grows, with the prompt cache on."""

    final_tokens: int = Field(8192, ge=256, description="the last turn's prompt size in tokens (template included)")
    turns: int = Field(8, ge=2, description="user turns, growing the conversation in equal steps to final_tokens")
    max_tokens: int = Field(48, ge=1, description="tokens the model answers per turn (greedy, always all of them)")
    repeats: int = Field(3, ge=2, description="single sessions measured (cache on, then the baseline); median kept")
    sessions: int = Field(2, ge=1, description="sessions at once, each on its own slot (1: no concurrent round)")
    baseline: Literal["final", "all"] = Field(
        "final", description='the cache-off baseline: "final" reads the last turn whole once per repeat; "all" '
                             "replays every turn without the cache (costs the sum of all prompt sizes)")
    files: str = Field("prompts/session", description="folder of .txt files the session reads as tool results")
    seed: int = 42

    @model_validator(mode="after")
    def _steps(self) -> SessionProfile:
        if self.final_tokens < 64 * self.turns:
            raise PydanticCustomError("turns", "final_tokens ({f}) leaves fewer than 64 tokens per turn for {t} "
                                               "turns: raise final_tokens or lower turns",
                                      {"f": self.final_tokens, "t": self.turns})
        return self


class SessionThresholds(Strict):
    max_ttft_s: float = Field(10.0, gt=0, description="time to the first token of the last turn, cache on")
    min_cache_hit_pct: float = Field(50.0, ge=0, le=100, description="prompt tokens reused after the first turn")
    max_concurrent_ttft_s: float = Field(30.0, gt=0, description="last turn's TTFT with all sessions at once")


def server_overrides(settings, base_ctx_size: int) -> tuple[int, int]:
    """One slot per concurrent session, each with room for the final prompt and its answer."""
    per_slot = settings.final_tokens + settings.max_tokens + SLACK_TOKENS
    slots = settings.sessions
    return max(base_ctx_size, per_slot * slots), slots


def plan_final(final_tokens: int, max_tokens: int, trained: int | None,
               slot_ctx: int | None) -> tuple[int, str | None]:
    """The final size this model and slot can hold, and why it is smaller than asked (None: it is not)."""
    room = min((n for n in (trained, slot_ctx) if n), default=None)
    if room is None or final_tokens + max_tokens + TOLERANCE_TOKENS <= room:
        return final_tokens, None
    which = "the model's trained context" if room == trained else "a slot's context"
    return room - max_tokens - TOLERANCE_TOKENS, (f"{which} of {room} tokens cannot hold {final_tokens} prompt "
                                                  f"tokens plus {max_tokens} answered")


def targets(first: int, final: int, turns: int) -> list[int]:
    """Prompt size after each turn: equal steps from the bare first prompt to the final size."""
    return [first + round((final - first) * k / turns) for k in range(1, turns + 1)]


@dataclass
class Turn:
    """One request of a session and what the engine said of it."""

    record: Any
    turn: int
    target: int
    cache: bool

    def sample(self, **extra) -> dict:
        t = self.record.timings or {}
        new, cached = t.get("prompt_n"), t.get("cache_n")
        return {**self.record.as_sample(), "turn": self.turn, "target_tokens": self.target, "cache_prompt": self.cache,
                "prompt_tokens": prompt_total(self.record), "cached_tokens": cached, "new_tokens": new,
                "prefill_tokens_per_s": t.get("prompt_per_second"), **extra}


def prompt_total(record) -> int | None:
    """The whole prompt's tokens: llama-server's prompt_n counts only what it read, cache_n the rest."""
    t, usage = record.timings or {}, record.usage or {}
    if t.get("prompt_n") is not None and t.get("cache_n") is not None:
        return int(t["prompt_n"]) + int(t["cache_n"])
    if usage.get("prompt_tokens") is not None:
        return int(usage["prompt_tokens"])
    return t.get("prompt_n")


@dataclass
class Shape:
    """What sizes the turns: the token counter, the template's tokens and the targets."""

    count: Callable[[str], int]
    max_tokens: int
    first_overhead: int  # template tokens of system + first user message + the answer's start
    pair_overhead: int  # template tokens one more (assistant, user) pair adds
    sizes: list[int]  # each turn's target prompt size
    seed: int


@dataclass
class Session:
    """One conversation on one slot: builds each turn to its target size and keeps the replies."""

    shape: Shape
    corpus: Corpus
    slot: int | None
    count: Callable[[str], int] | None = None  # this session's own connection's /tokenize (threads)
    pair_overhead: int | None = None  # learnt from this session's replies, from the calibration's at first
    messages: list[dict] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    last_total: int | None = None
    pending: int = 0  # tokens of what was added since the last measured prompt (answer + user turn)

    def next_message(self) -> int:
        """Append the next user turn, cut so the prompt reaches its target; returns the turn number."""
        k, count = len(self.turns), self.count or self.shape.count
        target = self.shape.sizes[k]
        if k == 0:
            self.messages = [{"role": "system", "content": SYSTEM}]
            fixed = count(SYSTEM) + count(TASK) + 2 + self.shape.first_overhead
            content = self.corpus.take(target - fixed, count)
            self.messages.append({"role": "user", "content": f"{TASK}\n\n{content}"})
            return 1
        answer = count(self.messages[-1]["content"]) if self.messages[-1]["role"] == "assistant" else 0
        ask = NEXT[(k - 1) % len(NEXT)]
        pair = self.shape.pair_overhead if self.pair_overhead is None else self.pair_overhead
        budget = target - self.last_total - answer - pair - count(ask) - 2
        content = self.corpus.take(budget, count) if budget > 0 else ""
        text = f"{content}\n\n{ask}" if content else ask
        self.pending = answer + count(text)
        self.messages.append({"role": "user", "content": text})
        return k + 1

    def reply(self, turn: Turn) -> None:
        """Keep the answer as the next assistant turn and learn the template's tokens from the reply."""
        total = prompt_total(turn.record)
        if self.last_total is not None and total is not None:
            self.pair_overhead = total - self.last_total - self.pending
        self.last_total = total if total is not None else self.shape.sizes[turn.turn - 1]
        self.turns.append(turn)
        self.messages.append({"role": "assistant", "content": turn.record.content})

    def prompt(self, k: int) -> list[dict]:
        """The conversation as sent on turn k (1-based): up to its user message."""
        users = [i for i, m in enumerate(self.messages) if m["role"] == "user"]
        return self.messages[:users[k - 1] + 1]


def run(ctx: ProfileContext) -> Outcome:
    s = ctx.settings
    files = prompt_files(ctx.root, s.files)
    trained = (ctx.model_meta or {}).get("context_length")
    slot_ctx = ctx.server.args.ctx_per_slot if ctx.server is not None else None
    final, why = plan_final(s.final_tokens, s.max_tokens, trained, slot_ctx)
    flags = [f"the session stops at {final} tokens: {why}"] if why else []
    slots = SLOTS in ctx.client.engine.supports
    shape, calibration = _calibrate(ctx, final, token_counter(ctx.client), slots)
    samples, singles, baselines = [calibration], [], []
    for r in range(1, s.repeats + 1):
        session = Session(shape, Corpus(files), 0 if slots else None)
        for k in range(1, s.turns + 1):
            ctx.progress(f"repeat {r}/{s.repeats}: turn {k}/{s.turns}, cache on")
            session.next_message()
            _send(ctx.client, session, k, cache=k > 1)
        singles.append(session)
        baselines.append(_baseline(ctx, session, r))
        samples += [t.sample(repeat=r, run="single") for t in session.turns]
        samples += [t.sample(repeat=r, run="nocache") for t in baselines[-1]]
    concurrent = _concurrent(ctx, files, shape, slots) if s.sessions > 1 else []
    for i, session in enumerate(concurrent):
        samples += [t.sample(session=i + 1, run="concurrent") for t in session.turns]
    return summarize(ctx, final, singles, baselines, concurrent, samples, flags)


def _params(seed: int, slot: int | None) -> dict:
    return {"temperature": 0.0, "seed": seed, "ignore_eos": True, **({"id_slot": slot} if slot is not None else {})}


def _send(client, session: Session, k: int, cache: bool, keep: bool = True) -> Turn:
    """Turn k (1-based) of a session as its conversation stands at that turn; `keep`: its answer
    becomes the next assistant turn (the baseline only reads the prompt again)."""
    record = client.chat("", prompt_name=f"turn {k}{'' if cache else ' (cache off)'}",
                         max_tokens=session.shape.max_tokens, messages=session.prompt(k), cache_prompt=cache,
                         **_params(session.shape.seed, session.slot))
    if record.error:
        raise CellError(f"turn {k} failed: {record.error}")
    turn = Turn(record, k, session.shape.sizes[k - 1], cache)
    if keep:
        session.reply(turn)
    return turn


def _baseline(ctx: ProfileContext, session: Session, repeat: int) -> list[Turn]:
    """The same prompts read whole (`cache_prompt: false`): the last one, or every turn's."""
    s = ctx.settings
    turns = range(1, s.turns + 1) if s.baseline == "all" else [s.turns]
    found = []
    for k in turns:
        ctx.progress(f"repeat {repeat}/{s.repeats}: turn {k}/{s.turns}, cache off (baseline)")
        turn = _send(ctx.client, session, k, cache=False, keep=False)
        require_cache_miss(turn.record)
        found.append(turn)
    return found


def _concurrent(ctx: ProfileContext, files: list[Path], shape: Shape, slots: bool) -> list[Session]:
    """`sessions` sessions at once, each on its own slot and connection, every turn sent together."""
    s = ctx.settings
    clients = [ctx.new_client(timeout_s=600.0) for _ in range(s.sessions)]
    sessions = [Session(shape, Corpus(files, start=i), i if slots else None, token_counter(client))
                for i, client in enumerate(clients)]
    together = threading.Barrier(len(sessions))
    errors: list[BaseException] = []

    def work(session: Session, client) -> None:
        try:
            for k in range(1, s.turns + 1):
                session.next_message()  # /tokenize calls before the barrier: none while the others measure
                together.wait()
                if session.slot in (0, None):
                    ctx.progress(f"{len(sessions)} sessions at once: turn {k}/{s.turns}")
                _send(client, session, k, cache=k > 1)
        except BaseException as exc:  # noqa: BLE001 - the first failure is the cell's error, below
            errors.append(exc)
            together.abort()

    threads = [threading.Thread(target=work, args=pair, daemon=True) for pair in zip(sessions, clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for client in clients:
        client.close()
    failed = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
    if failed:
        raise failed[0] if isinstance(failed[0], CellError) else CellError(f"concurrent sessions: {failed[0]}")
    return sessions


def _calibrate(ctx: ProfileContext, final: int, count: Callable[[str], int], slots: bool) -> tuple[Shape, dict]:
    """The template's tokens, from two tiny cold requests (the first also warms the server up):
    system + task, then the same plus one (assistant, user) pair."""
    s = ctx.settings
    ctx.progress("calibrating the chat template's tokens (warm-up)")
    base = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": TASK}]
    more = [*base, {"role": "assistant", "content": CALIBRATION_ANSWER}, {"role": "user", "content": NEXT[0]}]
    totals, record = [], None
    for name, messages in (("calibration", base), ("calibration pair", more)):
        record = ctx.client.chat("", prompt_name=name, max_tokens=CALIBRATION_TOKENS, messages=messages,
                                 cache_prompt=False, **_params(s.seed, 0 if slots else None))
        if record.error or prompt_total(record) is None:
            raise CellError(f"calibration request failed: {record.error or 'the reply says no prompt size'}")
        totals.append(prompt_total(record))
    first = totals[0] - count(SYSTEM) - count(TASK)
    pair = totals[1] - totals[0] - count(CALIBRATION_ANSWER) - count(NEXT[0])
    if final - totals[0] < 16 * s.turns:
        raise CellError(f"a final size of {final} tokens leaves no room for {s.turns} turns after the system prompt "
                        f"({totals[0]} tokens before any file): raise final_tokens or lower turns")
    shape = Shape(count, s.max_tokens, first, pair, targets(totals[0], final, s.turns), s.seed)
    return shape, {**record.as_sample(), "calibration": True, "template_tokens": first, "pair_template_tokens": pair}


def summarize(ctx: ProfileContext, final: int, singles: list[Session], baselines: list[list[Turn]],
              concurrent: list[Session], samples: list[dict], flags: list[str]) -> Outcome:
    """The headline figures (module doc) from the sessions, with their intervals and flags."""
    last = [session.turns[-1] for session in singles]
    cold = [turns[-1] for turns in baselines]
    hits = [_hit_pct(session.turns[1:]) for session in singles]
    series: dict[str, list[float | None]] = {
        "ttft_s": [t.record.ttft_s for t in last],
        "ttft_s_nocache": [t.record.ttft_s for t in cold],
        "cache_hit_pct": hits,
        "prefill_tokens_per_s": [(t.record.timings or {}).get("prompt_per_second") for t in last],
        "final_tokens": [prompt_total(t.record) for t in last],
    }
    if concurrent:
        series["ttft_s_concurrent"] = [session.turns[-1].record.ttft_s for session in concurrent]
    metrics: dict[str, float | None] = {name: median(values) for name, values in series.items()}
    intervals: dict[str, Interval] = {name: found for name, values in series.items()
                                      if name != "final_tokens" and (found := median_interval(values)) is not None}
    for name in ("ttft_s", "ttft_s_nocache", "ttft_s_concurrent"):
        if name in metrics:
            sized = f"ttft_s_at_{final}{name.removeprefix('ttft_s')}"
            metrics[sized] = metrics[name]
            if name in intervals:
                intervals[sized] = intervals[name]
    cached, nocache = metrics["ttft_s"], metrics["ttft_s_nocache"]
    metrics["cache_speedup_x"] = nocache / cached if cached and nocache else None
    metrics.update({"turns": len(singles[0].turns), "repeats": len(singles), "sessions": len(concurrent) or 1})
    server_ttft = median([(t.record.timings or {}).get("prompt_ms", 0) / 1000 or None for t in cold])
    metrics["clock_disagreement_pct"], clock = clock_check(metrics["ttft_s_nocache"], server_ttft,
                                                           f"time to first token at {final} tokens, cache off")
    thinking, reasoned = reasoning_figures([t.record for t in last], intervals, ttft=f"ttft_s_at_{final}")
    metrics.update(thinking)
    return Outcome(metrics, samples, flags + clock + _flags(ctx, final, singles, concurrent, metrics) + reasoned,
                   intervals)


def _hit_pct(turns: list[Turn]) -> float | None:
    """Cached over prompt tokens; None when the engine did not say how many were cached."""
    cached = [(t.record.timings or {}).get("cache_n") for t in turns]
    totals = [prompt_total(t.record) for t in turns]
    if not turns or None in cached or None in totals or not sum(totals):
        return None
    return sum(cached) / sum(totals) * 100


def _flags(ctx: ProfileContext, final: int, singles: list[Session], concurrent: list[Session],
           metrics: dict) -> list[str]:
    flags = []
    if metrics["cache_hit_pct"] is None:
        flags.append(f"{ctx.client.engine.name if ctx.server is not None else 'the endpoint'} does not report cached "
                     "prompt tokens (timings.cache_n), so cache_hit_pct is unknown, not 0")
    elif metrics["cache_hit_pct"] == 0:
        flags.append("the engine reused no cached tokens on the turns after the first (cache_n 0): each turn read "
                     "the whole conversation again (no per-slot cache, a chat template that rewrites earlier turns, "
                     "or a sliding-window model whose cache cannot be reused)")
    reached = metrics["final_tokens"]
    if reached is not None and abs(reached - final) > TOLERANCE_TOKENS:
        flags.append(f"the last prompt was {reached:.0f} tokens, not {final}")
    if any(t.record.ttft_s is None for s in singles + concurrent for t in s.turns):
        flags.append("some answers had no visible token (only whitespace): their TTFT is missing")
    if concurrent and ctx.server is not None and ctx.server.args.parallel < len(concurrent):
        flags.append(f"the server has {ctx.server.args.parallel} slots for {len(concurrent)} sessions: some waited")
    if concurrent and ctx.server is None:
        flags.append("an endpoint's slots are unknown: the concurrent sessions may have shared or waited for slots")
    return flags


KIND = ProfileKind(
    name="session",
    summary="a growing coding-assistant session with the prompt cache on: TTFT per turn, cache hits, concurrent "
            "sessions",
    version=1,
    settings=SessionProfile,
    thresholds=SessionThresholds,
    run=run,
    files=lambda s, root: ("session_files", prompt_files(root, s.files)),
    metrics=("ttft_s", "ttft_s_nocache", "ttft_s_concurrent", "cache_hit_pct", "prefill_tokens_per_s",
             "final_tokens", "cache_speedup_x", "turns", "repeats", "sessions", "clock_disagreement_pct",
             *REASONING_METRICS),  # the last only where the model reasons
    rules=(
        Rule("ttft_s", "max_ttft_s", "max", critical=True),
        Rule("cache_hit_pct", "min_cache_hit_pct", "min", critical=False, ceiling=100.0),
        Rule("ttft_s_concurrent", "max_concurrent_ttft_s", "max", critical=False),
    ),
    headlines={"ttft_s": "session_ttft_s", "cache_hit_pct": "cache_hit_pct",
               "ttft_s_nocache": "session_ttft_s_nocache", "ttft_s_concurrent": "session_ttft_s_concurrent"},
    # a performance profile: the overall pick and the use-case lines of the report read its rating
    case=Case("Coding assistant sessions", "coding sessions",
              ("session_ttft_s", "cache_hit_pct", "session_ttft_s_concurrent"), (("session_ttft_s", False),)),
    figures={"session_ttft_s": Figure("{} s", "TTFT at the session's end", "TTFT"),
             "cache_hit_pct": Figure("{}%", "prompt cache hits", "cached"),
             "session_ttft_s_nocache": Figure("{} s", "TTFT without the cache", "TTFT without cache"),
             "session_ttft_s_concurrent": Figure("{} s", "TTFT with all sessions at once", "TTFT concurrent")},
    server_overrides=server_overrides,
    engine_needs=frozenset({"tokenize"}),  # sizes the turns with the server's own /tokenize
    roles=frozenset({"turns"}),
    uses=("agent", "coding"),
    init_settings=("final_tokens", "turns", "sessions"),
)
