"""`llmspec loadtest NAME`: the stress-test plan (seeds/003) against any OpenAI-compatible server.

It writes the plan's `results/NAME.json` (meta / results / aggregate) and a log
`results/NAME.log`. The engine that sends the questions is `llmspec.run.load`, which the `load`
profile drives too; this module is the plan's files and its command line.

`--concurrent 1,2,4` measures each level in turn (the same questions at each): the plan's
meta/results/aggregate then describe the last level, unchanged in shape for the plan's own
readers, and a `levels` list holds every level's aggregate and capacity figures and its
per-request times (so every level's percentiles get intervals when compared), with
`capacity`: the most users served at the service level (llmspec.capacity; `--max-p90-ttft`,
`--min-tokens-per-user`, defaults from [thresholds.load]). `--arrival constant|poisson --rate R`
sends the questions at R per second instead of as fast as `--concurrent` users ask.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import requests
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from llmspec.arrivals import gaps, schedule
from llmspec.capacity import ServiceLevel, level_figures, max_users, sentence
from llmspec.errors import UserError
from llmspec.profiles.load import LoadProfile, LoadThresholds
from llmspec.profiles.quality import LOADTEST_SCORE as SCORE
from llmspec.profiles.quality import Scorer
from llmspec.results import SCHEMA_VERSION, write_text_atomic
from llmspec.run.client import ChatClient
from llmspec.run.load import (
    Answer,
    LoadRun,
    load_questions,
    pick_questions,
    read_json,
    run_load,
    run_open,
    summary,
)
from llmspec.stats import percentile

log = logging.getLogger(__name__)
BUNDLED_QUESTIONS = Path(__file__).resolve().parent.parent / "prompts" / "questions.json"
FLAG_OF = {"server": "--endpoint", "model": "--model", "concurrent": "--concurrent", "questions": "--count",
           "timeout": "--timeout"}


def calculate_aggregates(results: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    """The plan's aggregate over every result (a failure counts its time and 0 tokens), plus
    percentiles of successful requests and throughput over the run's wall time."""
    ok = [r for r in results if r.get("error") is None]
    times, tokens = [r["time"] for r in results], [r["token"] for r in results]
    out = dict(zip(("runtime_sum", "runtime_avg", "runtime_min", "runtime_max"), summary(times)))
    out.update(zip(("token_sum", "token_avg", "token_min", "token_max"), summary(tokens)))
    out.update(requests_ok=len(ok), requests_failed=len(results) - len(ok),
               error_pct=round(100 * (len(results) - len(ok)) / len(results), 3) if results else None)
    for name, key in (("latency", "time"), ("ttft", "ttft")):
        present = [r[key] for r in ok if r.get(key) is not None]
        for pct in (50, 90, 99):
            value = percentile(present, pct)
            out[f"{name}_p{pct}_ms"] = round(value, 3) if value is not None else None
    out["requests_per_s"] = round(len(ok) / wall_s, 4) if wall_s > 0 else None
    out["output_tokens_per_s"] = round(sum(r["token"] for r in ok) / wall_s, 4) if wall_s > 0 else None
    scored = [r[SCORE] for r in results if r.get("scored")]
    if scored:  # questions with a scorer: the share answered right (a failed request scores 0)
        out["quality_avg"], out["quality_scored"] = round(sum(scored) / len(scored), 4), len(scored)
    return out


def load_scorers(path: Path) -> dict[str, Any]:
    """Question text -> its scorer, for entries that carry one (`{"question": ..., "scorer": {...}}`,
    the quality profile's number, choice, regex and json scorers); one line naming the entry if bad."""
    adapter, found = TypeAdapter(Scorer), {}
    raw = read_json(path, "questions")
    for i, item in enumerate(raw if isinstance(raw, list) else []):
        if isinstance(item, dict) and "scorer" in item:
            try:
                found[str(item.get("question", "")).strip()] = adapter.validate_python(item["scorer"])
            except ValidationError as exc:
                first = exc.errors()[0]
                raise UserError(f"{path}: [{i}].scorer: {first['msg']}") from None
    return found


# --- the plan's files ---------------------------------------------------------------------------


class RunConfig(BaseModel):
    """The plan's config.json, after command-line flags were laid over it."""

    model_config = ConfigDict(extra="forbid")
    server: str = Field(pattern=r"^https?://\S+$")
    model: str = Field(min_length=1)
    concurrent: Annotated[int, Field(ge=1)] | list[Annotated[int, Field(ge=1)]] = Field(
        LoadProfile.model_fields["concurrent"].default, union_mode="left_to_right")
    questions: int = Field(LoadProfile.model_fields["questions"].default, ge=1)
    timeout: float = Field(LoadProfile.model_fields["timeout_s"].default, gt=0)


def levels_of(cfg: RunConfig) -> list[int]:
    levels = sorted(cfg.concurrent) if isinstance(cfg.concurrent, list) else [cfg.concurrent]
    if not levels or any(n < 1 for n in levels) or len(set(levels)) != len(levels):
        raise UserError(f"--concurrent: {cfg.concurrent!r}: give users in flight as 4 or distinct levels as 1,2,4")
    return levels


def load_config(path: Path | None, flags: dict[str, Any]) -> RunConfig:
    """config.json (optional) with non-None flags laid over it; one line naming file or flag and key."""
    values: dict[str, Any] = {}
    if path is not None:
        values = read_json(path, "config")
        if not isinstance(values, dict):
            raise UserError(f"{path}: expected a JSON object with server, model, concurrent, questions, timeout")
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        return RunConfig.model_validate({**values, **given})
    except ValidationError as exc:
        err = exc.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else "?"
        where = FLAG_OF.get(key, key) if key in given or path is None else f"{path}: {key}"
        if err["type"] == "missing":
            raise UserError(f"{key} is required (give {FLAG_OF[key]} or \"{key}\" in a --config file)") from None
        if err["type"] == "extra_forbidden":
            raise UserError(f"{path}: {key}: unknown key (allowed: {', '.join(RunConfig.model_fields)})") from None
        raise UserError(f"{where}: {err['input']!r}: {err['msg']}") from None


def check_connection(base_url: str, api_key: str | None) -> None:
    """Fail fast, in one line, before firing questions: a GET to /v1/models, then /health."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    problem = ""
    for path in ("/v1/models", "/health"):
        try:
            resp = requests.get(base_url.rstrip("/") + path, headers=headers, timeout=(5, 15))
        except requests.RequestException as exc:
            reason = "connection refused" if "refused" in str(exc).lower() else type(exc).__name__
            raise UserError(f"cannot reach {base_url} ({reason}); is the server running?") from None
        if resp.status_code == 200:
            return
        if resp.status_code in (401, 403):
            raise UserError(f"{base_url} refused the request (HTTP {resp.status_code} from {path}); "
                            "check --api-key-env")
        problem = problem or f"HTTP {resp.status_code} from {path}"
    raise UserError(f"{base_url} is not ready ({problem})")


def build_document(cfg: RunConfig, run: LoadRun, concurrent: int | None = None,
                   scorers: dict[str, Any] | None = None) -> dict[str, Any]:
    """The plan's document of one level (`concurrent`: that level's users, default the config's);
    answers to questions with a scorer get their score as `quality`."""
    results = [plan_entry(a, (scorers or {}).get(a.question)) for a in run.answers]
    meta = {"start_date": run.started.strftime("%Y-%m-%d"), "start_time": _clock(run.started),
            "end_date": run.ended.strftime("%Y-%m-%d"), "end_time": _clock(run.ended),
            "server": cfg.server, "model": cfg.model,
            "concurrent": concurrent if concurrent is not None else cfg.concurrent, "questions": cfg.questions,
            "timeout": cfg.timeout, "total_duration_ms": round(run.wall_s * 1000, 3)}
    return {"meta": meta, "results": results, "aggregate": calculate_aggregates(results, run.wall_s),
            "schema_version": SCHEMA_VERSION}  # after the plan's three keys, which keep their order


# What each level keeps of every request (the texts are the last level's `results` only): enough for the
# 95 % intervals of every level's percentiles (`llmspec compare`), not a second copy of every answer.
LEVEL_KEYS = ("time", "ttft", "token", "error")


def with_levels(runs: dict[int, LoadRun], cfg: RunConfig, slo: ServiceLevel, arrival: dict | None = None,
                scorers: dict[str, Any] | None = None) -> dict[str, Any]:
    """The last level's plan document, plus `levels` and `capacity` when more than one level ran."""
    last = max(runs)
    document = build_document(cfg, runs[last], last, scorers)
    if arrival:
        document["meta"]["arrival"] = arrival
        starts = sorted(a.start_s for a in runs[last].answers)
        between = gaps(starts)
        document["aggregate"]["mean_interarrival_ms"] = round(1000 * sum(between) / len(between), 3) \
            if between else None
    if len(runs) > 1:
        figures = {users: level_figures(run.answers, run.wall_s, slo) for users, run in runs.items()}
        each = {users: build_document(cfg, run, users, scorers) for users, run in runs.items()}
        document["levels"] = [{"concurrent": users, "aggregate": each[users]["aggregate"],
                               "figures": figures[users], "meets_service_level": not slo.misses(figures[users]),
                               "results": [{k: r[k] for k in LEVEL_KEYS} for r in each[users]["results"]]}
                              for users in sorted(runs)]
        users = max_users(figures, slo)
        document["capacity"] = {"max_users_at_slo": users, "service_level": slo.text(),
                                "sentence": sentence(users, slo, figures)}
    return document


def _clock(moment: datetime) -> str:
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


FORMATS = ("json", "csv", "xlsx")


def save_exports(path: Path, document: dict[str, Any], formats: list[str]) -> None:
    """`--format csv,xlsx` beside the plan's JSON: the per-question results as CSV; as xlsx a
    sheet each for results, aggregate and (when sweeping) levels."""
    import polars as pl

    results = pl.DataFrame(document["results"], infer_schema_length=None).drop("answer")
    try:
        if "csv" in formats:
            write_text_atomic(path.with_suffix(".csv"), results.write_csv())
        if "xlsx" in formats:
            from llmspec.report.xlsx import write_xlsx

            tables = {"results": results, "aggregate": pl.DataFrame([document["aggregate"]])}
            if "levels" in document:
                tables["levels"] = pl.DataFrame([{"concurrent": lv["concurrent"], **lv["figures"]}
                                                 for lv in document["levels"]])
            write_xlsx(path.with_suffix(".xlsx"), tables)
    except OSError as exc:
        raise UserError(f"{path.parent}: cannot write exports ({exc.strerror or exc})") from None


def save_results(path: Path, document: dict[str, Any]) -> None:
    """Atomically (temp file + rename), keys in the plan's order; a failure is one line, not a traceback."""
    try:
        write_text_atomic(path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    except OSError as exc:
        raise UserError(f"{path}: cannot write results ({exc.strerror or exc})") from None


# --- `llmspec loadtest` -------------------------------------------------------------------------


def add_parser(sub) -> None:
    p = sub.add_parser("loadtest", help="send concurrent questions to a server; write results/NAME.json")
    p.add_argument("output", metavar="OUTPUT_NAME", help="writes results/OUTPUT_NAME.json and .log")
    p.add_argument("--config", type=Path, help="the plan's config.json (server, model, concurrent, questions, timeout)")
    p.add_argument("--endpoint", help="server base URL, e.g. http://127.0.0.1:8080")
    p.add_argument("--model")
    p.add_argument("--questions", type=Path, help="JSON list of questions (default prompts/questions.json)")
    p.add_argument("--concurrent", type=_levels_arg, help="users in flight, or levels to measure in turn: 1,2,4")
    p.add_argument("--arrival", choices=("closed", "constant", "poisson"), default="closed",
                   help="closed: each user asks again when answered (default); constant/poisson: --rate per second")
    p.add_argument("--rate", type=float, help="requests per second for --arrival constant or poisson")
    p.add_argument("--duration", type=float, help="open arrivals: send nothing after this many seconds")
    p.add_argument("--max-p90-ttft", type=float, default=LoadThresholds.model_fields["max_p90_ttft_s"].default,
                   help="service level: p90 seconds to the first token (capacity across levels)")
    p.add_argument("--min-tokens-per-user", type=float,
                   default=LoadThresholds.model_fields["min_tokens_per_s_per_user"].default,
                   help="service level: each user's tokens per second")
    p.add_argument("--count", type=int, help="how many questions to send in all (cycling through the file)")
    p.add_argument("--timeout", type=float, help="seconds one request may take in all")
    p.add_argument("--max-tokens", type=int, default=LoadProfile.model_fields["max_tokens"].default)
    p.add_argument("--api-key-env", metavar="NAME", help="environment variable holding the API key")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    p.add_argument("--format", default="json", help="json (always) plus csv and/or xlsx: json,csv,xlsx")


def command(args) -> int:
    """Validate everything, check the server, run, write; 0 done, 2 usage/connection, 130 Ctrl+C."""
    name = args.output.removesuffix(".json")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise UserError(f"{args.output!r}: OUTPUT_NAME must be a plain file name (letters, digits, . _ -)")
    flags = {"server": args.endpoint, "model": args.model, "concurrent": args.concurrent,
             "questions": args.count, "timeout": args.timeout}
    cfg = load_config(args.config, flags)
    levels = levels_of(cfg)
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    if not set(formats) <= set(FORMATS):
        raise UserError(f"--format: {args.format!r}: give any of {', '.join(FORMATS)}, comma-separated")
    if args.max_tokens < 1:
        raise UserError(f"--max-tokens: {args.max_tokens}: must be at least 1")
    if args.arrival != "closed" and (args.rate is None or args.rate <= 0 or len(levels) > 1):
        raise UserError(f"--arrival {args.arrival}: needs --rate (requests per second, above 0) and one --concurrent")
    slo = ServiceLevel(args.max_p90_ttft, LoadThresholds.model_fields["max_p90_latency_s"].default,
                       args.min_tokens_per_user, LoadThresholds.model_fields["max_error_pct"].default)
    questions_file = args.questions or _default_questions()
    questions = pick_questions(load_questions(questions_file), cfg.questions)
    scorers = load_scorers(questions_file)
    api_key = _api_key(args.api_key_env)
    out = Path("results")
    handler = _log_to(out / f"{name}.log", args.log_level)
    try:
        log.info("loadtest %s: %s model %s, %d questions, %d concurrent, timeout %g s, max_tokens %d",
                 name, cfg.server, cfg.model, cfg.questions, cfg.concurrent, cfg.timeout, args.max_tokens)
        check_connection(cfg.server, api_key)
        client = lambda stop: ChatClient(cfg.server, cfg.model, api_key, cfg.timeout,  # noqa: E731
                                         deadline_s=cfg.timeout, stop=stop)
        runs: dict[int, LoadRun] = {}
        arrival = None
        for users in levels:
            level = users if len(levels) > 1 else None  # one level: the plan's progress line, as it was
            if args.arrival == "closed":
                run = run_load(client, questions, users, args.max_tokens, on_done=_progress(len(questions), level))
            else:
                times = schedule(args.arrival, args.rate, len(questions), duration_s=args.duration)
                arrival = {"pattern": args.arrival, "rate_per_s": args.rate, "seed": 42}
                run = run_open(client, questions[:len(times)], times, args.max_tokens,
                               on_done=_progress(len(times), level))
            runs[users] = run
            if run.interrupted:
                break
        document = with_levels(runs, cfg, slo, arrival, scorers)
        save_results(out / f"{name}.json", document)
        save_exports(out / f"{name}.json", document, formats)
        _report(out / f"{name}.json", document, run.interrupted)
        return 130 if run.interrupted else 0
    except UserError as exc:
        log.error("%s", exc)
        raise
    except Exception:
        log.exception("loadtest %s failed", name)  # the stack trace goes to the log for debugging
        raise
    finally:
        logging.getLogger("llmspec").removeHandler(handler)
        handler.close()


def _default_questions() -> Path:
    local = Path("prompts/questions.json")
    return local if local.exists() else BUNDLED_QUESTIONS


def _api_key(env_name: str | None) -> str | None:
    """The key stays in memory only: never in the results, the log or an error message."""
    if not env_name:
        return None
    key = os.environ.get(env_name)
    if not key:
        raise UserError(f"--api-key-env: environment variable {env_name} is not set")
    return key


def _log_to(path: Path, level: str) -> logging.Handler:
    """A fresh log file for this run next to its results (the plan: a separate log per run)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{path}: cannot write the log ({exc.strerror or exc})") from None
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s"))
    root = logging.getLogger("llmspec")
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    return handler


def _levels_arg(text: str) -> int | list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give users in flight as 4, or levels as 1,2,4") from None
    return values[0] if len(values) == 1 and "," not in text else values


def _progress(total: int, users: int | None = None) -> Callable[[Answer, int], None]:
    """completed/total and elapsed on stderr: rewritten in place on a terminal, a line per step otherwise."""
    t0, failed = time.perf_counter(), [0]
    tty = sys.stderr.isatty()
    level = f"{users} user{'' if users == 1 else 's'}, " if users is not None else ""

    def show(answer: Answer, done: int) -> None:
        failed[0] += not answer.ok
        text = f"loadtest: {level}{done}/{total} done, {failed[0]} failed, {time.perf_counter() - t0:.1f} s elapsed"
        print(f"\r{text}" if tty else text, end="" if tty and done < total else "\n", file=sys.stderr, flush=True)

    return show


def _report(path: Path, document: dict[str, Any], interrupted: bool) -> None:
    agg, meta = document["aggregate"], document["meta"]
    p90 = agg["latency_p90_ms"]
    figures = f", p90 latency {p90:.0f} ms, {agg['output_tokens_per_s']:.1f} output tokens/s" if p90 is not None else ""
    if interrupted and sys.stderr.isatty():
        print(file=sys.stderr)  # end the progress line that was being rewritten in place
    head = f"interrupted: partial results in {path}" if interrupted else str(path)
    print(f"{head}: {len(document['results'])}/{meta['questions']} answers ({agg['requests_ok']} ok, "
          f"{agg['requests_failed']} failed){figures}")
    if "capacity" in document:
        print(f"capacity: {document['capacity']['sentence']}")
    log.info("wrote %s", path)


def plan_entry(answer: Answer, scorer: Scorer | None = None) -> dict[str, Any]:
    """The plan's per-question entry (times in ms), plus `ttft` and `error` so failures show.
    `quality` is the plan's 0.0 unless the question carries a scorer (the quality profile's):
    then 1.0 or 0.0 for this answer, and `scored` says it was scored."""
    record, ok = answer.record, answer.ok
    ttft = record.ttft_s
    entry = {"question": answer.question, "answer": record.content if ok else "",
             "time": round(answer.latency_s * 1000, 3), "token": answer.tokens, SCORE: 0.0,
             "ttft": round(ttft * 1000, 3) if ttft is not None and ok else None, "error": record.error}
    if scorer is not None:
        entry[SCORE] = float(scorer.score(record.content)[0]) if ok else 0.0
        entry["scored"] = True
    return entry
