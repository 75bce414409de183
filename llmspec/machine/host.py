"""The machine being measured: a readable slug plus a hash of its hardware identity.

Results of different machines live side by side under build/results/<host>/, so the identity
must be stable across reboots and fresh clones (no hostname, no boot id) yet change when the
hardware does. LLMSPEC_HOST overrides the slug for people who prefer their own names.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import re

import psutil


@functools.cache
def hardware() -> dict:
    """What the measurements depend on: CPU model, cores, memory, OS and architecture."""
    return {
        "cpu": _cpu_model(),
        "cores_logical": psutil.cpu_count(logical=True) or 1,
        "cores_physical": psutil.cpu_count(logical=False) or psutil.cpu_count() or 1,
        "ram_gb": round(psutil.virtual_memory().total / 2**30),
        "arch": platform.machine(),
        "os": f"{platform.system()} {platform.release().split('-')[0]}",
    }


@functools.cache
def host_id() -> str:
    """Directory name for this machine's results, e.g. `amd-epyc-2c-24g-3f9a1c`."""
    hw = hardware()
    identity = {k: hw[k] for k in ("cpu", "cores_logical", "ram_gb", "arch")}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:6]
    name = os.environ.get("LLMSPEC_HOST") or slug(hw)
    return f"{name}-{digest}"


def slug(hw: dict) -> str:
    """"amd-epyc-2c-24g": the hardware in words (also what an anonymised host id keeps)."""
    words = re.findall(r"[a-z0-9]+", hw["cpu"].lower())
    skip = {"r", "tm", "cpu", "processor", "core", "with", "radeon", "graphics", "ghz", "n", "th", "gen"}
    brand = "-".join([w for w in words if w not in skip][:3]) or hw["arch"]
    return f"{brand}-{hw['cores_logical']}c-{hw['ram_gb']}g"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
