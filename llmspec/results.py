"""Result files: one JSON per cell, written atomically, read back to decide what is stale.

A result holds facts only (measurements, samples, what was measured with what); ratings are
computed at report time. Keys are sorted and floats rounded so results diff cleanly in git.
`Result` is the file's type: the runner builds one, the planner and the report read its
attributes, and `to_json`/`from_json` are the only places that know the file's keys.
"""

from __future__ import annotations

import functools
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic_core import from_json
from typing_extensions import TypedDict  # pydantic reads its schema on Python 3.11 (llmspec.contract)

from llmspec.fingerprint import digest, explain_change, fill_missing_model
from llmspec.freshness import UP_TO_DATE, Freshness

STATUSES = ("ok", "skipped", "error")
_NUMBER_TYPES = frozenset({float, int, type(None)})  # exactly these (no bool): a metric a report can read
Status = Literal["ok", "skipped", "error"]
# The result file's format version (llmspec/contract.py publishes its JSON Schema). Files written
# before the key existed read as version 1, which they are: the key was added, nothing else changed.
SCHEMA_VERSION = 1
KILLED = "the server was killed (out of memory?)"  # how an OOM-killed cell's reason starts (run.server's death)
BOUND = ":"  # a figure's 95 % interval travels beside it as "<metric>:low" and "<metric>:high"


@functools.cache
def bound_names(metric: str) -> tuple[str, str]:
    """The two names under which `metric`'s 95 % interval is read (rating) and shown (report).
    Cached: a fleet report asks for them a few hundred thousand times, for a few hundred names."""
    return f"{metric}{BOUND}low", f"{metric}{BOUND}high"


def killed_peak_gb(reason: str) -> float | None:
    """The peak memory an error's reason says its server was killed at, else None: the planner's memory
    pre-flight learns from it (an estimate that let the kernel kill the server was too low)."""
    found = re.search(re.escape(KILLED) + r": SIGKILL, peak memory seen (\d+(?:\.\d+)?) GB", reason)
    return float(found[1]) if found else None


@dataclass(frozen=True)
class ResultPath:
    """Where a cell's result lives: `<host>/<spec>/<model>/<config>/<profile>.json` under a results
    folder (the contract other tools and git history read). The one place that builds such a path
    or reads a cell back out of one; the planner, the report, its history section and `compare`
    all go through it, so the layout cannot drift between the writer and its readers.

    `config` is the quant slot: `Q4_1`, or `Q4_1+<variant>` for a server-setting variant (an
    endpoint's cells have "remote" there); a quant or model name never holds a `+`.
    """

    host: str
    spec: str
    model: str
    config: str
    profile: str

    SUFFIX = ".json"

    @property
    def relative(self) -> str:
        """With `/` whatever the system: how git and the report's links name the file."""
        return f"{self.host}/{self.spec}/{self.model}/{self.config}/{self.profile}{self.SUFFIX}"

    def under(self, results_root: Path) -> Path:
        return results_root.joinpath(self.host, self.spec, self.model, self.config, self.profile + self.SUFFIX)

    @property
    def quant(self) -> str:
        return self.config.partition("+")[0]

    @property
    def variant(self) -> str:
        return self.config.partition("+")[2]

    @classmethod
    def parse(cls, path: str | os.PathLike) -> ResultPath | None:
        """The cell a path names from its last five parts (either separator: git's `/`, a folder's
        own); None when it has fewer or is no `.json` file. Strings in, no Path objects: the report
        parses 10,000 of them."""
        text = os.fspath(path)
        if "\\" in text:
            text = text.replace("\\", "/")
        parts = text.rsplit("/", 5)[-5:]
        if len(parts) < 5 or not parts[4].endswith(cls.SUFFIX):
            return None
        return cls(parts[0], parts[1], parts[2], parts[3], parts[4][: -len(cls.SUFFIX)])


class Cell(TypedDict):
    spec: str
    model: str
    quant: str  # the quant, plus "+<variant>" for a server-setting or engine variant
    profile: str


class Interval(TypedDict):
    n: int  # repeated samples the interval rests on
    low: float | None
    high: float | None
    method: str  # e.g. "distribution-free median (order statistics)", "bootstrap", "Wilson"


@dataclass
class Result:
    """One cell's measurement (or why there is none), as committed under build/results/.

    - `cell`: {spec, model, quant, profile}; `status`: ok | skipped | error; `reason`: a
      sentence a user understands (skipped and error)
    - `metrics`: flat names with units in the name; `samples`: the raw records behind them;
      `flags`: what a reader should distrust
    - `fingerprint` and `fingerprint_inputs`: everything that changes the measurement
    - `host`, `server` (binary, version and the arguments the cell's server ran with, or for a
      cell that started none, the spec's common arguments; an endpoint's URL and model),
      `model_file` (identity, quant, source, GGUF metadata), `started_at`, `duration_s`
    - `skip_evidence`: what a skip rests on (re-decided when it changes); `server_log_tail`:
      the server's last lines after an error; `background`: the other processes that used the
      machine while the cell measured (name, pid, share of a core); `intervals`: 95 % intervals
      of the figures summarised from repeated samples, `{metric: {n, low, high, method}}`;
      `items`: per scored item, 1 right or 0 wrong (`{item_id: 0|1}`), so two quants can be
      compared item by item (exact McNemar test) without reading the samples.
      Each written only when set.
    - `schema_version`: the file format's version (absent in files written before it existed: 1)
    """

    cell: Cell
    status: Status
    reason: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    samples: list[Any] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    fingerprint: str = ""
    fingerprint_inputs: dict[str, Any] = field(default_factory=dict)
    started_at: str = ""
    duration_s: float = 0.0
    host: dict[str, Any] = field(default_factory=dict)
    server: dict[str, Any] = field(default_factory=dict)
    model_file: dict[str, Any] | None = None
    skip_evidence: str | None = None
    server_log_tail: list[str] | None = None
    background: dict[str, Any] | None = None
    intervals: dict[str, Interval] | None = None
    items: dict[str, int] | None = None
    schema_version: int = SCHEMA_VERSION

    OPTIONAL = ("skip_evidence", "server_log_tail", "background", "intervals", "items")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def figures(self) -> dict[str, Any]:
        """The metrics, plus each interval's bounds as `<metric>:low` / `<metric>:high`: what the
        rating reads (a threshold inside the interval is borderline) and the report shows."""
        if not self.intervals:
            return self.metrics
        figures = dict(self.metrics)  # a bound named like a metric overwrites it in place, as {**a, **b} does
        for name, found in self.intervals.items():
            if isinstance(found, dict):
                low, high = bound_names(name)
                figures[low], figures[high] = found.get("low"), found.get("high")
        return figures

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        for key in self.OPTIONAL:
            if data[key] is None:
                del data[key]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Result:
        """Tolerant of hand-edited or older files: a missing or mistyped part reads as empty."""
        def part(key: str, kind: type, default: Any) -> Any:
            value = data.get(key)
            return value if isinstance(value, kind) else default

        return cls(
            cell=part("cell", dict, {}), status=str(data.get("status") or ""), reason=str(data.get("reason") or ""),
            metrics=part("metrics", dict, {}), samples=part("samples", list, []), flags=part("flags", list, []),
            fingerprint=str(data.get("fingerprint") or ""), fingerprint_inputs=part("fingerprint_inputs", dict, {}),
            started_at=str(data.get("started_at") or ""), duration_s=part("duration_s", (int, float), 0.0),
            host=part("host", dict, {}), server=part("server", dict, {}), model_file=part("model_file", dict, None),
            skip_evidence=data.get("skip_evidence"), server_log_tail=data.get("server_log_tail"),
            background=part("background", dict, None), intervals=part("intervals", dict, None),
            items=part("items", dict, None), schema_version=part("schema_version", int, 1),
        )

    @classmethod
    def load(cls, path: Path | str, skip: tuple[str, ...] = ()) -> Result | None:
        """The result at `path` (without the `skip` keys), or None when missing or torn."""
        data = read_result(path, skip)
        return cls.from_json(data) if data is not None else None

    def save(self, path: Path) -> None:
        write_result(path, self.to_json())

SAMPLES_KEY = b'\n "samples": '  # the top-level key's line
SAMPLES_SLOT = "\x00samples\x00"  # stands in for the samples while the rest is indented


def write_result(path: Path, result: dict[str, Any]) -> None:
    """Sorted keys, indent 1, the raw samples on one line of their own; written atomically.

    Metrics and provenance diff line by line in git; the samples (timings that differ on every
    run) are one line, so that planning and reports, which never need them, skip them by
    finding one newline (see `parse_without`).
    """
    write_text_atomic(path, result_text(result))


def result_text(result: dict[str, Any]) -> str:
    """The file's text as `write_result` writes it (also what `llmspec publish` sends)."""
    assert result.get("status") in STATUSES, result.get("status")
    result = _rounded(result)
    samples = result.pop("samples", None)
    text = json.dumps({**result, "samples": SAMPLES_SLOT} if samples is not None else result,
                      sort_keys=True, indent=1, ensure_ascii=False)
    if samples is not None:
        slot = SAMPLES_KEY.decode() + json.dumps(SAMPLES_SLOT)  # the top-level key's line, nothing nested
        text = text.replace(slot, SAMPLES_KEY.decode() + json.dumps(samples, sort_keys=True, ensure_ascii=False), 1)
    return text + "\n"


def write_text_atomic(path: Path, text: str, sync: bool = True) -> None:
    """Write via a temp file, fsync and rename, so a killed run never leaves half a file.
    `sync=False` skips the fsync: still never half a file, but a power cut may lose it (the
    progress file, rewritten twice a second, need not survive one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; results and reports are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_result(path: Path | str, skip: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """The parsed result, or None when it is missing or torn.

    `skip` names top-level keys not to parse. The raw samples (model answers, per-request
    timings) are most of a file, and planning and reports need only the metrics computed from
    them; a report needs no fingerprint inputs either.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read()
        result = parse_without(data, skip) if skip else json.loads(data)
    except (OSError, ValueError):  # missing or unreadable; JSON and UTF-8 errors are ValueErrors
        return None
    return None if defect(result) else result


# What a result must hold to be believed, with the type each must have: a file that lacks one (a hand edit, a
# botched merge) is not up to date, so `doit` measures its cell again, and the report names it (`unreadable`).
# (The cell's identity comes from the path, so `cell` is not among them.)
REQUIRED = (("status", str, "a string"), ("fingerprint", str, "a string"), ("metrics", dict, "an object"))


def defect(result: Any) -> str | None:
    """What is wrong with a parsed result file, in words, or None when it can be used."""
    if not isinstance(result, dict):
        return "it is not a JSON object"
    for key, kind, what in REQUIRED:
        if key not in result:
            return f"the key '{key}' is missing"
        if not isinstance(result[key], kind):
            return f"'{key}' is {json.dumps(result[key])[:40]}, not {what}"
    if result["status"] not in STATUSES:
        return f"'status' is {json.dumps(result['status'])[:40]}, not one of {', '.join(STATUSES)}"
    if _NUMBER_TYPES.issuperset(map(type, result["metrics"].values())):
        return None  # what json.loads gives for a sound file; anything else is looked at one by one
    for name, value in result["metrics"].items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return f"'metrics.{name}' is {json.dumps(value)[:40]}, not a number"
    return None


def unreadable(path: Path | str) -> str | None:
    """Why the result file at `path` cannot be used (None: it can, or there is none): the line a user
    needs to find and fix it."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"it cannot be opened ({exc.strerror or exc})"
    if data.startswith(b"<<<<<<< ") or b"\n<<<<<<< " in data:
        line = 1 + data[:data.find(b"<<<<<<< ")].count(b"\n")
        return f"it holds merge-conflict markers (line {line}: <<<<<<<)"
    try:
        result = json.loads(data)
    except UnicodeDecodeError:
        return "it is not UTF-8 text"
    except json.JSONDecodeError as exc:
        return f"it is not valid JSON (line {exc.lineno}: {exc.msg}; cut short?)"
    return defect(result)


WITHOUT_SAMPLES = ("samples",)
FOR_REPORTS = ("fingerprint_inputs", "samples")  # in file (sorted) order


def parse_without(data: bytes, keys: tuple[str, ...]) -> Any:
    """Parse a result without the text of some top-level keys, which is most of the parse time.

    `write_result` writes sorted keys with indent=1, so a top-level key, and only a top-level
    key, starts a line with one space and a quote, and a value runs to the next such line. The
    samples are on one line of their own, so one newline ends them; results written before that
    layout are scanned. `keys` must be in sorted order. A file in neither shape is parsed whole.

    The rest is parsed by pydantic-core's JSON parser (pydantic's own, in Rust): 14 us a result
    where json.loads takes 33, the same values (checked on the 14,700 results of a fleet). What it
    refuses that json.loads reads (a lone surrogate escape, a byte-order mark) is parsed by json.
    """
    pieces, at = [], 0
    for key in keys:
        start = data.find(b'\n "' + key.encode() + b'": ', at)
        if start < 0:
            continue
        end = data.find(b"\n", start + len(key) + 6)
        if data[end:end + 3] != b'\n "':
            end = data.find(b'\n "', start + len(key) + 6)
        if end < 0:
            break
        pieces.append(data[at:start])
        at = end
    try:
        result = from_json(b"".join(pieces) + data[at:] if pieces else data)
    except ValueError:
        result = json.loads(data)
    if isinstance(result, dict):  # a file in neither shape still comes without them
        for key in keys:
            result.pop(key, None)
    return result


def result_paths(results_root: Path, spec_name: str) -> list[str]:
    """Every `ResultPath` of a spec under `results_root`, as strings, sorted; scandir is ~4x faster than glob."""
    found: list[str] = []
    for host in _dirs(str(results_root)):
        for model in _dirs(os.path.join(host, spec_name)):
            for quant in _dirs(model):
                found += [e.path for e in os.scandir(quant) if e.name.endswith(ResultPath.SUFFIX) and e.is_file()]
    return sorted(found)


def result_stats(results_root: Path, spec_name: str) -> dict[str, tuple[int, int]]:
    """{path: (size, mtime_ns)} of every `result_paths` file, in path order, as stat() sees it now (a
    file gone since it was listed is left out). What tells the report whether a file changed."""
    stats = {}
    for path in result_paths(results_root, spec_name):
        try:
            st = os.stat(path)
        except OSError:
            continue
        stats[path] = (st.st_size, st.st_mtime_ns)
    return stats


def _dirs(path: str) -> list[str]:
    try:
        return [e.path for e in os.scandir(path) if e.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return []


def judge(stored: Result | None, current_inputs: dict[str, Any]) -> Freshness:
    """Whether a stored result against the cell's inputs today.

    Error results are never up to date: a failed measurement is not a finished artifact, and
    the next run should try again.
    """
    if stored is None:
        return Freshness.stale("no result yet")
    current = fill_missing_model(current_inputs, stored.fingerprint_inputs)
    if stored.fingerprint != digest(current):
        return Freshness.stale(explain_change(stored.fingerprint_inputs, current))
    if stored.status == "error":
        return Freshness.stale(f"last run failed: {stored.reason or 'unknown error'}")
    return UP_TO_DATE


def _rounded(value: Any, key: str = "") -> Any:
    """Six significant digits: more would be noise in a measurement and churn in git. A moment in
    Unix seconds (a key ending `_unix`) keeps milliseconds instead: six digits of 1.8e9 would put
    every request of a day into one 10,000-second bucket."""
    if isinstance(value, float):
        return round(value, 3) if key.endswith("_unix") else float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: _rounded(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value
