"""The plan of a spec on this host: its cells, where their results go, which are stale, and
everything the runner needs to measure one (`job`).

Nothing here measures or starts anything. The facts it needs about the outside world (the
server's version, each model file's identity) are looked up once and cached, so deciding that
1,000 cells are up to date stays well under a second. What the plan knows from the results on
disk (the evidence behind skips, the configuration the `last` profiles run on) is computed once
per state of those results: `record` writes a finished result and lets go of what it changed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmspec.engines import DEFAULT, engine_named
from llmspec.engines.base import ServerArgs
from llmspec.errors import UserError
from llmspec.freshness import Freshness
from llmspec.machine.host import hardware, host_id
from llmspec.models import binaries
from llmspec.models import files as modelfiles
from llmspec.plan import variants
from llmspec.plan.cells import Cell, expand, ordered_pairs
from llmspec.plan.fingerprint import MEASUREMENT_VERSION
from llmspec.plan.job import CellJob, Workspace, model_parts
from llmspec.plan.reference import Reference
from llmspec.plan.targets import EndpointTarget, LocalModel, Target
from llmspec.plan.termination import GB, Decision, Evidence, decide, derived_size, interactive_labels, memory_limit
from llmspec.profiles import PROFILES, files_digest, prompt_files, role
from llmspec.rating import rate_many
from llmspec.results import WITHOUT_SAMPLES, Result, judge, killed_peak_gb, unreadable
from llmspec.spec import ServerSettings, Spec

PASSING = ("Excellent", "Good", "Acceptable")


@dataclass(frozen=True)
class Choice:
    """The one configuration the `last` profiles (stress) run on, and why."""

    model: str | None
    quant: str | None
    reason: str
    variant: str = ""

    def picks(self, cell: Cell) -> bool:
        return (cell.model, cell.quant, cell.variant) == (self.model, self.quant, self.variant)

    @property
    def name(self) -> str | None:
        return f"{self.model}@{self.quant}{'+' + self.variant if self.variant else ''}" if self.model else None


class Plan:
    def __init__(self, spec: Spec, workspace: Workspace | None = None, cores: int | None = None):
        """`cores`: how far `threads = "sweep"` goes (default: this machine's logical cores)."""
        self.spec = spec
        self.workspace = workspace or Workspace(spec.root)
        cores = self.cores = cores or hardware()["cores_logical"]
        self.variants = {v.name: v for v in variants.expand(spec.server, cores)}
        self.cells = expand(spec, cores)
        self._identities: dict[tuple[str, str], dict[str, Any] | None] = {}
        self._known: dict[str, Any] = {}  # what the results on disk say; emptied when they change

    # --- where things are ------------------------------------------------------------------
    @functools.cache
    def result_path(self, cell: Cell) -> Path:
        """Cached, as is `model_file`: every cell asks several times per run, and building Paths
        is a fifth of a no-op run's time on 1,000 cells."""
        return cell.result_path(self.workspace.results, host_id())

    def stored(self, cell: Cell) -> Result | None:
        """The cell's result without its raw samples (all that planning ever needs)."""
        return Result.load(self.result_path(cell), WITHOUT_SAMPLES)

    @functools.cache
    def model_file(self, model: str, quant: str) -> modelfiles.ModelFile:
        return modelfiles.plan(self.spec, self.spec.model(model), quant)

    @functools.cache
    def target(self, cell: Cell) -> Target:
        if cell.endpoint:
            return EndpointTarget(next(e for e in self.spec.endpoints if e.name == cell.model))
        return LocalModel(self.model_file(cell.model, cell.quant))

    def model_state(self, model: str, quant: str) -> Freshness:
        return modelfiles.state(self.spec, self.model_file(model, quant))

    # --- the server ------------------------------------------------------------------------
    def threads(self, variant: str = "") -> int:
        """The variant's thread count; the spec's [server] count makes files (llama-quantize)."""
        server = self.variants[variant].server if variant in self.variants else self.spec.server
        return server.threads or hardware()["cores_physical"]

    @functools.cache
    def server_args(self, variant: str = "") -> ServerArgs:
        """Arguments common to every profile of a variant (fingerprinted). A profile may raise the
        context or the slot count (`CellJob.server_args`); that follows from its settings, fingerprinted too.
        Variant "" of a spec with a sweep (a profile that starts no server) gets the [server] settings."""
        s = self.variants[variant].server if variant in self.variants else self.spec.server
        return ServerArgs(s.ctx_size, self.threads(variant), s.parallel, tuple(s.extra_args), s.tuned(), s.engine)

    def server_settings(self, variant: str) -> ServerSettings:
        return self.variants[variant].server if variant in self.variants else self.spec.server

    def engine_binary(self, variant: str = "") -> Path:
        """The program of the variant's engine; the spec's `server.binary` names the [server] engine's."""
        s = self.server_settings(variant)
        return engine_named(s.engine).find_binary(s.binary if s.engine == self.spec.server.engine else None)

    @functools.cache
    def engine_version(self, variant: str = "") -> str | None:
        """The variant's engine version (llama-server's: `server_version`); None where it is not installed."""
        if self.server_settings(variant).engine == DEFAULT:
            return self.server_version
        try:
            return engine_named(self.server_settings(variant).engine).version(self.engine_binary(variant))
        except UserError:
            return None

    def version_for(self, cell: Cell) -> str | None:
        """What a cell's fingerprint names as the server version: its engine's, or llama.cpp's for a
        profile that runs llama.cpp's own tool on the file (no server)."""
        return self.engine_version(cell.variant) if PROFILES[cell.profile].needs_server else self.server_version

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

    # --- fingerprints and freshness --------------------------------------------------------
    def model_identity(self, cell: Cell) -> dict[str, Any] | None:
        key = (cell.model, cell.quant)
        if key not in self._identities:
            self._identities[key] = self.target(cell).identity_now()
        return self._identities[key]

    @functools.cache
    def profile_inputs(self, profile: str) -> dict[str, Any]:
        """Resolved settings plus prompt-file hashes, computed once per profile per run."""
        return PROFILES[profile].inputs(getattr(self.spec.profiles, profile), self.spec.root,
                                        getattr(self.spec.thresholds, profile))

    @functools.cache
    def _profile_part(self, profile: str) -> dict[str, Any]:
        return {"method": f"{profile}/{PROFILES[profile].version}.{MEASUREMENT_VERSION}",
                "profile": self.profile_inputs(profile), "host": host_id()}

    @functools.cache
    def reference(self, model: str) -> Reference | None:
        """The reference logits for `model` of the profile measured against them (the
        `reference_logits` role: divergence); None without that profile."""
        kind = role("reference_logits")
        settings = getattr(self.spec.profiles, kind.name) if kind is not None else None
        if settings is None or kind.reference_logits is None:
            return None
        need = kind.reference_logits(settings)  # what the profile declares it is measured against
        quant = self.spec.model(model).reference_quant()
        path = self.workspace.build / "cache" / kind.name / self.spec.name / f"{model}@{quant}.logits"
        text = files_digest(prompt_files(self.spec.root, need.text))
        return Reference(self.spec.name, model, quant, self.model_file(model, quant), need.ctx, need.chunks, text,
                         path, need.text)

    def reference_part(self, model: str) -> dict[str, Any]:
        """What a divergence cell's fingerprint holds of its reference: the quant and its file."""
        ref = self.reference(model)
        identity = self.model_identity(Cell(self.spec.name, model, ref.quant, role("reference_logits").name))
        return {"quant": ref.quant, "source": ref.file.source, "model": identity}

    def _uses_reference(self, cell: Cell) -> bool:
        """Measured against its model's reference logits (a local model file's divergence cell)."""
        return "reference_logits" in PROFILES[cell.profile].roles and not cell.endpoint

    def _own_inputs(self, cell: Cell) -> dict[str, Any]:
        """The fingerprint inputs that do not depend on the model file (docs/measuring.md, fingerprints)."""
        inputs = self._profile_part(cell.profile)
        if self._uses_reference(cell):
            inputs = {**inputs, "reference": self.reference_part(cell.model)}
        if PROFILES[cell.profile].last:  # re-decided whenever the results it was chosen from change
            inputs = dict(inputs)
            choice = self.choice()
            inputs["selection"] = {"chosen": choice.name, "selected": choice.picks(cell)}
        return inputs

    def inputs(self, cell: Cell) -> dict[str, Any]:
        """Everything that changes this cell's measurement, with the model file as it is now."""
        parts = model_parts(PROFILES[cell.profile], self.target(cell), self.model_identity(cell),
                            self.version_for(cell),
                            self.server_args(cell.variant))
        return {**self._own_inputs(cell), **parts}

    def freshness(self, cell: Cell) -> Freshness:
        """Fingerprint first; a skipped result must also still rest on the same evidence."""
        stored = self.stored(cell)
        found = judge(stored, self.inputs(cell))
        if stored is None and (broken := unreadable(self.result_path(cell))):
            found = Freshness.stale(f"its result file cannot be read: {broken}")
        if found and stored.status == "skipped" and stored.skip_evidence is not None:
            decision = self.decide(cell)
            if decision.evidence != stored.skip_evidence:
                return Freshness.stale(f"the skip no longer holds ({decision.reason or 'nothing to skip now'})")
        return found

    # --- one call down, one record up ------------------------------------------------------
    def job(self, cell: Cell) -> CellJob:
        """Everything the runner needs for `cell`, each piece computed once."""
        kind, decision = PROFILES[cell.profile], self.decide(cell)
        skip, evidence = (decision.reason, decision.evidence) if decision.skip else (None, None)
        if kind.last and not decision.skip and not (choice := self.choice()).picks(cell):
            skip = f"not selected for the {cell.profile} test: {choice.reason}"
        args = self.server_args(cell.variant)
        binary, binary_error = None, None
        if kind.needs_server and not cell.endpoint:
            try:
                binary = self.engine_binary(cell.variant)
            except UserError as exc:
                binary_error = str(exc)
        return CellJob(cell, kind, getattr(self.spec.profiles, cell.profile), self.target(cell),
                       self._own_inputs(cell), self.spec, args,
                       self.server_settings(cell.variant), self.version_for(cell), self.workspace,
                       self.result_path(cell), skip, evidence, decision.predicted_peak_gb,
                       self.reference(cell.model) if self._uses_reference(cell) else None,
                       engine_named(args.engine), binary, binary_error)

    def record(self, job: CellJob, result: Result) -> None:
        """Write a finished cell's result and let go of what was decided from the old results."""
        result.save(job.result_path)
        self._identities.pop((job.cell.model, job.cell.quant), None)  # the file may be new (derived, downloaded)
        self.forget_evidence()

    def forget_evidence(self) -> None:
        """The results on disk changed: decisions made from them are made again when asked."""
        self._known.clear()

    # --- the configuration the `last` profiles run on ----------------------------------------
    def choice(self) -> Choice:
        """Decided once per state of the results (every `last` cell's fingerprint asks)."""
        if "choice" not in self._known:
            self._known["choice"] = self._choose()
        return self._known["choice"]

    def _choose(self) -> Choice:
        """The last (largest) passing configuration (docs/smart-termination.md, the stress choice).

        A configuration passes when every performance profile measured on it rates Acceptable or
        better against today's thresholds; of those, the largest model file is chosen, since it
        is the one most likely to show heat or swap trouble without being certain to fail.
        Profiles that are no `performance` measure (quality) are left out: how well a model
        answers says nothing about whether this machine can run it for 30 minutes.
        """
        profiles = [p for p in self.spec.profiles.enabled() if PROFILES[p].performance and not PROFILES[p].last]
        passing = []
        configs = [(m, q, v) for m, q in ordered_pairs(self.spec) for v in self.variants]
        found = [[self.stored(Cell(self.spec.name, m, q, p, variant=v)) for p in profiles] for m, q, v in configs]
        ok = [(p, r) for results in found for p, r in zip(profiles, results) if r is not None and r.ok]
        labels_of = iter(r.label for r in rate_many([(p, r.figures()) for p, r in ok], self.spec.thresholds))
        for order, ((model, quant, variant), results) in enumerate(zip(configs, found)):
            labels = [next(labels_of) if r is not None and r.ok else None for r in results]
            size = next(((r.model_file or {}).get("size") for r in reversed(results) if r is not None and r.ok
                         and (r.model_file or {}).get("size") is not None), None)
            rated = [label for label in labels if label is not None]
            if rated and all(label in PASSING for label in rated) and len(rated) == len(labels):
                passing.append((size or 0, order, model, quant, variant, rated))
        if not passing:
            return Choice(None, None, "no configuration passed every performance profile yet")
        size, _, model, quant, variant, rated = max(passing)
        label = f"{model} {quant}{self.variants[variant].label}"
        return Choice(model, quant, f"{label} is the largest of {len(passing)} passing "
                                    f"configuration(s) ({size / 1e6:.0f} MB; rated {', '.join(rated)})", variant)

    # --- smart termination -------------------------------------------------------------------
    def decide(self, cell: Cell) -> Decision:
        """Run or skip this cell, from the results on disk (see llmspec.plan.termination); made
        once per cell and state of the results (the up-to-date check and the run both ask)."""
        decisions = self._known.setdefault("decisions", {})
        if cell not in decisions:
            decisions[cell] = self._decide(cell)
        return decisions[cell]

    def _decide(self, cell: Cell) -> Decision:
        if not cell.endpoint and (found := self._engine_cannot(cell)) is not None:
            return found
        if not self.spec.planner.skip or cell.endpoint or PROFILES[cell.profile].last:
            return Decision(None)
        model = self.spec.model(cell.model)
        ev = self.evidence()
        own = (cell.model, cell.quant)
        others = Evidence(ev.limit_gb, ev.limit_text, {k: v for k, v in ev.ratings.items() if k != own},
                          {k: xy for k, xy in ev.observed.items() if k != own}, ev.sizes, ev.meta, ev.gpus, ev.killed)
        args = self.server_args(cell.variant)
        engine = engine_named(args.engine)
        decision = decide(model, cell.quant, others, args.ctx_size, lambda other: self._larger(model, other),
                          engine.cache_types(args), self.server_settings(cell.variant).n_gpu_layers,
                          engine.overhead_bytes)
        return decision if decision.skip else self._past_knee(cell) or decision

    def _engine_cannot(self, cell: Cell) -> Decision | None:
        """A skip when the cell's engine cannot honour its settings or lacks what the profile needs."""
        kind = PROFILES[cell.profile]
        if not kind.needs_server:
            return None
        args = self.server_args(cell.variant)
        engine = engine_named(args.engine)
        why = engine.cannot(args)
        lacking = sorted(kind.engine_needs - engine.supports)
        if why is None and lacking:
            why = f"{engine.name} does not offer {', '.join(lacking)}, which the {cell.profile} profile needs"
        return Decision("engine", why, f"engine:{engine.name}") if why else None

    def _past_knee(self, cell: Cell) -> Decision | None:
        """Skip a thread count past the knee of `threads = "sweep"` (llmspec.plan.variants.knee),
        judged on the interactive speed (the `skip_judge` role) of the counts measured before it (fewer threads)."""
        sweep, judge = self.spec.server.sweep, role("skip_judge")
        if sweep is None or sweep.threads != "sweep" or not cell.variant or judge is None \
                or getattr(self.spec.profiles, judge.name) is None:
            return None
        variant = self.variants[cell.variant]
        curve = variants.same_but_threads(variant, list(self.variants.values()))
        points = []
        for step in curve[:curve.index(variant)]:
            result = self.stored(Cell(self.spec.name, cell.model, cell.quant, judge.name, variant=step.name))
            if result is None or not result.ok or result.metrics.get("tokens_per_s") is None:
                return None  # a count before this one is not measured: nothing to judge from
            bounds = (result.intervals or {}).get("tokens_per_s") or {}
            points.append(variants.Point(dict(step.values)["threads"], result.metrics["tokens_per_s"],
                                         bounds.get("low"), bounds.get("high")))
        found = variants.knee(points)
        if found is None:
            return None
        before = points[points.index(found) - 1]
        return Decision("thread_knee", f"past the thread knee: {found.threads} threads gave {found.value:.1f} t/s, "
                                       f"no faster beyond the noise than {before.threads} threads' {before.value:.1f} "
                                       f"t/s, so more threads are not measured",
                        f"thread_knee:{cell.model}@{cell.quant}:t{found.threads}")

    def _larger(self, model, other_name: str) -> bool:
        other = self.spec.model(other_name)
        if model.params_b is not None and other.params_b is not None:
            return model.params_b > other.params_b
        return False

    def evidence(self) -> Evidence:
        if "evidence" not in self._known:
            self._known["evidence"] = self._gather_evidence()
        return self._known["evidence"]

    def _gather_evidence(self) -> Evidence:
        import psutil

        ev = Evidence(*memory_limit(psutil.virtual_memory().available / GB, self.spec.limits.max_memory_gb))
        if any(v.server.n_gpu_layers not in (None, 0) for v in self.variants.values()):
            from llmspec.machine.gpu import GpuSource

            ev.gpus = GpuSource().read()  # the VRAM pre-flight; None: no GPU, the RAM rules apply
        profiles = [p for p in self.spec.profiles.enabled() if not PROFILES[p].last]
        stored = {}
        for model, quant in ordered_pairs(self.spec):
            cells = dict.fromkeys(Cell(self.spec.name, model, quant, p, variant=v if PROFILES[p].needs_server else "")
                                  for v in self.variants for p in profiles)
            stored[(model, quant)] = {cell: self.stored(cell) for cell in cells}
        judge = role("skip_judge")  # its labels, the best variant's: one that runs well is enough
        if judge is not None and judge.name in profiles:
            ev.ratings.update(interactive_labels(stored, self.spec.thresholds))
        for (model, quant), results in stored.items():
            ok = [r for r in results.values() if r is not None and r.ok]
            self._file_facts(ev, model, quant, ok)
            for cell, found in results.items():  # an OOM kill at the variant's context: the need is at least its peak
                if found is not None and found.status == "error" and PROFILES[cell.profile].server_overrides is None \
                        and (peak := killed_peak_gb(found.reason)) is not None:
                    key = (model, quant, self.server_args(cell.variant).ctx_size)
                    ev.killed[key] = max(peak, ev.killed.get(key, 0.0))
            peaks = [r.metrics.get("peak_rss_gb") for r in ok if r.metrics.get("peak_rss_gb")]
            if peaks and ev.sizes.get((model, quant)):
                ev.observed[(model, quant)] = (ev.sizes[(model, quant)] / GB, max(peaks))
        return ev

    def _file_facts(self, ev: Evidence, model: str, quant: str, ok_results: list[Result]) -> None:
        """Size and GGUF metadata: from the file, else a stored result, else guessed from the base."""
        mf = self.model_file(model, quant)
        key = (model, quant)
        found = modelfiles.existing_file(self.spec, mf)
        stored = next((r.model_file for r in ok_results if r.model_file), None)
        if found is not None:
            # A file outside model_dir (a package's, another tool's store) is read, not annotated.
            ev.sizes[key], ev.meta[key] = found.stat().st_size, modelfiles.metadata_or_none(found, found == mf.path)
        elif stored:
            ev.sizes[key], ev.meta[key] = stored.get("size"), stored.get("metadata")
        elif mf.kind == "derive":
            base = (model, mf.origin)
            if base not in ev.sizes:
                self._file_facts(ev, model, mf.origin, [])
            if ev.sizes.get(base) and (size := derived_size(ev.sizes[base], mf.origin, quant)):
                ev.sizes[key], ev.meta[key] = size, ev.meta.get(base)
