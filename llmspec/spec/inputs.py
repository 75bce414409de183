"""The files a spec's profiles read (prompt folders, quality items, questions), checked by `llmspec check`.

Planning reads them to fingerprint the cells, so a missing folder or a broken item file stops
`llmspec plan` and `doit`; `llmspec check` must refuse it first, naming the spec file and the key
that points at it. Not part of loading itself: reports and `llmspec init` load specs whose prompt
files need not be there.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from llmspec.errors import UserError
from llmspec.profiles import PROFILES
from llmspec.profiles.base import project_path
from llmspec.spec.load import _shown_path
from llmspec.spec.schema import Spec


def check_inputs(spec: Spec) -> None:
    """Raise a one-line UserError for the first profile input that planning would refuse."""
    for name, settings in spec.profiles.enabled().items():
        try:
            PROFILES[name].files(settings, spec.root)
        except UserError as exc:
            message = str(exc)
            if not message.startswith(f"profiles.{name}."):
                key = _key_of(settings, spec.root, message)
                message = f"profiles.{name}{f'.{key}' if key else ''}: {message.removeprefix('profiles: ')}"
            raise UserError(f"{_shown_path(spec.path)}: {message}") from None


def _key_of(settings: BaseModel, root: Path, message: str) -> str | None:
    """The settings key whose path the profile's message names (profiles word it by path, not by key)."""
    for key, value in settings:
        if isinstance(value, str) and value and str(project_path(root, value)) in message:
            return key
    return None
