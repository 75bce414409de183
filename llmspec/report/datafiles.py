"""The report's data files: results.csv, results.json and (up to XLSX_MAX_RESULTS) results.xlsx.

They are made from the frames the page is made from, and from nothing the page makes, so they are
written beside it: on a thread for a small report, and by a child process for thousands of
results (`python -m llmspec.report.datafiles`, report/child.py). On a thread, their Python parts and
the page's took turns on the GIL: at 420 hosts (14,700 results) the page came 0.25 s later than
without them; in a child, on 2 cores, the whole report comes 0.05-0.1 s sooner than on a thread.
The child starts when the results are read, so its imports overlap the rating, and it is handed
the frames as Arrow files (results.json's head, which needs the recommendations, comes last). It
writes into a folder of its own beside the reports, and this process renames the files into place,
so a report never holds half a file; a child that fails or cannot start leaves the files to this
process (the same bytes), and none outlives the report.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import polars as pl

from llmspec.report.child import Child, cores
from llmspec.report.memo import NO_MEMO, Memo
from llmspec.results import write_text_atomic

log = logging.getLogger(__name__)

NAMES = ("results.csv", "results.json")
# xlsxwriter writes ~50,000 cells a second in Python: 4 s of a 10,000-result report, more than all
# the rest of it. Beyond this many results the spreadsheet is left out (results.csv has it all).
XLSX_MAX_RESULTS = 2000


def write(out: Path, frame: pl.DataFrame, configs: pl.DataFrame, head: Callable[[], str], memo: Memo = NO_MEMO) -> None:
    """The data files of `frame` (report/frame.for_spec) and its `configs` table in `out`. `head()`:
    results.json's lines before its results (json.json_head, which needs the recommendations), asked
    for only once the rest is made."""
    from llmspec.report.csv import generate_csv
    from llmspec.report.json import entries, json_text

    write_text_atomic(out / "results.csv", generate_csv(frame, configs))
    xlsx = out / "results.xlsx"
    if frame.height <= XLSX_MAX_RESULTS:
        from llmspec.report.xlsx import sheets, write_xlsx

        write_xlsx(xlsx, sheets(frame, configs))
    else:  # an old one would disagree with the other files
        xlsx.unlink(missing_ok=True)
    results = entries(frame, configs, memo)
    write_text_atomic(out / "results.json", json_text(head(), results))


class Writer:
    """`start(frame, configs)` begins the data files of a report in `out` beside this process's
    work, `finish(head)` hands over results.json's head, `result()` waits for them (an error in
    them is raised there). A context manager: leaving it stops whatever still runs. `results`: how
    many the report has, which picks the way."""

    def __init__(self, out: Path, memo: Memo, results: int) -> None:
        self.out, self.memo = out, memo
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmspec-report")
        self._head: Future[str] = Future()
        self._done: Future | None = None
        self._child: Child | None = None
        self._folder: tempfile.TemporaryDirectory | None = None
        self._stopping = False
        # A child for thousands of results (more than a spreadsheet gets: it writes none), where
        # its start (0.35 s of imports, on another core) costs less than it saves.
        if results > XLSX_MAX_RESULTS and cores() > 1:
            out.mkdir(parents=True, exist_ok=True)
            self._folder = tempfile.TemporaryDirectory(prefix=".llmspec-files-", dir=out)
            folder = Path(self._folder.name)
            self._child = Child("llmspec.report.datafiles", [str(folder), str(memo.folder or "")],
                                folder / "err", stdin=True)

    @property
    def in_child(self) -> bool:
        """Whether a child process writes the files (it started)."""
        return self._child is not None and self._child.started

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc) -> None:
        self._stopping = True  # a child stopped now is no failure to make up for
        try:
            if not self._head.done():
                self._head.cancel()  # a thread still waiting for it ends (CancelledError)
            if self._child is not None:
                self._child.stop()
            self._pool.shutdown(wait=True, cancel_futures=True)
        finally:
            if self._folder is not None:
                self._folder.cleanup()

    def start(self, frame: pl.DataFrame, configs: pl.DataFrame) -> None:
        if self.in_child and frame.height > XLSX_MAX_RESULTS:
            folder = Path(self._folder.name)
            frame.write_ipc(folder / "frame.arrow", compression="uncompressed")
            configs.write_ipc(folder / "configs.arrow", compression="uncompressed")
            if self._child.send("go"):
                self._done = self._pool.submit(self._from_child, frame, configs)
                return
            log.info("writing the data files here: the child process %s", self._child.failure())
        self._done = self._pool.submit(write, self.out, frame, configs, self._head.result, self.memo)

    def finish(self, head: str) -> None:
        self._head.set_result(head)
        if self.in_child:
            # a file, not the pipe: 650 kB at 420 hosts would fill it and wait until the child reads
            (Path(self._folder.name) / "head.json").write_text(head, encoding="utf-8")
            self._child.send("head", last=True)  # a child that is gone is seen by result()

    def _from_child(self, frame: pl.DataFrame, configs: pl.DataFrame) -> None:
        """The child's files renamed into place; if it failed, the files written here."""
        why = self._child.failure()
        if self._stopping:
            return
        if why is None:
            folder = Path(self._folder.name)
            try:
                for name in NAMES:
                    os.replace(folder / name, self.out / name)
                (self.out / "results.xlsx").unlink(missing_ok=True)  # more results than a spreadsheet gets
                if said := self._child.said():
                    log.warning("%s", said)  # e.g. the memo could not keep a frame
                return
            except OSError as error:
                why = f"left its files unreadable ({error})"
        log.info("writing the data files here: the child process %s", why)
        write(self.out, frame, configs, self._head.result, self.memo)

    def result(self) -> None:
        if self._done is not None:
            self._done.result()


def _main(folder: str, memo: str) -> None:
    """The child: once told "go" on stdin (EOF: not needed, nothing done), the data files of the
    frames in `folder`, written there; results.json's head is there once the next line says "head"."""
    import llmspec.report.csv
    import llmspec.report.json  # noqa: F401  (imported while the parent still rates the results)

    if sys.stdin.readline().strip() != "go":
        return
    where = Path(folder)
    frame, configs = pl.read_ipc(where / "frame.arrow"), pl.read_ipc(where / "configs.arrow")
    with (Memo(Path(memo)) if memo else NO_MEMO) as kept:
        write(where, frame, configs, lambda: _head(where), kept)


def _head(folder: Path) -> str:
    """results.json's head, once the parent says it is written."""
    if sys.stdin.readline().strip() != "head":
        raise SystemExit("the report ended before results.json's head was written")
    return (folder / "head.json").read_text(encoding="utf-8")


if __name__ == "__main__":
    gc.disable()  # it lives for one report's data files, whose frames hold no cycles (see report.without_gc)
    logging.basicConfig(level=logging.WARNING)
    _main(*sys.argv[1:3])
