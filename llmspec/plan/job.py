"""What the planner hands the runner for one cell (`CellJob`), and where a project keeps its outputs
(`Workspace`): the data between planning and running, apart from the planner that decides it."""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from llmspec.engines import DEFAULT, Engine, engine_named
from llmspec.engines.base import ServerArgs
from llmspec.errors import UserError
from llmspec.plan.cells import Cell
from llmspec.plan.fingerprint import digest
from llmspec.plan.reference import Reference
from llmspec.plan.targets import LocalModel, Target
from llmspec.profiles import ProfileKind
from llmspec.spec import ServerSettings, Spec


@dataclass(frozen=True)
class Workspace:
    """Where a project keeps its outputs; everything under build/. The paths are cached: every
    cell asks for them, and joining Paths 10,000 times is a visible part of loading the tasks."""

    root: Path

    @functools.cached_property
    def build(self) -> Path:
        return self.root / "build"

    @functools.cached_property
    def results(self) -> Path:
        return self.build / "results"

    @functools.cached_property
    def reports(self) -> Path:
        return self.build / "reports"

    @functools.cached_property
    def logs(self) -> Path:
        return self.build / "logs"

    @functools.cached_property
    def run(self) -> Path:
        return self.build / "run"


@dataclass(frozen=True)
class CellJob:
    """Everything the runner needs to measure one cell, decided by the planner in one call.

    `skip` is the reason not to measure (a smart-termination rule, or not chosen for a `last`
    profile); `inputs` are the fingerprint inputs as planned, with the model identity filled in
    by `fingerprint` once the file exists.
    """

    cell: Cell
    kind: ProfileKind
    settings: BaseModel
    target: Target
    inputs: dict[str, Any]
    spec: Spec
    base_args: ServerArgs  # the variant's
    server: ServerSettings  # the variant's [server] settings
    server_version: str | None  # the engine's version (llama.cpp's for a profile that starts no server)
    workspace: Workspace
    result_path: Path
    skip: str | None = None
    skip_evidence: str | None = None
    predicted_peak_gb: float | None = None
    reference: Reference | None = None  # the divergence profile's reference logits
    engine: Engine = engine_named(DEFAULT)
    binary: Path | None = None  # the engine's program, looked up once by the planner (None: not found)
    binary_error: str | None = None  # why it was not found

    @property
    def root(self) -> Path:
        return self.spec.root

    def engine_binary(self) -> Path:
        if self.binary is None:
            raise UserError(self.binary_error or f"{self.engine.program} not found")
        return self.binary

    def server_args(self, trained_ctx: int | None) -> ServerArgs:
        """The base arguments, with the context or slots the profile needs (`server_overrides`).

        A raised context never goes past what the model was trained for (plus room to generate),
        so an 8k model is not given a 64k KV cache it would never use.
        """
        base = self.base_args
        if self.kind.server_features:
            base = replace(base, features=tuple(sorted(self.kind.server_features)))
        if self.kind.server_overrides is None:
            return base
        base_ctx = self.server.ctx_size
        ctx_size, parallel = self.kind.server_overrides(self.settings, base_ctx)
        if trained_ctx and ctx_size // parallel > max(base_ctx, trained_ctx + 512):
            ctx_size = max(base_ctx, trained_ctx + 512) * parallel
        return replace(base, ctx_size=ctx_size, parallel=parallel)

    def fingerprint(self, model_identity: dict[str, Any] | None) -> tuple[str, dict[str, Any]]:
        """(hash, inputs) with the model file's identity as it is now (the file may be new)."""
        parts = model_parts(self.kind, self.target, model_identity, self.server_version, self.base_args)
        inputs = {**self.inputs, **parts}
        if self.reference is not None:  # made during this cell, perhaps: its identity as it is now
            identity = LocalModel(self.reference.file).identity_now()
            inputs["reference"] = {**inputs["reference"], "model": identity}
        return digest(inputs), inputs


def model_parts(kind: ProfileKind, target: Target, identity: dict[str, Any] | None, version: str | None,
                args: ServerArgs) -> dict[str, Any]:
    """The target's fingerprint parts; a profile that starts no server does not depend on its arguments."""
    parts = target.fingerprint_parts(identity, version, args)
    if not kind.needs_server:
        parts = {**parts, "server": {"version": version, "args": []}}
    return parts
