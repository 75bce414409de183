"""The plan of a spec on this host: its cells, where their results go, and which are stale.

Nothing here measures or starts anything. The facts it needs about the outside world (the
server's version, each model file's identity) are looked up once and cached, so deciding that
1,000 cells are up to date stays well under a second.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmspec import binaries, modelfiles
from llmspec.cells import Cell, expand
from llmspec.errors import UserError
from llmspec.fingerprint import MEASUREMENT_VERSION
from llmspec.host import hardware, host_id
from llmspec.profiles import interactive
from llmspec.results import freshness
from llmspec.server import server_args
from llmspec.spec import Spec

PROFILE_MODULES = {"interactive": interactive}


@dataclass(frozen=True)
class Workspace:
    """Where a project keeps its outputs; everything under build/."""

    root: Path

    @property
    def build(self) -> Path:
        return self.root / "build"

    @property
    def results(self) -> Path:
        return self.build / "results"

    @property
    def reports(self) -> Path:
        return self.build / "reports"

    @property
    def logs(self) -> Path:
        return self.build / "logs"

    @property
    def run(self) -> Path:
        return self.build / "run"


class Plan:
    def __init__(self, spec: Spec, workspace: Workspace | None = None):
        self.spec = spec
        self.workspace = workspace or Workspace(spec.root)
        self.cells = expand(spec)

    def result_path(self, cell: Cell) -> Path:
        return cell.result_path(self.workspace.results, host_id())

    def model_file(self, model: str, quant: str) -> modelfiles.ModelFile:
        return modelfiles.plan(self.spec, self.spec.model(model), quant)

    def threads(self) -> int:
        return self.spec.server.threads or hardware()["cores_physical"]

    def server_args(self) -> list[str]:
        s = self.spec.server
        return server_args(s.ctx_size, self.threads(), 1, list(s.extra_args))

    @functools.cached_property
    def server_binary(self) -> Path | None:
        try:
            return binaries.find_server(self.spec.server.binary)
        except UserError:
            return None

    @functools.cached_property
    def server_version(self) -> str | None:
        try:
            return binaries.version(self.server_binary) if self.server_binary else None
        except UserError:
            return None

    @functools.cache
    def model_identity(self, model: str, quant: str) -> dict[str, Any] | None:
        """Identity of the file if it is on disk; None lets a committed result vouch for it."""
        path = self.model_file(model, quant).path
        return modelfiles.identity(path) if os.path.exists(path) else None

    @functools.cache
    def profile_inputs(self, profile: str) -> dict[str, Any]:
        """Resolved settings plus prompt-file hashes, computed once per profile per run."""
        return PROFILE_MODULES[profile].inputs(getattr(self.spec.profiles, profile), self.spec.root)

    def model_state(self, model: str, quant: str) -> tuple[bool, str]:
        """(present?, why): a derived file made from an older base counts as missing."""
        mf = self.model_file(model, quant)
        if not mf.path.exists():
            return False, f"{mf.path} does not exist"
        if mf.kind == "derive":
            base = self.model_file(model, mf.origin).path
            made_from = (modelfiles.provenance(mf.path) or {}).get("base", {}).get("sha256")
            if base.exists() and made_from != modelfiles.identity(base)["sha256"]:
                return False, f"base file {base.name} changed since {mf.path.name} was derived"
        return True, "present"

    def inputs(self, cell: Cell) -> dict[str, Any]:
        """Everything that changes this cell's measurement (see DESIGN.md, fingerprint)."""
        return {
            "method": f"{cell.profile}/{PROFILE_MODULES[cell.profile].VERSION}.{MEASUREMENT_VERSION}",
            "profile": self.profile_inputs(cell.profile),
            "model": self.model_identity(cell.model, cell.quant),
            "source": self.model_file(cell.model, cell.quant).source,
            "server": {"version": self.server_version, "args": self.server_args()},
            "host": host_id(),
        }

    def freshness(self, cell: Cell) -> tuple[bool, str]:
        return freshness(self.result_path(cell), self.inputs(cell))

    def stale(self) -> list[Cell]:
        return [c for c in self.cells if not self.freshness(c)[0]]
