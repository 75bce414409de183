"""Whether something the run makes is up to date, and why: one type for every artifact.

A cell's result, a model file and a model's reference logits each decide this from the file on
disk, and the reason is what a user reads (`doit info`, `llmspec plan`), so a stale artifact
always says what changed. Before this type each returned a bare `(bool, str)` tuple, which read
the same as any other pair and was unpacked in a different spelling at every caller.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Freshness:
    """`fresh`: nothing to do; `reason`: why not (or "up to date" / "present"), one sentence.

    Truthy exactly when fresh, so `if plan.freshness(cell):` cannot silently mean "a value came
    back" the way a non-empty tuple did.
    """

    fresh: bool
    reason: str

    def __bool__(self) -> bool:
        return self.fresh

    @classmethod
    def stale(cls, reason: str) -> Freshness:
        return cls(False, reason)


UP_TO_DATE = Freshness(True, "up to date")
