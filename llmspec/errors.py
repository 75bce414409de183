"""Two kinds of failure, kept apart on purpose.

A `UserError` is something the user can fix (a bad spec, a missing file, a port taken): it is
printed as one line and the process exits with status 2. Anything else is a bug in llmspec and
keeps its traceback, because hiding it would make it unfixable.
"""


class UserError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 2


class CellError(Exception):
    """A measurement failed in a way that belongs in the cell's result (status "error")."""
