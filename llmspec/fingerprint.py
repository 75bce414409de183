"""Fingerprints: a hash of everything that changes a measurement, and nothing that does not.

Thresholds are deliberately absent: changing what counts as "good" re-rates in the report and
re-measures nothing. The inputs are stored next to the hash in every result so that "why would
this cell run again?" has a concrete answer (see `explain_change`). It sits below the result file
(`llmspec.results` judges a stored result by it); the planner adds `MEASUREMENT_VERSION`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def digest(inputs: dict[str, Any]) -> str:
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def fill_missing_model(current: dict[str, Any], stored: dict[str, Any]) -> dict[str, Any]:
    """Use the stored model identity when the model file is not on this disk.

    A fresh clone with committed results has no model files; as long as the spec still names
    the same source for the quant, the committed result stays up to date instead of forcing a
    multi-GB download just to prove nothing changed.
    """
    if current.get("model") is None and stored.get("source") == current.get("source"):
        current = {**current, "model": stored.get("model")}
    reference, old = current.get("reference"), stored.get("reference")  # the divergence profile's reference file
    if isinstance(reference, dict) and isinstance(old, dict) and reference.get("model") is None \
            and old.get("source") == reference.get("source"):
        current = {**current, "reference": {**reference, "model": old.get("model")}}
    return current


def explain_change(stored: dict[str, Any], current: dict[str, Any]) -> str:
    """A short sentence naming what differs, e.g. `profile settings changed (max_tokens: 128 -> 64)`."""
    labels = {"method": "measurement method", "profile": "profile settings", "model": "model file",
              "source": "model source", "server": "llama-server", "host": "host"}
    parts = []
    for key in sorted(set(stored) | set(current)):
        if stored.get(key) != current.get(key):
            detail = _first_difference(stored.get(key), current.get(key))
            parts.append(f"{labels.get(key, key)} changed{f' ({detail})' if detail else ''}")
    return "; ".join(parts) or "fingerprint changed"


def _first_difference(old: Any, new: Any, path: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                return _first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else key)
        return ""
    shorten = lambda v: (s[:40] + "...") if len(s := json.dumps(v, default=str)) > 43 else s
    return f"{path or 'value'}: {shorten(old)} -> {shorten(new)}"
