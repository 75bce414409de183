"""A toy engine in one module, to show what adding an engine takes: this file and one `register` call.

It serves tests/fakeserver.py (real HTTP on 127.0.0.1, no model) under its own name and flags, and
reads the fake's timings through its own `timings`, so a test can run it end to end through doit.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, ClassVar

from llmspec.engines.base import ENGINE_CLOCK, SLOTS, TOKENIZE, Engine, ServerArgs, Timings

FAKE = Path(__file__).resolve().parent / "fakeserver.py"


class Toy(Engine):
    name: ClassVar[str] = "toy"
    summary: ClassVar[str] = "a fake engine for tests"
    program: ClassVar[str] = "python"
    supports: ClassVar[frozenset[str]] = frozenset({SLOTS, TOKENIZE, ENGINE_CLOCK})

    def find_binary(self, configured: str | None = None) -> Path:
        return Path(sys.executable)

    def version(self, binary: Path) -> str:
        return "toy 1.0"

    def flags(self, args: ServerArgs) -> list[str]:
        return ["--ctx-size", str(args.ctx_size), "--parallel", str(args.parallel), "--fake-token-delay-s", "0.002",
                *args.extra]

    def command(self, binary: Path, model: Path, host: str, port: int, args: ServerArgs) -> list[str]:
        return [str(binary), str(FAKE), "--model", str(model), "--host", host, "--port", str(port),
                *self.flags(args)]

    def timings(self, event: dict[str, Any]) -> Timings | None:
        found = event.get("timings")  # the fake speaks llama-server's names; kept without cache_n
        if not found:
            return None
        return Timings(found.get("prompt_n"), found.get("prompt_ms"), found.get("predicted_n"),
                       found.get("predicted_ms"))
