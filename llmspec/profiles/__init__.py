"""Use-case profiles: the registry. One module per profile, each declaring its `KIND`.

A new profile is one module (settings, thresholds, rating rules, headline figures, `run`) plus
one entry in `KINDS`; the spec, the planner, the rating and the report read everything else
from here. The order of `KINDS` is the order cells of one model file run in. Other parts find a
profile by what it declares (`role`: the profile whose ratings drive the skips, the quiz, the one
measured against reference logits, ...), never by its name (tests/test_layout.py checks it).

A profile kept outside this package (a user's own, a test's toy) is registered without editing
it: `LLMSPEC_PLUGINS` names modules, comma-separated, each a module name on `sys.path` or the path
of a `.py` file, whose `KIND` joins `KINDS` after the built-in ones, e.g.
`LLMSPEC_PLUGINS=myprofiles.echo doit` or `LLMSPEC_PLUGINS=profiles/echo.py llmspec check ...`.
They are imported here, when the registry is, because the spec's schema is built from `KINDS`
when `llmspec.spec` is imported: a later registration would miss it. A plugin module may also
register an engine (`llmspec.engines.register`) on import. tests/toy_profile.py is one, run end
to end through doit by tests/test_profiles.py.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

from llmspec.profiles import (
    batch,
    coding,
    divergence,
    interactive,
    load,
    long_context,
    quality,
    session,
    stress,
    structured,
    tool_calls,
)
from llmspec.profiles.base import (
    ROLES,
    Outcome,
    ProfileContext,
    ProfileKind,
    Rule,
    clock_check,
    files_digest,
    median,
    prompt_files,
    require_cache_miss,
)

BUILT_IN: tuple[ProfileKind, ...] = (interactive.KIND, long_context.KIND, batch.KIND, quality.KIND, divergence.KIND,
                                     load.KIND, stress.KIND, structured.KIND, session.KIND,
                                     tool_calls.KIND, coding.KIND)
PLUGINS_VARIABLE = "LLMSPEC_PLUGINS"


def _refuse(entry: str, why: str) -> None:
    """A bad plugin is the user's input: one line naming the variable, the entry and the fix, exit 2."""
    print(f"llmspec: {PLUGINS_VARIABLE}: {entry!r}: {why}", file=sys.stderr)
    raise SystemExit(2)


def _import_plugin(entry: str):
    if entry.endswith(".py"):
        path = Path(entry).expanduser().resolve()
        found = importlib.util.spec_from_file_location(path.stem, path) if path.is_file() else None
        if found is None:
            _refuse(entry, f"no such file ({path}); name a .py file or an importable module")
        module = importlib.util.module_from_spec(found)
        sys.modules[path.stem] = module
        found.loader.exec_module(module)
        return module
    try:
        return importlib.import_module(entry)
    except ImportError as exc:
        _refuse(entry, f"cannot import it ({exc}); name a module on the Python path or a .py file")


def plugins(value: str | None = None) -> tuple[ProfileKind, ...]:
    """The profiles the modules named in `LLMSPEC_PLUGINS` declare (see the module doc)."""
    value = os.environ.get(PLUGINS_VARIABLE, "") if value is None else value
    kinds: list[ProfileKind] = []
    taken = {k.name for k in BUILT_IN}
    for entry in (e.strip() for e in value.split(",")):
        if not entry:
            continue
        kind = getattr(_import_plugin(entry), "KIND", None)
        if not isinstance(kind, ProfileKind):
            _refuse(entry, "the module declares no KIND = ProfileKind(...) (see llmspec/profiles/interactive.py)")
        if kind.name in taken or not kind.name.isidentifier():
            _refuse(entry, f"profile name {kind.name!r} is taken or not an identifier; choose another name")
        taken.add(kind.name)
        kinds.append(kind)
    return tuple(kinds)


KINDS: tuple[ProfileKind, ...] = BUILT_IN + plugins()
PROFILES: dict[str, ProfileKind] = {kind.name: kind for kind in KINDS}
ORDER: tuple[str, ...] = tuple(PROFILES)


def kind(name: str) -> ProfileKind:
    return PROFILES[name]


def role(name: str) -> ProfileKind | None:
    """The profile holding role `name` (`base.ROLES`: what a part looks a profile up by instead of
    naming it), or None when no registered profile holds it."""
    assert name in ROLES, f"unknown profile role {name!r} (known: {sorted(ROLES)})"
    return next((k for k in KINDS if name in k.roles), None)


def role_name(name: str) -> str | None:
    """The name of the profile holding role `name`, or None (`role`)."""
    found = role(name)
    return None if found is None else found.name


def higher_is_better(profile: str, metric: str) -> bool | None:
    """Which way a profile's figure is better (`ProfileKind.higher_is_better`); None for a profile
    this version does not know (an old result file's)."""
    found = PROFILES.get(profile)
    return None if found is None else found.higher_is_better(metric)


__all__ = ["KINDS", "ORDER", "PROFILES", "Outcome", "ProfileContext", "ProfileKind", "Rule", "kind", "role",
           "role_name", "higher_is_better", "clock_check", "files_digest", "median", "prompt_files",
           "require_cache_miss", "batch", "divergence", "interactive", "load", "long_context", "quality", "stress"]
