"""Shared pieces of the benchmark scripts: a throwaway project, synthetic results, timing, the figure line.

The benchmarks measure llmspec as a user runs it: `doit` in a project folder, on result files in
the exact on-disk contract. So the synthetic results here are built the way the runner builds
them (fingerprint from `Plan.inputs`, written by `write_result`), and a generated matrix is up to
date for the same reason a measured one is, not because anything was faked around the check.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # `llmspec` from this checkout, also when run as benchmarks/<name>.py

from llmspec.engines import argv  # noqa: E402
from llmspec.machine.host import hardware, host_id  # noqa: E402
from llmspec.plan.cells import Cell  # noqa: E402
from llmspec.plan.fingerprint import digest  # noqa: E402
from llmspec.plan.planner import Plan, Workspace  # noqa: E402
from llmspec.profiles import KINDS  # noqa: E402
from llmspec.profiles import PROFILES as REGISTRY  # noqa: E402
from llmspec.profiles.long_context import PER_SIZE  # noqa: E402
from llmspec.results import write_result  # noqa: E402
from llmspec.run.runner import SERVER_METRICS  # noqa: E402
from llmspec.spec import Thresholds, load_spec  # noqa: E402

QUANTS = ("Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0")
PROFILES = ("interactive", "long_context", "batch", "quality", "load")  # stress: see synthetic_spec
LONG_CONTEXT_SIZES = (512, 1024, 2048)
# What each profile writes: its declared metrics (its KIND), long_context's per-size ones, and the
# runner's server figures.
METRICS = {
    kind.name: tuple(dict.fromkeys(kind.metrics + kind.rated_metrics + SERVER_METRICS
                                   + (tuple(f"{m}_{n}" for n in LONG_CONTEXT_SIZES for m in PER_SIZE)
                                      if kind.name == "long_context" else ())))
    for kind in KINDS
}
ANSWER_WORDS = ("the lighthouse keeper climbed the stairs again that evening and counted the ships that "
                "passed beneath the cliff while the storm gathered over the harbour and the gulls fell "
                "silent one by one as the lamp turned").split()


def say(text: str) -> None:
    """Progress goes to stderr, so stdout ends with the one figure line."""
    print(text, file=sys.stderr, flush=True)


def machine_note() -> None:
    """Timings on a shared machine are only as good as its idleness: say how busy it was before we began."""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    busy = " (busy: other work competes for the cores, so figures may read slow and noisy)" if load > cores / 2 else ""
    say(f"  load average before starting: {load:.1f} on {cores} cores{busy}")


class ForeignCpu:
    """Share of the machine's CPU that other processes used during a `with` block (0 = none, 1 = all).

    Waiting, which is all a neighbour's load can do to a measurement, only ever slows it down,
    and on 2 cores one neighbour can halve llama.cpp's speed (its threads spin while waiting for
    each other). System-wide busy time minus this process's and its finished children's is what
    others used; run whatever is measured as a child that has ended by the block's end.
    """

    def __enter__(self) -> ForeignCpu:
        self.t0, self.busy0, self.own0 = time.perf_counter(), _busy_s(), _own_s()
        self.share = 0.0
        return self

    def __exit__(self, *exc) -> None:
        wall = time.perf_counter() - self.t0
        foreign = (_busy_s() - self.busy0) - (_own_s() - self.own0)
        self.share = max(0.0, foreign / (wall * (os.cpu_count() or 1))) if wall > 0 else 0.0


def _busy_s() -> float:
    import psutil

    t = psutil.cpu_times()
    return sum(getattr(t, f) for f in ("user", "nice", "system", "irq", "softirq", "steal") if hasattr(t, f))


def _own_s() -> float:
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def figure(name: str, value: str, target: str) -> None:
    """The benchmark's result, always its last line: `name: value unit (target: ...)`."""
    print(f"{name}: {value} (target: {target})", flush=True)


# --- a throwaway project ---------------------------------------------------------------------------


def make_project(root: Path) -> Path:
    """A project folder shaped like the repo: specs/, prompts/ (linked), dodo.py (copied)."""
    (root / "specs").mkdir(parents=True, exist_ok=True)
    (root / "prompts").symlink_to(REPO / "prompts")
    shutil.copy(REPO / "dodo.py", root / "dodo.py")
    return root


def env() -> dict[str, str]:
    """The environment a subprocess runs llmspec in: this checkout first on the import path."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def doit_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "doit", *args]


def run(cmd: list[str], cwd: Path, what: str) -> subprocess.CompletedProcess:
    """Run a command to completion; a failure ends the benchmark with its output (it is broken, not slow)."""
    proc = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{what} failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                 f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def timed(cmd: list[str], cwd: Path, runs: int, what: str, check=None, before=None) -> list[float]:
    """Wall seconds of `runs` runs of `cmd`; `before(i)` prepares run i, `check(proc)` vets its output."""
    times = []
    for i in range(runs):
        if before is not None:
            before(i)
        with ForeignCpu() as foreign:
            t0 = time.perf_counter()
            proc = run(cmd, cwd, what)
            times.append(time.perf_counter() - t0)
        if check is not None:
            check(proc)
        say(f"  {what} run {i + 1}/{runs}: {times[-1]:.2f} s (other processes used {foreign.share:.0%} of the CPU)")
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def executed_cells(output: str) -> list[str]:
    """doit prints `.  name` for a task it runs and `-- name` for one that is up to date."""
    return [line[3:] for line in output.splitlines() if line.startswith(".  cell:")]


# --- a synthetic matrix --------------------------------------------------------------------------------


def synthetic_spec(models: int, profiles: tuple[str, ...] = PROFILES, quants: tuple[str, ...] = QUANTS) -> str:
    """`models` local models x `quants` x `profiles`. Every model file lies at the path doit would
    link it to (build/models/<model>/<file>), so the plan finds it on disk and hashes it once.
    Stress is left out by default: its cells' fingerprints also depend on which configuration the
    other results select for the stress test, a question of its own (noop.py times it separately)."""
    sizes = ", ".join(str(n) for n in LONG_CONTEXT_SIZES)
    tables = {"interactive": "requests = 3\nmax_tokens = 96", "long_context": f"sizes = [{sizes}]\nmax_tokens = 16",
              "batch": "documents = 6\nmax_tokens = 32", "quality": "max_tokens = 96",
              "load": "concurrent = 2\nquestions = 6\nmax_tokens = 32", "stress": "duration_s = 60"}
    text = ['description = "synthetic matrix for benchmarks"', "", "[server]", "ctx_size = 2048", ""]
    for profile in profiles:
        text += [f"[profiles.{profile}]", tables[profile], ""]
    for i in range(models):
        name = f"m{i:04d}"
        files = ", ".join(f'{q} = "build/models/{name}/{name}.{q}.gguf"' for q in quants)
        text += ["[[models]]", f'name = "{name}"', f'size = "{1 + i % 70}B"',
                 f"quants = {json.dumps(list(quants))}",
                 f"files = {{ {files} }}", ""]
    return "\n".join(text)


def load_plan(root: Path, spec_name: str) -> Plan:
    return Plan(load_spec(root / "specs" / f"{spec_name}.toml"), Workspace(root))


def dummy_model_files(plan: Plan) -> None:
    """A few distinct bytes per (model, quant): identity (size, sha256) is all a no-op run reads."""
    for model in plan.spec.models:
        for quant in model.quants:
            path = plan.model_file(model.name, quant).path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"GGUF benchmark placeholder " + f"{model.name}@{quant}".encode())


def write_results(plan: Plan, seed: int = 1, odd_every: int = 0) -> int:
    """A current result file for every cell of the plan; returns how many were written.

    `odd_every` > 0 makes one cell in every `odd_every` a skipped one and one an error, as a real
    matrix has; an error is never up to date (it reruns), so a no-op benchmark passes 0.
    Samples come from a pool of 64 generated sets: drawing random text dominated generation.
    """
    rng = random.Random(seed)
    pool = [samples(rng, rng.randint(5, 20)) for _ in range(64)]
    for i, cell in enumerate(plan.cells):
        status = {odd_every - 1: "skipped", odd_every - 2: "error"}.get(i % odd_every, "ok") if odd_every else "ok"
        write_result(plan.result_path(cell), synthetic_result(plan, cell, rng, status, rng.choice(pool)))
    return len(plan.cells)


def synthetic_result(plan: Plan, cell: Cell, rng: random.Random, status: str = "ok",
                     raw: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One result in the runner's contract (llmspec/run/runner.py `measure`), with the
    fingerprint of the plan's current inputs, so the cell is up to date exactly when a measured one is."""
    inputs = plan.inputs(cell)
    mf = plan.model_file(cell.model, cell.quant)
    result = {
        "cell": cell.as_dict(), "fingerprint": digest(inputs), "fingerprint_inputs": inputs,
        "started_at": "2025-01-01T00:00:00Z", "duration_s": rng.uniform(5, 120),
        "host": {"id": host_id(), **hardware()},
        "server": {"binary": "llama-server", "version": plan.server_version, "args": list(argv(plan.server_args()))},
        "model_file": {**inputs["model"], "quant": cell.quant, "source": mf.kind, "metadata": None}
        if inputs["model"] else None,
        "status": status, "reason": "", "metrics": {}, "samples": [], "flags": [],
    }
    if status == "ok":
        result.update(metrics=metrics(cell.profile, rng), samples=raw if raw is not None else samples(rng, 5),
                      flags=["decode speed: client and server clocks disagree by 11% (over 10%)"]
                      if rng.random() < 0.1 else [])
    elif status == "skipped":
        result["reason"] = ("the smaller m0000 already failed the interactive thresholds at Q4_K_M; "
                            "a larger model would too")
    else:
        result["reason"] = ("failed to load: llama_model_load: error loading model: "
                            "tensor data is not within file bounds")
        result["server_log_tail"] = [f"llama_model_loader: line {n} of the server log" for n in range(20)]
    return result


def profile_metrics(profile: str) -> tuple[str, ...]:
    return METRICS[profile]


def metrics(profile: str, rng: random.Random) -> dict[str, float]:
    """Plausible values; rated ones within a factor of two of the default threshold, so ratings vary."""
    defaults = getattr(Thresholds(), profile)
    out = {name: rng.uniform(0.1, 100.0) for name in profile_metrics(profile)}
    for rule in REGISTRY[profile].rules:
        out[rule.metric] = float(getattr(defaults, rule.threshold)) * rng.uniform(0.5, 2.0)
    if profile == "long_context":
        out["max_context_tokens"] = float(rng.choice(LONG_CONTEXT_SIZES))
    return out


def samples(rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Raw per-request records shaped like RequestRecord.as_sample(): chunk times and answer text."""
    out = []
    for n in range(count):
        tokens = rng.randint(32, 96)
        ttft = rng.uniform(0.1, 2.0)
        step = rng.uniform(0.01, 0.1)
        chunks = [ttft + k * step for k in range(tokens)]
        out.append({
            "prompt_name": f"{n + 1:02d}-prompt.txt", "send_unix": 1.7e9 + n,
            "ttfb_s": ttft / 2, "first_event_s": ttft / 2,
            "ttft_s": ttft, "total_s": chunks[-1] + step, "chunk_times_s": chunks,
            "content": " ".join(rng.choice(ANSWER_WORDS) for _ in range(rng.randint(40, 70))),
            "finish_reason": "length",
            "usage": {"completion_tokens": tokens, "prompt_tokens": 180, "total_tokens": tokens + 180},
            "timings": {"cache_n": 0, "prompt_n": 180, "prompt_ms": 180 * 4.2, "prompt_per_token_ms": 4.2,
                        "prompt_per_second": 238.1, "predicted_n": tokens, "predicted_ms": tokens * step * 1000,
                        "predicted_per_token_ms": step * 1000, "predicted_per_second": 1 / step},
            "error": None, "retried": False, "completion_tokens": tokens,
        })
    return out


def synthetic_project(root: Path, models: int, spec_name: str = "bench", odd_every: int = 0,
                      profiles: tuple[str, ...] = PROFILES) -> Plan:
    """A project with a generated spec, placeholder model files and a current result for every cell."""
    make_project(root)
    (root / "specs" / f"{spec_name}.toml").write_text(synthetic_spec(models, profiles))
    plan = load_plan(root, spec_name)
    dummy_model_files(plan)
    t0 = time.perf_counter()
    count = write_results(plan, odd_every=odd_every)
    say(f"  wrote {count} result files in {time.perf_counter() - t0:.1f} s under {plan.workspace.results}")
    return plan
