"""The host's memory bandwidth, measured once and cached beside its results.

Generating a token reads (nearly) every weight once, so tokens/s cannot exceed bandwidth / model
bytes; a speed shown as a percent of that bound tells whether headroom is left (threads, other load).
Stored at `<results>/<host>/bandwidth.json`, which the report's result loader (it descends into
directories only) never mistakes for a result."""

from __future__ import annotations

import json
import logging
import math
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from threading import Barrier

from llmspec.results import write_text_atomic

log = logging.getLogger(__name__)

VERSION = 1  # bump when the method changes, so cached figures are measured again
METHOD = "numpy copyto, STREAM copy convention (read+write bytes)"

FAR_BELOW_PCT = 15.0
"""Below this: "far below the bound, likely misconfigured (threads, other load) or limited by compute
rather than memory". On a 2-core AMD EPYC (25 GB/s copy, 20-29 when quiet) the demo models' healthy
llama-bench tg128 (2 threads) reach SmolLM2-135M Q4_1 98 MB 84.0 t/s = 33 %, Q8_0 145 MB 68.8 = 40 %,
gemma-3-270m Q4_K_M 253 MB 35.2 = 36 %, Q8_0 292 MB 40.1 = 47 % (28 % at 29 GB/s); with other work on
both cores 3-18 %. 15 is half the lowest healthy figure; larger models sit nearer the bound."""


def measure(size_mb: int = 256, repeats: int = 5) -> dict:
    """Copy `size_mb` MB, split over one thread per usable CPU started together, `repeats` times.

    numpy's copy releases the GIL, so the threads run in parallel like llama.cpp's. Bytes count as
    in STREAM's Copy (read + write). The best repeat is the figure (load only slows a run down); the
    median and runs show the noise. `size_mb` must be several times the last-level cache."""
    import numpy as np  # here, not at the top: every report reads cached figures without numpy

    threads = len(os.sched_getaffinity(0))
    count = max(1, size_mb * 2**20 // 8 // threads)
    sources = [np.ones(count) for _ in range(threads)]  # ones, not zeros: touches every page
    targets = [np.empty(count) for _ in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        _copy_all(pool, sources, targets)  # warm-up: faults the targets' pages in
        seconds = [_copy_all(pool, sources, targets) for _ in range(repeats)]
    runs = [2 * 8 * count * threads / s / 1e9 for s in seconds]
    return {"copy_gbps": max(runs), "median_gbps": statistics.median(runs), "runs_gbps": runs,
            "threads": threads, "block_mb": count * 8 / 2**20, "copied_mb": count * 8 * threads / 2**20,
            "method": METHOD, "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "version": VERSION}


def _copy_all(pool: ThreadPoolExecutor, sources: list, targets: list) -> float:
    """Seconds from the first thread's start to the last one's end."""
    from numpy import copyto
    barrier = Barrier(len(sources))

    def copy(src, dst) -> tuple[float, float]:
        barrier.wait()
        start = time.perf_counter()
        copyto(dst, src)
        return start, time.perf_counter()

    spans = list(pool.map(copy, sources, targets))
    return max(end for _, end in spans) - min(start for start, _ in spans)


def path(results_root: Path, host_dir: str) -> Path:
    return Path(results_root) / host_dir / "bandwidth.json"


def ensure(results_root: Path, host_dir: str, *, size_mb: int = 256, max_background_pct: float | None = None,
           quiet_wait_s: float = 0.0, say=print) -> dict | None:
    """The cached measurement of this host, measured and written only when missing or outdated.

    With `max_background_pct`, it waits up to `quiet_wait_s` for a quiet machine and keeps the
    figure only if other processes stayed under the limit while it measured (a copy benchmark on
    a busy machine measured 14.6 GB/s here against 30 quiet, and every roofline would inherit
    it); otherwise it caches nothing, says why, and returns None."""
    found = cached(results_root, host_dir)
    if found is not None:
        return found
    if max_background_pct is None:
        found = measure(size_mb)
    else:
        from llmspec.machine.activity import BackgroundWatch, own_tree, wait_until_quiet

        own = own_tree()
        wait_until_quiet(own, max_background_pct, quiet_wait_s, say)
        with BackgroundWatch(own, interval_s=0.25) as watch:
            found = measure(size_mb)
        found["background_cpu_pct"] = round(watch.result.mean_pct, 1)
        if watch.result.mean_pct > max_background_pct:
            say(f"memory bandwidth not kept: {watch.result.busy_reason(max_background_pct)}")
            return None
    write_text_atomic(path(results_root, host_dir), json.dumps(found, sort_keys=True, indent=1) + "\n")
    return found


def cached(results_root: Path, host_dir: str) -> dict | None:
    """This host's valid cached measurement, or None (missing, unreadable or an older method)."""
    return _read(path(results_root, host_dir))


def load_all(results_root: Path) -> dict[str, float]:
    """{host folder: copy GB/s} for every host with a valid figure; the report calls this each time."""
    found: dict[str, float] = {}
    for file in sorted(Path(results_root).glob("*/bandwidth.json")):
        data = _read(file)
        if data is None:
            log.warning("skipping %s: not a valid version %d bandwidth measurement", file, VERSION)
        else:
            found[file.parent.name] = data["copy_gbps"]
    return found


def _read(file: Path) -> dict | None:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    gbps = data.get("copy_gbps") if isinstance(data, dict) and data.get("version") == VERSION else None
    return data if isinstance(gbps, (int, float)) and math.isfinite(gbps) and gbps > 0 else None


def roofline_pct(tokens_per_s: float, bytes_per_token: float, gbps: float) -> float:
    """Generation speed as a percent of the memory-bandwidth bound.

    Decoding one token reads every weight once, so bytes per token is taken as the GGUF file size.
    That ignores KV-cache reads (small at short contexts: the bound is a little generous) and counts
    the whole embedding table though only one row of it is read per token (a little strict,
    noticeably so for tiny models with large vocabularies)."""
    return tokens_per_s * bytes_per_token / (gbps * 1e9) * 100
