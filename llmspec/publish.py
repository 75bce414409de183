"""`llmspec publish SPEC --to hf://datasets/ORG/NAME`: this host's results of a spec, to a shared dataset.

Privacy first, because a result file is full of this machine: the host folder name (which
LLMSPEC_HOST may set to a hostname), the hostname wherever it appears, and every absolute path
(a model file's, the server binary's, a log line's) are replaced; an endpoint URL keeps no
host name; the `background` block keeps its shares of a core and drops the process names and
pids, and a reason or flag that names a process says "another process". The host id becomes
`<hardware slug>-<hash>`: stable (the same machine publishes under the same id every time) and
naming no more than the host card does. `--keep-hostname` keeps the host folder's name and the
hostname; paths and process names are dropped all the same.

One publish is one commit (`HfApi.create_commit`) holding only the files whose content differs
from the dataset's; a commit is applied whole or not at all, so a failure leaves the dataset as
it was. The token is huggingface_hub's own (HF_TOKEN, or `huggingface-cli login`), never the spec's.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import sys
from pathlib import Path
from typing import Any

from llmspec import dataset
from llmspec.errors import UserError
from llmspec.machine.host import host_id, slug
from llmspec.results import SCHEMA_VERSION, read_result, result_paths, result_text

# An absolute path of two parts or more: POSIX (not inside a word or URL), or Windows with its drive
# letter. A lone backslash is no path: answers and regular expressions are full of them.
_PART = r"[^\s/\\'\"`,;:()\[\]{}<>=]+"
PATH = re.compile(rf"(?<![\w.:/\\~-])~?(?:/{_PART}){{2,}}/?|\b[A-Za-z]:\\(?:{_PART}\\)+{_PART}")
URL_HOST = re.compile(r"(https?://)(?!(?:127\.0\.0\.1|localhost|\[::1\])[:/\s]|(?:127\.0\.0\.1|localhost)$)"
                      r"[^/\s\"']+")
PROCESS = re.compile(r"[^\s,;()]+ pid \d+")
LOADTESTS = "results"  # where `llmspec loadtest` writes its files, under the project's root
CARD_KEYS = ("arch", "cores_logical", "cores_physical", "cpu", "gpu", "os", "ram_gb")


def anonymous_id(host_dir: str, host: dict[str, Any]) -> str:
    """`amd-epyc-2c-24g-3f9a1c0d`: the hardware in words, and a hash of the local host id."""
    hw = {"cpu": str(host.get("cpu") or ""), "cores_logical": host.get("cores_logical") or "?",
          "ram_gb": host.get("ram_gb") or "?", "arch": str(host.get("arch") or "host")}
    digest = hashlib.sha256(f"llmspec anonymous host\0{host_dir}".encode()).hexdigest()[:8]
    return f"{slug(hw)}-{digest}"


class Scrubber:
    """Replaces what names this machine in every string of a result (see the module's docstring)."""

    def __init__(self, names: dict[str, str]):
        # {found: replacement}, as whole names: a short hostname ("vm") must not eat into other words
        self.names = [(re.compile(rf"(?<![\w.-]){re.escape(k)}(?![\w-])"), v) for k, v in names.items() if k]

    def text(self, value: str) -> str:
        value = PATH.sub(lambda m: "…/" + re.split(r"[/\\]", m[0].rstrip("/\\"))[-1], value)
        value = URL_HOST.sub(r"\1endpoint", value)
        for found, replacement in self.names:
            value = found.sub(replacement, value)
        return value

    def walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self.walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.walk(v) for v in value]
        return value

    def result(self, data: dict[str, Any], host: str) -> dict[str, Any]:
        data = dict(data)
        background = data.pop("background", None)
        for key in ("reason", "skip_evidence"):
            if isinstance(data.get(key), str):
                data[key] = PROCESS.sub("another process", data[key])
        data["flags"] = [PROCESS.sub("another process", f) if isinstance(f, str) else f for f in data.get("flags", [])]
        data = self.walk(data)
        if isinstance(background, dict):  # the shares of a core stay; who used them does not
            data["background"] = {**{k: v for k, v in background.items() if k != "top"},
                                  "top": [{"cpu_pct": p.get("cpu_pct")} for p in background.get("top") or []
                                          if isinstance(p, dict)]}
        if isinstance(data.get("host"), dict):
            data["host"] = {**data["host"], "id": host}
        if isinstance(data.get("fingerprint_inputs"), dict) and "host" in data["fingerprint_inputs"]:
            data["fingerprint_inputs"] = {**data["fingerprint_inputs"], "host": host}
        return data


def payload(results_root: Path, spec_name: str, keep_hostname: bool = False,
            loadtests: Path | None = None) -> tuple[str, dict[str, bytes]]:
    """(published host id, {path in the dataset: bytes}) for this host's results of `spec_name`, and the
    `llmspec loadtest` outputs in `loadtests` (the project's results/ folder), scrubbed alike."""
    local = host_id()
    paths = [p for p in result_paths(results_root, spec_name) if Path(p).relative_to(results_root).parts[0] == local]
    results = [(p, read_result(p)) for p in paths]
    results = [(p, r) for p, r in results if r is not None]
    if not results:
        raise UserError(f"no results of spec {spec_name} from this host in {results_root / local / spec_name}: "
                        f"measure them first (doit spec={spec_name})")
    host_card = next((r["host"] for _, r in results if isinstance(r.get("host"), dict) and r["host"]), {})
    published = local if keep_hostname else anonymous_id(local, host_card)
    names = {local: published}
    if not keep_hostname:
        names[socket.gethostname()] = published
    scrub = Scrubber(names)
    files = {}
    for path, data in results:
        rel = Path(path).relative_to(results_root / local).as_posix()
        files[f"{published}/{rel}"] = result_text(scrub.result(data, published)).encode()
    card = {key: host_card.get(key) for key in CARD_KEYS if key in host_card}
    versions = sorted({str(v) for _, r in results if (v := (r.get("server") or {}).get("version"))})
    card = scrub.walk({**card, "id": published, "server_versions": versions, "schema_version": SCHEMA_VERSION})
    files[f"{published}/{dataset.CARD}"] = (json.dumps(card, sort_keys=True, indent=1) + "\n").encode()
    bandwidth = results_root / local / dataset.BANDWIDTH
    if bandwidth.is_file():
        try:
            files[f"{published}/{dataset.BANDWIDTH}"] = (json.dumps(scrub.walk(json.loads(bandwidth.read_text())),
                                                                    sort_keys=True, indent=1) + "\n").encode()
        except ValueError:
            pass  # a torn bandwidth file is not worth a failed publish; the report measures without it
    for name, doc in _loadtests(loadtests):
        files[f"{published}/{dataset.LOADTEST}/{name}"] = loadtest_text(scrub.walk(doc)).encode()
    return published, files


def loadtest_text(document: dict[str, Any]) -> str:
    """As `llmspec loadtest` writes its file (the plan's key order, indented), so a pull gives it back alike."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def _loadtests(folder: Path | None) -> list[tuple[str, dict[str, Any]]]:
    """(file name, document) of each loadtest output in `folder`; other JSON there is not ours to send."""
    found = []
    for path in sorted(folder.glob("*.json")) if folder is not None and folder.is_dir() else []:
        try:
            doc = json.loads(path.read_bytes())
        except (OSError, ValueError):
            continue
        if dataset.is_loadtest(doc) and dataset.HOST_DIR.fullmatch(path.name):
            found.append((path.name, doc))
    return found


def publish(spec, target: str, dry_run: bool, keep_hostname: bool, out=None) -> int:
    from llmspec.plan.job import Workspace

    out = out or sys.stdout
    ds = dataset.parse(target)
    published, files = payload(Workspace(spec.root).results, spec.name, keep_hostname, spec.root / LOADTESTS)
    remote, note = _remote(ds, dry_run)
    changed = {p: b for p, b in files.items() if remote is None or remote.get(p) != dataset.blob_id(b)}
    sent = sum(len(b) for b in changed.values())
    if dry_run:
        out.write(f"Dry run: nothing is sent. Would publish {len(changed)} of {len(files)} file(s), {sent} bytes, "
                  f"to {ds.address} as host {published}{note}\n")
        for path in sorted(files):
            state = "unchanged" if path not in changed else "new" if remote is None or path not in remote else "changed"
            out.write(f"  {state:9} {len(files[path]):>9} B  {path}\n")
        out.write(f"Host card ({published}/{dataset.CARD}):\n{files[f'{published}/{dataset.CARD}'].decode()}")
        return 0
    if not changed:
        out.write(f"Nothing to publish: {ds.address} holds these {len(files)} file(s) under {published} already\n")
        return 0
    _commit(ds, spec.name, published, changed, create=remote is None)
    out.write(f"Published {len(changed)} file(s), {sent} bytes, to {ds.address} as host {published} "
              f"in one commit ({len(files) - len(changed)} unchanged file(s) not sent)\n")
    return 0


def _remote(ds: dataset.Dataset, dry_run: bool) -> tuple[dict[str, str] | None, str]:
    """The dataset's files; offline, a dry run goes on counting every file as new, a publish stops."""
    if not dry_run:
        return dataset.remote_files(ds, dataset.AGAIN.format(done="sent")), ""
    try:
        return dataset.remote_files(ds), ""
    except UserError as e:
        return None, f" (every file counted as new: {e})"


def _commit(ds: dataset.Dataset, spec: str, published: str, changed: dict[str, bytes], create: bool) -> None:
    from huggingface_hub import CommitOperationAdd, get_token

    if not get_token():
        raise UserError(f"{ds.address}: no Hugging Face token: log in with `huggingface-cli login` or set HF_TOKEN "
                        "(a token with write access to the dataset); nothing was sent")
    after = ("; nothing was committed, the dataset is as it was: check the token's write access and the network, "
             "then run the same command again (it sends only what the dataset lacks)")
    api = dataset.api()
    with dataset.hub_errors(ds, "publish", after):
        if create:  # private: a new dataset is shared on purpose, not by default
            api.create_repo(ds.repo, repo_type="dataset", private=True, exist_ok=True)
        api.create_commit(ds.repo, repo_type="dataset", commit_message=f"llmspec publish {spec} from {published}",
                          commit_description=f"{len(changed)} file(s) changed",
                          operations=[CommitOperationAdd(path_in_repo=p, path_or_fileobj=b)
                                      for p, b in sorted(changed.items())])
