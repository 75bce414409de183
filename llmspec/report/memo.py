"""Frames derived per profile, kept beside the reports under the digest of what they were made from.

A threshold edit, the step a user repeats, changes one profile's ratings; at fleet scale (14,700
results of 420 hosts) rating every profile again, and building every profile's table rows and
results.json entries again, was a third of a re-render. Each derivation kept here is a pure
function of one frame and a line of settings (a profile's thresholds), and it is handed exactly
the frame its key was made from, so it cannot read anything the key does not cover. The key is
that frame's exact bytes (Arrow IPC), the settings, the polars version and the source of llmspec
itself: other code, another key. Only the newest frame of each name is kept.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

import polars as pl

log = logging.getLogger(__name__)

FOLDER = ".memo"  # in a spec's reports folder


class Memo:
    """`frame(name, inputs, settings, derive)`: `derive(inputs)`, read back when `inputs` and `settings`
    are what the kept frame of `name` was made from. `Memo(None)` keeps nothing (derives every time)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmspec-memo") if folder else None
        self._names: set[str] | None = None  # the names something is kept under, read once

    def __enter__(self) -> Memo:
        return self

    def __exit__(self, *exc) -> None:
        """Every frame made is on disk (or warned about) once the report is."""
        if self._writer is not None:
            self._writer.shutdown(wait=True)

    def frame(self, name: str, inputs: pl.DataFrame, settings: str,
              derive: Callable[[pl.DataFrame], pl.DataFrame]) -> pl.DataFrame:
        return self.get(name, self.key(inputs, settings), lambda: derive(inputs))

    def key(self, inputs: pl.DataFrame, settings: str) -> Key:
        """What `get` finds a frame by: the digest of `inputs` and `settings`, worked out when first needed."""
        return Key(inputs, settings)

    def get(self, name: str, key: Key, derive: Callable[[], pl.DataFrame]) -> pl.DataFrame:
        """The frame of `name` made under `key`, else `derive()` (kept under `key`). The caller
        sees to it that `derive` reads only what `key` was made from (`frame` does). With nothing
        kept under `name` (the first report), the digest is worked out on the writing thread."""
        if self.folder is None:
            return derive()
        if name in self._kept_names():
            try:
                return pl.read_ipc(self._path(name, key))
            except (OSError, pl.exceptions.PolarsError, ValueError):
                pass  # not made yet (or torn): made now
        made = derive()
        self._writer.submit(lambda: keep(self._path(name, key), made, f"{name}.*.arrow"))  # they let go of the GIL
        return made

    def _path(self, name: str, key: Key) -> Path:
        return self.folder / f"{name}.{key.digest}.arrow"

    def _kept_names(self) -> set[str]:
        if self._names is None:
            try:
                self._names = {entry.split(".", 1)[0] for entry in os.listdir(self.folder)}
            except OSError:
                self._names = set()
        return self._names


class Key:
    """`digest(inputs, settings)`, worked out once, by whichever thread first asks."""

    def __init__(self, inputs: pl.DataFrame, settings: str) -> None:
        self._inputs, self._settings = inputs, settings
        self._digest: str | None = None
        self._lock = threading.Lock()

    @property
    def digest(self) -> str:
        with self._lock:
            if self._digest is None:
                self._digest = digest(self._inputs, self._settings)
            return self._digest


NO_MEMO = Memo(None)


def digest(inputs: pl.DataFrame, settings: str) -> str:
    """sha256 of the frame's Arrow IPC bytes (schema and values, exactly), the settings and the code."""
    buffer = io.BytesIO()
    inputs.write_ipc(buffer, compression="uncompressed")
    hashed = hashlib.sha256(_code().encode())
    hashed.update(settings.encode())
    hashed.update(buffer.getbuffer())
    return hashed.hexdigest()[:24]


@cache
def _code() -> str:
    """llmspec's own source and the polars version: a frame made by other code is not read back."""
    root = Path(__file__).resolve().parent.parent
    hashed = hashlib.sha256(pl.__version__.encode())
    for source in sorted(root.rglob("*.py")):
        hashed.update(source.relative_to(root).as_posix().encode())
        hashed.update(source.read_bytes())
    return hashed.hexdigest()


def keep(path: Path, frame: pl.DataFrame, replaces: str) -> None:
    """`frame` at `path` as Arrow IPC, atomically (temp file + rename); other files in its folder
    matching the glob `replaces` (older versions of it) are removed. A failure is a warning: a
    report that could not keep a frame is still a report."""
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as error:
        log.warning("could not keep %s: %s", path, error)
        return
    os.close(fd)
    try:
        frame.write_ipc(tmp, compression="lz4")
        os.replace(tmp, path)
    except (OSError, pl.exceptions.PolarsError) as error:
        Path(tmp).unlink(missing_ok=True)
        log.warning("could not keep %s: %s", path, error)
        return
    for other in folder.glob(replaces):
        if other != path:
            other.unlink(missing_ok=True)
