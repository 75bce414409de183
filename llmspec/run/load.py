"""The load engine (seeds/003): many questions, several at once, against one server.

Questions come from a JSON list and are sent in order, cycling when more are asked for than the
file holds. `concurrent` worker threads each own one streaming `ChatClient` (one keep-alive
connection each), so a worker picks the next question as soon as its last answer is complete,
and the server always has `concurrent` requests in flight. A failed or timed-out request is
recorded with its error and the run goes on; Ctrl+C stops the workers and keeps what finished.

The `load` profile and `llmspec loadtest` (llmspec/loadtest.py) both drive it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from llmspec.errors import UserError
from llmspec.run.client import ChatClient, RequestRecord

log = logging.getLogger(__name__)
PARAMS = {"seed": 42}  # the same sampling every run, so answer lengths (and tokens/s) compare
STOP_GRACE_S = 2.0  # after Ctrl+C, how long finishing streams may take before they are abandoned


@dataclass
class Answer:
    """One question's request; `start_s`/`end_s` are on the run's clock (seconds since its start)."""

    index: int
    question: str
    record: RequestRecord
    start_s: float
    end_s: float

    @property
    def ok(self) -> bool:
        return self.record.error is None

    @property
    def latency_s(self) -> float:
        return self.end_s - self.start_s

    @property
    def tokens(self) -> int:
        """Server-counted output tokens; content chunks where a server reports no usage; 0 if failed."""
        if not self.ok:
            return 0
        n = self.record.completion_tokens
        return n if n is not None else len(self.record.chunk_times_s)


@dataclass
class LoadRun:
    answers: list[Answer]  # in question order; only requests that finished
    wall_s: float
    started: datetime
    ended: datetime
    interrupted: bool


def run_load(make_client: Callable[[threading.Event], ChatClient], questions: list[str], concurrent: int,
             max_tokens: int, on_done: Callable[[Answer, int], None] | None = None) -> LoadRun:
    """Send every question with `concurrent` requests in flight; Ctrl+C ends it with what finished.

    Workers are daemon threads so that Ctrl+C never waits on a request the server is still
    sitting on: streams stop at their next chunk, and any still silent after a short grace are
    abandoned rather than holding the partial results back.
    """
    jobs: queue.SimpleQueue = queue.SimpleQueue()
    done: queue.SimpleQueue = queue.SimpleQueue()
    for job in enumerate(questions):
        jobs.put(job)
    stop, t0, started = threading.Event(), time.perf_counter(), datetime.now()
    workers = [threading.Thread(target=_work, args=(make_client(stop), jobs, done, stop, max_tokens, t0),
                                name=f"llmspec-load-{n + 1}", daemon=True)
               for n in range(min(concurrent, len(questions)))]
    for worker in workers:
        worker.start()
    answers: dict[int, Answer] = {}
    try:
        _drain(workers, done, answers, on_done)
        interrupted = False
    except KeyboardInterrupt:
        interrupted = True
        _stop_workers(workers, stop, done, answers)
    return LoadRun([answers[i] for i in sorted(answers)], time.perf_counter() - t0, started, datetime.now(),
                   interrupted)


def run_open(make_client: Callable[[threading.Event], ChatClient], questions: list[str], times: list[float],
             max_tokens: int, on_done: Callable[[Answer, int], None] | None = None) -> LoadRun:
    """Open loop: question i is sent at `times[i]` seconds after the start, whether or not the
    earlier ones were answered (llmspec.arrivals makes the times), each on its own connection.
    A server that falls behind builds a queue, and the waiting is in the latencies, as it is for
    real traffic. Ctrl+C ends it with what finished, as `run_load` does."""
    done: queue.SimpleQueue = queue.SimpleQueue()
    stop, t0, started = threading.Event(), time.perf_counter(), datetime.now()
    senders: list[threading.Thread] = []
    answers: dict[int, Answer] = {}

    try:
        for job, at in zip(enumerate(questions), times):
            while (delay := t0 + at - time.perf_counter()) > 0:
                _take(done, answers, on_done, delay)  # back at the send time at the latest, earlier for an answer
            one: queue.SimpleQueue = queue.SimpleQueue()
            one.put(job)
            sender = threading.Thread(target=_work, args=(make_client(stop), one, done, stop, max_tokens, t0),
                                      name=f"llmspec-open-{job[0] + 1}", daemon=True)
            sender.start()
            senders.append(sender)
        _drain(senders, done, answers, on_done)
        interrupted = False
    except KeyboardInterrupt:
        interrupted = True
        _stop_workers(senders, stop, done, answers)
    return LoadRun([answers[i] for i in sorted(answers)], time.perf_counter() - t0, started, datetime.now(),
                   interrupted)


def _take(done: queue.SimpleQueue, answers: dict[int, Answer], on_done, wait_s: float) -> None:
    """The next finished answer, if one comes within `wait_s`: kept, logged and reported."""
    with contextlib.suppress(queue.Empty):
        answer = done.get(timeout=max(0.0, wait_s))
        answers[answer.index] = answer
        _log_answer(answer)
        if on_done:
            on_done(answer, len(answers))


def _drain(threads: list[threading.Thread], done: queue.SimpleQueue, answers: dict[int, Answer], on_done) -> None:
    """Every answer still to come from `threads` (each sends until its questions are done)."""
    while not done.empty() or any(t.is_alive() for t in threads):
        _take(done, answers, on_done, 0.5)


def _work(client: ChatClient, jobs: queue.SimpleQueue, done: queue.SimpleQueue, stop: threading.Event,
          max_tokens: int, t0: float) -> None:
    """One worker: its own client (one keep-alive connection), the next question until none is left."""
    try:
        while not stop.is_set():
            try:
                index, question = jobs.get_nowait()
            except queue.Empty:
                return
            begin = time.perf_counter() - t0
            try:
                record = client.chat(question, prompt_name=f"q{index + 1:03d}", max_tokens=max_tokens, **PARAMS)
            except Exception as exc:  # a bug or an odd server must not end the run (plan: graceful degradation)
                log.exception("q%03d failed unexpectedly", index + 1)
                record = RequestRecord(f"q{index + 1:03d}", time.time(), error=f"{type(exc).__name__}: {exc}"[:300])
            done.put(Answer(index, question, record, begin, time.perf_counter() - t0))
    finally:
        client.close()


def _stop_workers(workers: list[threading.Thread], stop: threading.Event, done: queue.SimpleQueue,
                  answers: dict[int, Answer]) -> None:
    """Ctrl+C: no new questions, give streams a moment to end, keep what really finished."""
    stop.set()
    log.warning("interrupted: stopping workers, keeping the answers that finished")
    deadline = time.perf_counter() + STOP_GRACE_S
    for worker in workers:
        worker.join(max(0.0, deadline - time.perf_counter()))
    while not done.empty():
        answer = done.get()
        if not (answer.record.error or "").startswith("Interrupted"):
            answers[answer.index] = answer
            _log_answer(answer)


def _log_answer(answer: Answer) -> None:
    if answer.ok:
        log.debug("q%03d ok: %.0f ms, %d tokens", answer.index + 1, answer.latency_s * 1000, answer.tokens)
    else:
        log.warning("q%03d failed after %.0f ms: %s", answer.index + 1, answer.latency_s * 1000, answer.record.error)


# --- pure statistics --------------------------------------------------------------------------


def summary(values: list[float], digits: int = 3) -> tuple[float, float | None, float | None, float | None]:
    """(sum, avg, min, max); avg/min/max are None for an empty list (nothing finished)."""
    if not values:
        return 0, None, None, None
    return round(sum(values), digits), round(sum(values) / len(values), digits), min(values), max(values)


def pick_questions(questions: list[str], count: int) -> list[str]:
    """Sequential selection, cycling through the file (the plan's `questions` parameter)."""
    return [questions[i % len(questions)] for i in range(count)]


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such {what} file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None


def load_questions(path: Path) -> list[str]:
    """A JSON list of questions: strings, or objects with a "question" key."""
    raw = read_json(path, "questions")
    if not isinstance(raw, list) or not raw:
        raise UserError(f"{path}: expected a non-empty JSON list of questions")
    questions = []
    for i, item in enumerate(raw):
        text = item.get("question") if isinstance(item, dict) else item
        if not isinstance(text, str) or not text.strip():
            raise UserError(f"{path}: [{i}]: expected a non-empty question string, got {json.dumps(item)[:60]}")
        questions.append(text.strip())
    return questions


