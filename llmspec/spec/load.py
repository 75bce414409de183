"""Reading a spec file: TOML in, a validated `Spec` out, or one line naming file, key and fix."""

from __future__ import annotations

import datetime
import json
import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from llmspec.errors import UserError
from llmspec.profiles import PROFILES
from llmspec.spec.schema import NAME_RE, Spec
from llmspec.strict import format_loc

BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")  # a TOML key that needs no quotes
MAX_SHOWN_VALUE = 80  # characters of a wrong value quoted in the message
KEYED_MESSAGES = ("fit", "unmeetable")  # spec-wide rules whose message starts with the keys it is about


def project_root_of(spec_path: Path) -> Path:
    """Specs live in `<project>/specs/`; their relative paths mean `<project>/...`."""
    parent = spec_path.resolve().parent
    return parent.parent if parent.name == "specs" else parent


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec, or raise a one-line UserError naming file, key and fix. A bare name
    (`mine`) is the project's `specs/mine.toml`, as `doit spec=mine` reads it, when no file `mine` exists."""
    path = Path(path)
    named = Path("specs") / f"{path.name}.toml"
    if not path.exists() and path == Path(path.name) and not path.suffix and named.is_file():
        path = named
    return _validated(_read_toml(path, _shown_path(path)), path)


def spec_from_text(text: str, path: str | Path) -> Spec:
    """The spec `text` would be as the file `path` (which need not exist yet), or the UserError
    loading it would give: how `llmspec init` checks a spec before writing it."""
    path = Path(path)
    return _validated(_parse_toml(text, _shown_path(path)), path)


def _validated(raw: dict[str, Any], path: Path) -> Spec:
    shown = _shown_path(path)
    internal = [key for key in ("path", "root") if key in raw]  # set here, from where the file is
    if internal:
        raise UserError(f"{shown}: {internal[0]}: unknown key (allowed here: {', '.join(_allowed_keys([]))})")
    if "name" not in raw and not re.match(NAME_RE, path.stem):
        raise UserError(f"{shown}: the file name {path.stem!r} is not a valid spec name (letters, digits, '.', '_' "
                        f"and '-', starting with a letter or digit): rename the file or set name = \"...\" in it")
    raw.setdefault("name", path.stem)
    try:
        return Spec.model_validate({**raw, "path": path, "root": project_root_of(path)})
    except ValidationError as exc:
        raise UserError(f"{shown}: {describe_validation_error(exc, raw)}") from None


def _read_toml(path: Path, shown: str) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{shown}: no such spec file") from None
    except IsADirectoryError:
        raise UserError(f"{shown}: is a folder, not a spec file (give specs/<name>.toml)") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{shown}: not UTF-8 text (byte {exc.start}); a spec is a TOML file saved as UTF-8") from None
    except OSError as exc:
        raise UserError(f"{shown}: cannot read the spec ({exc.strerror or exc})") from None
    return _parse_toml(text, shown)


def _parse_toml(text: str, shown: str) -> dict[str, Any]:
    if text.startswith("\ufeff"):
        raise UserError(f"{shown}: starts with a byte order mark (BOM); save it as UTF-8 without BOM")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{shown}: TOML syntax error: {exc}") from None
    except RecursionError:  # tomllib recurses once per level of nested arrays or inline tables
        raise UserError(f"{shown}: arrays or inline tables nested too deeply to read; a spec needs a few levels "
                        f"at most") from None


def _shown_path(path: Path) -> str:
    try:
        shown = str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        shown = str(path)
    return shown if shown.isprintable() else repr(shown)  # a newline in a file name must not split the line


def describe_validation_error(exc: ValidationError, raw: dict[str, Any]) -> str:
    """First problem as `key.path: what is wrong (what is allowed)`, plus how many more."""
    errors = exc.errors()
    first = errors[0]
    loc = [part for part in first["loc"] if part != "[key]"]
    kind, value = first["type"], first.get("input")
    if kind == "dup" and not loc:  # two models or endpoints share a name: point at the second
        loc, message = _duplicate_name(raw, first["ctx"]["n"])
    elif kind == "extra_forbidden":
        allowed = ", ".join(_allowed_keys(loc[:-1]))
        message = f"unknown key (allowed here: {allowed})"
    elif kind == "missing":
        message = "is required"
    elif kind in ("model_type", "dict_type"):  # pydantic's wording names a class the user never sees
        section = f"[{format_loc(loc)}] or " if loc and isinstance(loc[-1], str) else ""
        message = f"{_shown_value(value)}: should be a table ({section}{{ key = value, ... }})"
    elif kind == "list_type" and isinstance(value, dict) and loc in (["models"], ["endpoints"]):
        message = f"is a table; write [[{loc[0]}]] (an array of tables, one per entry), not [{loc[0]}]"
    else:
        message = first["msg"].removeprefix("Value error, ")
        if "input" in first and kind not in ("unknown_quant",) and not isinstance(value, dict):
            message = f"{_shown_value(value)}: {message}"
        if kind == "literal_error" and loc[:1] == ["endpoints"] and isinstance(value, str) and value in PROFILES:
            message += f" ({value} needs a llama-server llmspec starts itself: measure it with [[models]])"
    where = format_loc([p if isinstance(p, int) or BARE_KEY.fullmatch(p) else json.dumps(p) for p in loc])
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    if not loc and kind in KEYED_MESSAGES:
        return f"{message}{more}"
    return f"{where or '(top level)'}: {message}{more}"


def _duplicate_name(raw: dict[str, Any], name: str) -> tuple[list[Any], str]:
    """The key of the second entry named `name`, and where the first one is."""
    keys = [[table, i, "name"] for table in ("models", "endpoints") for i, entry in enumerate(raw.get(table, []))
            if isinstance(entry, dict) and entry.get("name") == name]
    if len(keys) < 2:
        return [], f"model name {name} is used twice"
    return keys[1], f"model name {name} is used twice (first at {format_loc(keys[0])}); give each its own name"


def _shown_value(value: Any) -> str:
    """A wrong value as the TOML file spells it, cut short when long."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (datetime.date, datetime.time)):
        text = value.isoformat()
    else:
        text = repr(value)
    return text if len(text) <= MAX_SHOWN_VALUE else text[:MAX_SHOWN_VALUE - 3] + "..."


def _allowed_keys(loc: list[Any]) -> list[str]:
    """Field names of the pydantic model found by walking `loc` from Spec."""
    model: type[BaseModel] = Spec
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        found = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        inner = [a for c in candidates for a in getattr(c, "__args__", ())
                 if isinstance(a, type) and issubclass(a, BaseModel)]
        if not (found or inner):
            return []
        model = (found or inner)[0]
    return [name for name, f in model.model_fields.items() if not f.exclude]

