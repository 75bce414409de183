"""Which configurations of a spec are catalogue models (`llmspec suggest --write` writes them), and
what the suggestion predicts for them.

A spec model is a catalogue candidate when its `repo` and a quant's file name are a catalogue
entry's: that is all `--write` leaves in the spec (its figures are a comment), and it holds for a
hand-written spec naming the same files. The report's "predicted vs measured" table links each such
configuration to its measured result, or says it is not measured yet and how to measure it. The
figures are the ones `llmspec suggest` computes: the memory pre-flight at the spec's context and the
bandwidth roofline calibrated by this host's results (`plan.prediction`), so an unmeasured row shows
what the suggestion promised and a measured one the same method's prediction stored before measuring.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmspec.catalogue.entry import Entry
from llmspec.spec import Spec


@dataclass(frozen=True)
class Suggested:
    model: str  # the spec's model name
    quant: str
    entry: str  # the catalogue entry's name
    memory_gb: float  # the memory pre-flight's estimate at the spec's context
    decode_tps: float | None  # the roofline's prediction on this host (None: no bandwidth figure here)
    prompt_tps: float | None  # the prompt-speed prediction on this host's CPU (None: nothing to calibrate it by)


def suggested(spec: Spec, results_root: Path | None = None) -> dict[tuple[str, str], Suggested]:
    """(model, quant) -> what the catalogue and this host predict, for the spec's catalogue models."""
    from llmspec.catalogue.load import load_catalogue
    from llmspec.errors import UserError

    if not any(m.repo for m in spec.models):  # only a hub repo can be a catalogue entry's
        return {}
    try:
        entries = {e.repo: e for e in load_catalogue().models}
    except UserError:  # a broken snapshot costs the links, not the report
        return {}
    speed = None
    found = {}
    for model in spec.models:
        entry = entries.get(model.repo or "")
        for quant in model.quants:
            known = entry.files.get(quant) if entry else None
            if entry is None or known is None or model.files.get(quant) != known.file:
                continue
            if speed is None and results_root is not None:
                speed = _speed(results_root) or False
            meta = {**entry.meta, "file_type": quant}
            found[model.name, quant] = Suggested(model.name, quant, entry.name,
                                                 _memory_gb(entry, quant, spec.server.ctx_size),
                                                 speed.decode(known.size) if speed else None,
                                                 speed.prompt(meta) if speed else None)
    return found


def _memory_gb(entry: Entry, quant: str, ctx_size: int) -> float:
    from llmspec.models.memory import estimate_memory

    return estimate_memory(entry.files[quant].size, {**entry.meta, "file_type": quant}, ctx_size).total_gb


def _speed(results_root: Path):
    from llmspec.machine.host import host_id
    from llmspec.plan.prediction import for_host

    return for_host(Path(results_root), host_id())
