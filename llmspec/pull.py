"""`llmspec pull hf://datasets/ORG/NAME [--spec S]`: other machines' results, beside this one's.

Pulled results land in build/results/<host>/... where the report and `llmspec fleet` read every
host, and nowhere the planner looks: it reads and writes only this machine's own folder
(`host_id()`), so `doit` never counts a pulled result as one of its cells nor measures it again.
A pulled host folder carries `.pulled.json` (where from, when) and its files are read-only. A
folder that holds this machine's own results, or results that did not come from a pull
(measured here, merged through git), is never written: a line says so and the rest goes on.
Files already here with the same content are not fetched again, so a broken pull resumes.
A host's `llmspec loadtest` outputs come along (without --spec) into build/results/<host>/loadtest/,
where `llmspec compare` reads them as it reads any loadtest file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from datetime import UTC, datetime
from pathlib import Path

from llmspec import dataset
from llmspec.contract import version_of
from llmspec.errors import UserError
from llmspec.machine.host import host_id
from llmspec.progress import Progress

PART = re.compile(r"[A-Za-z0-9][\w.+@-]*")  # a folder or file name of the layout; no "..", no hidden files
STAGING = ".pull-staging"


def wanted(paths: dict[str, str], spec: str | None) -> dict[str, dict[str, str]]:
    """{host: {path: blob id}} of the layout's files (results of `spec`, or all; card; bandwidth; and,
    without `spec`, the loadtest outputs, which belong to no spec)."""
    hosts: dict[str, dict[str, str]] = {}
    for path, oid in paths.items():
        parts = path.split("/")
        if not all(PART.fullmatch(p) for p in parts):
            continue
        is_result = len(parts) == 5 and parts[4].endswith(".json") and spec in (None, parts[1])
        if is_result or _is_loadtest(path) and spec is None or \
                (len(parts) == 2 and parts[1] in (dataset.CARD, dataset.BANDWIDTH)):
            hosts.setdefault(parts[0], {})[path] = oid
    return {h: files for h, files in hosts.items() if any(p.count("/") == 4 or _is_loadtest(p) for p in files)}


def _is_loadtest(path: str) -> bool:
    parts = path.split("/")
    return len(parts) == 3 and parts[1] == dataset.LOADTEST and parts[2].endswith(".json")


def _listed(ds: dataset.Dataset, spec: str | None, done: str) -> dict[str, dict[str, str]]:
    remote = dataset.remote_files(ds, dataset.AGAIN.format(done=done))
    if remote is None:
        raise UserError(f"{ds.address}: no such dataset on the hub (or it is private and no token is set: "
                        "`huggingface-cli login` or HF_TOKEN)")
    hosts = wanted(remote, spec)
    if not hosts:
        raise UserError(f"{ds.address}: no results" + (f" of spec {spec}" if spec else "") + " in it")
    return hosts


def cached(address: str, cache_root: Path, out=None) -> Path:
    """A dataset given as a source (`llmspec compare hf://...`, `llmspec fleet --with hf://...`): its
    results in `cache_root/ORG/NAME/`, a results folder of its own, brought up to date with the pull's
    code (only what changed is fetched; checked, read-only) and holding nothing the dataset no longer
    has. Nothing of it lands in build/results: reading a dataset is not taking its hosts in."""
    out = out or sys.stderr
    ds = dataset.parse(address)
    hosts = _listed(ds, None, "read")
    root = cache_root / ds.repo
    listed = {p for files in hosts.values() for p in files}
    for path in sorted(root.rglob("*")) if root.is_dir() else []:  # a folder before what is in it
        if path.is_dir() and path.parent == root and path.name not in hosts:
            shutil.rmtree(path)
        elif path.is_file() and path.name != dataset.PULLED and path.relative_to(root).as_posix() not in listed:
            path.unlink()
    todo: dict[str, str] = {}
    for host, files in sorted(hosts.items()):
        _mark(root / host, ds, len(files))
        todo |= {p: oid for p, oid in files.items() if _blob(root / p) != oid}
    got = _fetch(ds, todo, root, out)
    out.write(f"{ds.address}: {len(hosts)} host(s), {len(todo)} file(s) fetched ({got} bytes), "
              f"{len(listed) - len(todo)} already in {root}\n")
    return root


def with_datasets(results_root: Path, addresses: list[str], build: Path, out=None) -> Path:
    """A results folder for a report over this project's results and the datasets' (`doit report
    with=hf://...`, `llmspec fleet --with hf://...`): build/cache/with/ holding a link to each host
    folder, this project's and each dataset's cache (`cached`), so the report reads them all as one
    tree and nothing is copied into build/results. A host folder here wins over a dataset's of the
    same name, and this machine's own published results (its anonymous id) are left out: they are
    the ones in build/results already. Without addresses, `results_root` itself."""
    if not addresses:
        return results_root
    from llmspec.machine.host import hardware
    from llmspec.publish import anonymous_id

    out = out or sys.stderr
    view = build / "cache" / "with"
    shutil.rmtree(view, ignore_errors=True)
    view.mkdir(parents=True)
    mine = {host_id(), anonymous_id(host_id(), hardware())}
    hosts = {h.name: h for h in results_root.iterdir() if h.is_dir()} if results_root.is_dir() else {}
    for address in addresses:
        for host in sorted(h for h in cached(address, build / "cache" / "datasets", out).iterdir() if h.is_dir()):
            if host.name in mine:
                out.write(f"{address}: host {host.name} left out: this machine's own results, read from "
                          f"{results_root}\n")
            elif host.name in hosts:
                out.write(f"{address}: host {host.name} left out: {hosts[host.name]} holds results of that name\n")
            else:
                hosts[host.name] = host
    for name, folder in hosts.items():
        (view / name).symlink_to(folder.resolve(), target_is_directory=True)
    return view


def pull(address: str, spec: str | None, results_root: Path, out=None, err=None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    ds = dataset.parse(address)
    hosts = _listed(ds, spec, "pulled")
    todo: dict[str, str] = {}
    taken = []
    for host, files in sorted(hosts.items()):
        if (why := _refused(results_root / host, host)) is not None:
            err.write(f"llmspec: {ds.address}: host {host} not pulled: {results_root / host} {why}; "
                      "a pull never overwrites them\n")
            continue
        _mark(results_root / host, ds, len(files))  # first: an interrupted pull resumes into a marked folder
        taken.append(host)
        todo |= {p: oid for p, oid in files.items() if _blob(results_root / p) != oid}
    if not taken:
        return 1
    got = _fetch(ds, todo, results_root, out)
    out.write(f"Pulled {len(todo)} file(s), {got} bytes, of {len(taken)} host(s) from {ds.address} into "
              f"{results_root} ({sum(len(hosts[h]) for h in taken) - len(todo)} already here)\n")
    return 0


def _refused(folder: Path, host: str) -> str | None:
    if host == host_id():
        return "holds this machine's own results"
    if folder.is_dir() and not (folder / dataset.PULLED).is_file():
        return "holds results that did not come from a pull (measured here or merged through git)"
    return None


def _blob(path: Path) -> str | None:
    try:
        return dataset.blob_id(path.read_bytes())
    except OSError:
        return None


def _fetch(ds: dataset.Dataset, todo: dict[str, str], results_root: Path, out) -> int:
    from huggingface_hub import hf_hub_download

    from llmspec.models.hub import hub_endpoint

    staging = results_root / STAGING
    got = 0
    try:
        with Progress(f"pull {ds.address}", total=len(todo), unit=" files", say=lambda line: print(line, file=out),
                      stream=out) as bar:
            for i, (path, oid) in enumerate(sorted(todo.items())):
                with dataset.hub_errors(ds, f"download {path}", "; run the same command again to resume"):
                    staged = Path(hf_hub_download(ds.repo, path, repo_type="dataset", local_dir=staging,
                                                  endpoint=hub_endpoint()))
                data = staged.read_bytes()
                if dataset.blob_id(data) != oid:
                    raise UserError(f"{ds.address}: {path} arrived with other content than the hub lists; "
                                    "run the same command again")
                if path.count("/") == 4 or _is_loadtest(path):
                    _check(data, f"{ds.address}/{path}", loadtest=_is_loadtest(path))
                _place(data, results_root / path)
                got += len(data)
                bar.update(i + 1, note=path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return got


def _check(data: bytes, where: str, loadtest: bool = False) -> None:
    what = "a loadtest output (meta, results, aggregate)" if loadtest else "a result file"
    try:
        parsed = json.loads(data)
    except ValueError:
        raise UserError(f"{where}: not {what} (not JSON)") from None
    if not isinstance(parsed, dict) or loadtest and not dataset.is_loadtest(parsed):
        raise UserError(f"{where}: not {what}")
    version_of(parsed, where)


def _place(data: bytes, path: Path) -> None:
    """Written atomically and read-only: a pulled result is a record of another machine, not ours to edit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.pull")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o444)
    os.replace(tmp, path)


def _mark(folder: Path, ds: dataset.Dataset, files: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    marker = {"source": ds.address, "pulled_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "files": files,
              "note": "pulled by llmspec pull: another machine's results, never measured or rewritten here"}
    (folder / dataset.PULLED).write_text(json.dumps(marker, indent=1, sort_keys=True) + "\n", encoding="utf-8")
