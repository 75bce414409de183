"""A log file per run under build/logs/ (full detail), and a console that stays readable.

The level comes from the spec's `log_level`, overridden by LLMSPEC_LOG_LEVEL.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path


def setup(logs_dir: Path, level: str = "INFO") -> Path:
    level = os.environ.get("LLMSPEC_LOG_LEVEL", level).upper()
    logs_dir.mkdir(parents=True, exist_ok=True)
    path = logs_dir / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    root = logging.getLogger("llmspec")
    root.setLevel(logging.DEBUG)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    file_handler = logging.FileHandler(path, encoding="utf-8", delay=True)
    file_handler.setLevel(getattr(logging, level, logging.INFO))
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    console = logging.StreamHandler()
    console.setLevel(logging.WARNING)
    console.setFormatter(logging.Formatter("llmspec: %(levelname)s: %(message)s"))
    root.addHandler(file_handler)
    root.addHandler(console)
    root.propagate = False
    return path
