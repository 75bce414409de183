"""Two kinds of failure, kept apart on purpose (and a cell that is not measured at all, `SkipCell`).

A `UserError` is something the user can fix (a bad spec, a missing file, a port taken): it is
printed as one line and the process exits with status 2. Anything else is a bug in llmspec and
keeps its traceback, because hiding it would make it unfixable.
"""


class UserError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 2


class CellError(Exception):
    """A measurement failed in a way that belongs in the cell's result (status "error")."""


class SkipCell(Exception):
    """This cell cannot run for a reason decided before measuring (e.g. its model did not load).

    `evidence` is stored as the result's `skip_evidence`: a skip that rests on something of this
    run only (a load failure) holds no longer than the run, so the next `doit` tries again."""

    def __init__(self, reason: str, evidence: str | None = None):
        super().__init__(reason)
        self.evidence = evidence
