"""Fetching model files from a Hugging Face hub, and refusing any that are not what the hub says.

The transfer itself is huggingface_hub's (auth, redirects, Xet, resume, its progress bar); this
module adds what a benchmark needs on top: a free-space check before a multi-GB download starts,
a sha256 check after it ends (a wrong file would be measured as if it were the model), and one
-line `UserError`s for the failures a user can fix (wrong repo, wrong file name, no network).

The hub is `endpoint`, else the HF_ENDPOINT environment variable *as it is now* (huggingface_hub
reads it only once, at import), else huggingface.co.
"""

from __future__ import annotations

import importlib
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.errors import (
    EntryNotFoundError,
    FileMetadataError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from llmspec.errors import UserError
from llmspec.models.identity import sha256_file

DISK_MARGIN = 0.05  # room for the hub's temporary file bookkeeping and filesystem rounding


def _transport_errors() -> tuple[type[Exception], ...]:
    """Connection failures of whichever HTTP library huggingface_hub uses (httpx2 in 2.x)."""
    found = []
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "ConnectionError")):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            pass
    return tuple(found)


NETWORK_ERRORS = (LocalEntryNotFoundError, OfflineModeIsEnabled, FileMetadataError, *_transport_errors())


@dataclass(frozen=True)
class RemoteFile:
    """What the hub says a file is. `sha256` is None for small files kept in git rather than LFS."""

    size: int
    sha256: str | None
    etag: str
    commit: str


def hub_endpoint(endpoint: str | None = None) -> str:
    return (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def _first_line(e: BaseException) -> str:
    return next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)


@contextmanager
def _user_errors(repo: str, filename: str, revision: str | None, endpoint: str) -> Iterator[None]:
    """Turn huggingface_hub's exceptions for fixable problems into one line naming what was asked."""
    where = f"{repo}/{filename} on {endpoint}"
    try:
        yield
    except RepositoryNotFoundError as e:  # also GatedRepoError; the hub answers the same for private repos
        raise UserError(f"repo {repo} not found on {endpoint} (or it is private/gated and no token is set)") from e
    except RevisionNotFoundError as e:
        raise UserError(f"revision {revision} of repo {repo} not found on {endpoint}") from e
    except NETWORK_ERRORS as e:  # before EntryNotFoundError: LocalEntryNotFoundError is one
        raise UserError(f"cannot reach a Hugging Face hub at {endpoint} for {repo}/{filename}: {_first_line(e)}") from e
    except EntryNotFoundError as e:
        raise UserError(f"file {filename} not found in repo {repo} (revision {revision or 'main'}) "
                        f"on {endpoint}") from e
    except HfHubHTTPError as e:
        raise UserError(f"hub error for {where}: HTTP {e.response.status_code}") from e


def remote_file_info(repo: str, filename: str, revision: str | None = None, endpoint: str | None = None) -> RemoteFile:
    """Size and sha256 of a file, from the HEAD of the same /resolve route the download uses.

    For LFS files the hub's X-Linked-Etag is the sha256 and X-Linked-Size the size, so no
    extra API route is needed; the commit pins the download to this exact version.
    """
    ep = hub_endpoint(endpoint)
    with _user_errors(repo, filename, revision, ep):
        meta = get_hf_file_metadata(hf_hub_url(repo, filename, revision=revision, endpoint=ep), endpoint=ep)
    if meta.commit_hash is None or meta.etag is None or meta.size is None:
        raise UserError(f"{ep} does not answer like a Hugging Face hub for {repo}/{filename} (no commit/ETag/size)")
    sha256 = meta.etag if re.fullmatch(r"[0-9a-f]{64}", meta.etag) else None
    return RemoteFile(size=meta.size, sha256=sha256, etag=meta.etag, commit=meta.commit_hash)


def check_free_space(need_bytes: int, free_bytes: int, where: str) -> None:
    """Fail before downloading rather than after filling the disk halfway through a 20 GB file."""
    if free_bytes < need_bytes:
        raise UserError(f"not enough free disk in {where}: need {need_bytes / 1e9:.2f} GB, "
                        f"have {free_bytes / 1e9:.2f} GB")


def download(repo: str, filename: str, dest_dir: Path, revision: str | None = None,
             endpoint: str | None = None) -> Path:
    """Download `filename` of `repo` to dest_dir/filename and return that path, verified.

    An existing correct file is not downloaded again (huggingface_hub checks its etag). A file
    whose size or sha256 differs from the hub's is deleted, so it is never benchmarked.
    """
    ep = hub_endpoint(endpoint)
    info = remote_file_info(repo, filename, revision, ep)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / filename
    have = target.stat().st_size if target.is_file() else 0  # an outdated copy is deleted before the download
    need = max(0, int(info.size * (1 + DISK_MARGIN)) - have)
    check_free_space(need, shutil.disk_usage(dest_dir).free, f"{dest_dir} for {repo}/{filename}")

    with _user_errors(repo, filename, revision, ep):
        try:
            path = Path(hf_hub_download(repo, filename, revision=info.commit, local_dir=dest_dir, endpoint=ep))
        except (HfHubHTTPError, *NETWORK_ERRORS):
            raise
        except OSError as e:  # disk full, permission denied, truncated transfer ("Consistency check failed")
            raise UserError(f"download of {repo}/{filename} from {ep} to {dest_dir} failed: {_first_line(e)}") from e

    got_size = path.stat().st_size
    if got_size != info.size:
        path.unlink()
        raise UserError(f"downloaded {repo}/{filename} has the wrong size: expected {info.size} bytes, got {got_size}")
    if info.sha256 is not None and (got := sha256_file(path)) != info.sha256:
        path.unlink()
        raise UserError(f"downloaded {repo}/{filename} has the wrong sha256: expected {info.sha256}, got {got}")
    return path
