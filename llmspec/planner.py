"""The plan of a spec on this host: its cells, where their results go, and which are stale.

Nothing here measures or starts anything. The facts it needs about the outside world (the
server's version, each model file's identity) are looked up once and cached, so deciding that
1,000 cells are up to date stays well under a second.
"""

from __future__ import annotations

import functools
import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmspec import binaries, modelfiles
from llmspec.cells import REMOTE, Cell, expand, ordered_pairs
from llmspec.errors import UserError
from llmspec.fingerprint import MEASUREMENT_VERSION
from llmspec.host import hardware, host_id
from llmspec.rating import rate
from llmspec.results import WITHOUT_SAMPLES, judge, read_result
from llmspec.termination import GB, Decision, Evidence, decide, derived_size, interactive_label
from llmspec.server import server_args
from llmspec.spec import Spec

PASSING = ("Excellent", "Good", "Acceptable")


def profile_module(name: str):
    """llmspec.profiles.<name>: VERSION, inputs(settings, root), run(ctx), maybe server_overrides."""
    return importlib.import_module(f"llmspec.profiles.{name}")


@dataclass(frozen=True)
class StressChoice:
    model: str | None
    quant: str | None
    reason: str

    def picks(self, cell: Cell) -> bool:
        return (cell.model, cell.quant) == (self.model, self.quant)


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


def _metadata_or_none(path: Path) -> dict[str, Any] | None:
    try:
        return modelfiles.metadata(path)
    except (UserError, OSError):
        return None


class Plan:
    def __init__(self, spec: Spec, workspace: Workspace | None = None):
        self.spec = spec
        self.workspace = workspace or Workspace(spec.root)
        self.cells = expand(spec)

    @functools.cache
    def result_path(self, cell: Cell) -> Path:
        """Cached, as is `model_file`: every cell asks several times per run, and building Paths
        is a fifth of a no-op run's time on 1,000 cells."""
        return cell.result_path(self.workspace.results, host_id())

    def stored(self, cell: Cell) -> dict[str, Any] | None:
        """The cell's result without its raw samples (all that planning ever needs)."""
        return read_result(self.result_path(cell), WITHOUT_SAMPLES)

    @functools.cache
    def model_file(self, model: str, quant: str) -> modelfiles.ModelFile:
        return modelfiles.plan(self.spec, self.spec.model(model), quant)

    def threads(self) -> int:
        return self.spec.server.threads or hardware()["cores_physical"]

    def server_args(self) -> list[str]:
        """Arguments common to every profile (fingerprinted). A profile may raise the context or
        the slot count (see `profile_server_args`); that follows from its settings, which are
        fingerprinted too."""
        s = self.spec.server
        return server_args(s.ctx_size, self.threads(), 1, list(s.extra_args))

    def profile_server_args(self, profile: str, trained_ctx: int | None = None) -> list[str]:
        """A profile may raise the context (long_context) or the slot count (load); a raised
        context never goes past what the model was trained for (plus room to generate), so an
        8k model is not given a 64k KV cache it would never use."""
        s = self.spec.server
        ctx_size, parallel = s.ctx_size, 1
        module = profile_module(profile)
        if hasattr(module, "server_overrides"):
            ctx_size, parallel = module.server_overrides(getattr(self.spec.profiles, profile), s.ctx_size)
            per_slot = ctx_size // parallel
            if trained_ctx and per_slot > max(s.ctx_size, trained_ctx + 512):
                ctx_size = max(s.ctx_size, trained_ctx + 512) * parallel
        return server_args(ctx_size, self.threads(), parallel, list(s.extra_args))

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
        return profile_module(profile).inputs(getattr(self.spec.profiles, profile), self.spec.root)

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
        inputs = {
            "method": f"{cell.profile}/{profile_module(cell.profile).VERSION}.{MEASUREMENT_VERSION}",
            "profile": self.profile_inputs(cell.profile),
            "host": host_id(),
        }
        if cell.quant == REMOTE:
            endpoint = self.endpoint(cell.model)
            remote = {"kind": "endpoint", "url": endpoint.url, "model": endpoint.model}
            return {**inputs, "model": remote, "source": remote, "server": {"version": None, "args": []}}
        inputs.update(model=self.model_identity(cell.model, cell.quant),
                      source=self.model_file(cell.model, cell.quant).source,
                      server={"version": self.server_version, "args": self.server_args()})
        if cell.profile == "stress":  # re-decided whenever the results it was chosen from change
            choice = self.stress_choice()
            inputs["selection"] = {"chosen": f"{choice.model}@{choice.quant}" if choice.model else None,
                                   "selected": choice.picks(cell)}
        return inputs

    def endpoint(self, name: str):
        return next(e for e in self.spec.endpoints if e.name == name)

    def stress_choice(self) -> StressChoice:
        """Which configuration the stress profile runs on; decided once per state of the results
        (every stress cell's fingerprint asks), re-decided after `forget_evidence`."""
        if "_stress_choice" not in self.__dict__:
            self._stress_choice = self._choose_stress()
        return self._stress_choice

    def _choose_stress(self) -> StressChoice:
        """Design document, "Stress Test Model Selection": the last (largest) passing configuration.

        A configuration passes when every performance profile measured on it rates Acceptable or
        better against today's thresholds; of those, the largest model file is stressed, since
        it is the one most likely to show heat or swap trouble without being certain to fail.
        Quality is left out: how well a model answers says nothing about whether this machine
        can run it for 30 minutes.
        """
        profiles = [p for p in self.spec.profiles.enabled() if p not in ("stress", "quality")]
        passing = []
        for order, (model, quant) in enumerate(ordered_pairs(self.spec)):
            labels, size = [], None
            for profile in profiles:
                result = self.stored(Cell(self.spec.name, model, quant, profile)) or {}
                if result.get("status") == "ok":
                    labels.append(rate(profile, result.get("metrics") or {}, self.spec.thresholds).label)
                    size = (result.get("model_file") or {}).get("size", size)
                else:
                    labels.append(None)
            rated = [label for label in labels if label is not None]
            if rated and all(label in PASSING for label in rated) and len(rated) == len(labels):
                passing.append((size or 0, order, model, quant, rated))
        if not passing:
            return StressChoice(None, None, "no configuration passed every performance profile yet")
        size, _, model, quant, rated = max(passing)
        return StressChoice(model, quant, f"{model} {quant} is the largest of {len(passing)} passing "
                                          f"configuration(s) ({size / 1e6:.0f} MB; rated {', '.join(rated)})")

    def freshness(self, cell: Cell) -> tuple[bool, str]:
        """Fingerprint first; a skipped result must also still rest on the same evidence."""
        stored = self.stored(cell)
        fresh, why = judge(stored, self.inputs(cell))
        if fresh and cell.quant != REMOTE and cell.profile != "stress":
            if stored.get("status") == "skipped" and stored.get("skip_evidence") is not None:
                decision = self.decide(cell)
                if decision.evidence != stored["skip_evidence"]:
                    return False, f"the skip no longer holds ({decision.reason or 'nothing to skip now'})"
        return fresh, why

    # --- smart termination -------------------------------------------------------------
    def decide(self, cell: Cell) -> Decision:
        """Run or skip this cell, from the results on disk (see llmspec.termination)."""
        if not self.spec.planner.skip or cell.quant == REMOTE or cell.profile == "stress":
            return Decision(None)
        model = self.spec.model(cell.model)
        ev = self.evidence()
        own = (cell.model, cell.quant)
        others = Evidence(ev.limit_gb, ev.limit_text, {k: v for k, v in ev.ratings.items() if k != own},
                          {k: xy for k, xy in ev.observed.items() if k != own}, ev.sizes, ev.meta)
        return decide(model, cell.quant, others, self.spec.server.ctx_size, lambda other: self._larger(model, other))

    def _larger(self, model, other_name: str) -> bool:
        other = self.spec.model(other_name)
        if model.params_b is not None and other.params_b is not None:
            return model.params_b > other.params_b
        return False

    def forget_evidence(self) -> None:
        """A cell finished: what was decided from the results on disk must be decided again."""
        self.__dict__.pop("_evidence", None)
        self.__dict__.pop("_stress_choice", None)

    def evidence(self) -> Evidence:
        if "_evidence" not in self.__dict__:
            self._evidence = self._gather_evidence()
        return self._evidence

    def _gather_evidence(self) -> Evidence:
        import psutil

        available = psutil.virtual_memory().available / GB
        limit, text = available, f"the {available:.1f} GB of RAM available"
        if self.spec.limits.max_memory_gb is not None and self.spec.limits.max_memory_gb < available:
            limit, text = self.spec.limits.max_memory_gb, f"limits.max_memory_gb = {self.spec.limits.max_memory_gb:g}"
        ev = Evidence(limit, text)
        profiles = [p for p in self.spec.profiles.enabled() if p != "stress"]
        for model, quant in ordered_pairs(self.spec):
            results = [self.stored(Cell(self.spec.name, model, quant, p)) for p in profiles]
            if "interactive" in profiles:
                ev.ratings[(model, quant)] = interactive_label(results[profiles.index("interactive")],
                                                              self.spec.thresholds)
            ok = [r for r in results if r and r.get("status") == "ok"]
            self._file_facts(ev, model, quant, ok)
            peaks = [r["metrics"].get("peak_rss_gb") for r in ok if (r.get("metrics") or {}).get("peak_rss_gb")]
            if peaks and ev.sizes.get((model, quant)):
                ev.observed[(model, quant)] = (ev.sizes[(model, quant)] / GB, max(peaks))
        return ev

    def _file_facts(self, ev: Evidence, model: str, quant: str, ok_results: list[dict]) -> None:
        """Size and GGUF metadata: from the file, else a stored result, else guessed from the base."""
        mf = self.model_file(model, quant)
        key = (model, quant)
        found = modelfiles.existing_file(self.spec, mf)
        stored = next((r["model_file"] for r in ok_results if r.get("model_file")), None)
        if found is not None:
            ev.sizes[key], ev.meta[key] = found.stat().st_size, _metadata_or_none(found)
        elif stored:
            ev.sizes[key], ev.meta[key] = stored.get("size"), stored.get("metadata")
        elif mf.kind == "derive":
            base = (model, mf.origin)
            if base not in ev.sizes:
                self._file_facts(ev, model, mf.origin, [])
            if ev.sizes.get(base) and (size := derived_size(ev.sizes[base], mf.origin, quant)):
                ev.sizes[key], ev.meta[key] = size, ev.meta.get(base)

    def stale(self) -> list[Cell]:
        return [c for c in self.cells if not self.freshness(c)[0]]
