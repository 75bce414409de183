"""A Hugging Face dataset as the exchange of results between machines (`publish`, `pull`).

A dataset repository is versioned, access-controlled and already where teams keep data, so
llmspec keeps no server of its own. Its layout mirrors build/results/:
`<host>/<spec>/<model>/<quant>/<profile>.json`, plus `<host>/host.json` (the host card) and
`<host>/bandwidth.json`, and `<host>/loadtest/<NAME>.json` (`llmspec loadtest` outputs). Files are
compared by git blob id (what the hub's tree listing gives for each file), so a publish sends and a
pull fetches only what differs.
"""

from __future__ import annotations

import hashlib
import re
from contextlib import contextmanager
from dataclasses import dataclass

from llmspec.errors import UserError

ADDRESS = re.compile(r"hf://datasets/([A-Za-z0-9][\w.-]*)/([A-Za-z0-9][\w.-]*)/?")
HOST_DIR = re.compile(r"[A-Za-z0-9][\w.-]*")  # a host folder name that is safe to create here
CARD = "host.json"
BANDWIDTH = "bandwidth.json"
LOADTEST = "loadtest"  # <host>/loadtest/<NAME>.json: that host's `llmspec loadtest` outputs
PROBE_TIMEOUT_S = 10  # the one question whether the hub is there at all
AGAIN = "; nothing was {done}: check the network (or HF_ENDPOINT), then run the same command again"
PULLED = ".pulled.json"  # in a host folder: its results came from a pull (read-only, never measured here)


@dataclass(frozen=True)
class Dataset:
    repo: str  # ORG/NAME

    @property
    def address(self) -> str:
        return f"hf://datasets/{self.repo}"


def parse(address: str) -> Dataset:
    found = ADDRESS.fullmatch(address.strip())
    if found is None:
        raise UserError(f"{address!r}: give a dataset as hf://datasets/ORG/NAME (e.g. hf://datasets/me/bench)")
    return Dataset(f"{found[1]}/{found[2]}")


def is_loadtest(doc: object) -> bool:
    """The stress-test plan's document: meta, results and aggregate (llmspec.loadtest.build_document)."""
    return isinstance(doc, dict) and isinstance(doc.get("meta"), dict) and isinstance(doc.get("results"), list) \
        and isinstance(doc.get("aggregate"), dict)


def blob_id(data: bytes) -> str:
    """git's blob sha1, the `oid` the hub lists for a file kept in git."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def api():
    from huggingface_hub import HfApi

    from llmspec.models.hub import hub_endpoint

    return HfApi(endpoint=hub_endpoint())


def reachable(dataset: Dataset, doing: str = "list", after: str = "") -> None:
    """Ask the hub once, without huggingface_hub's retries (5, about 23 s of warnings when offline).

    Any HTTP answer, even an error status, means the hub is there; only a transport failure
    (no route, no name, a refused connection) is a UserError, in one line.
    """
    from huggingface_hub.utils import get_session

    from llmspec.models.hub import NETWORK_ERRORS, hub_endpoint

    try:
        get_session().get(f"{hub_endpoint()}/api/datasets/{dataset.repo}", timeout=PROBE_TIMEOUT_S)
    except NETWORK_ERRORS as e:
        first = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise UserError(f"{dataset.address}: cannot reach the hub at {hub_endpoint()} to {doing} "
                        f"(asked once: {first}){after}") from None


def remote_files(dataset: Dataset, after: str = "") -> dict[str, str] | None:
    """{path: blob id} of the dataset's files, or None when the dataset does not exist yet."""
    from huggingface_hub.errors import RepositoryNotFoundError

    reachable(dataset, "list", after)
    with hub_errors(dataset, "list", after):
        try:
            tree = api().list_repo_tree(dataset.repo, repo_type="dataset", recursive=True)
            return {f.path: f.blob_id for f in tree if hasattr(f, "blob_id") and hasattr(f, "size")}
        except RepositoryNotFoundError:
            return None


@contextmanager
def hub_errors(dataset: Dataset, doing: str, after: str = ""):
    """huggingface_hub's failures as one line: what failed, and what to do (`after`)."""
    from huggingface_hub.errors import HfHubHTTPError

    from llmspec.models.hub import NETWORK_ERRORS, hub_endpoint

    try:
        yield
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else "?"
        why = " (the token has no write access to it, or none is set)" if status in (401, 403) else ""
        raise UserError(f"{dataset.address}: {doing} failed: HTTP {status}{why}{after}") from None
    except NETWORK_ERRORS as e:
        first = next((line for line in str(e).splitlines() if line.strip()), type(e).__name__)
        raise UserError(f"{dataset.address}: cannot reach the hub at {hub_endpoint()} to {doing}: {first}{after}") \
            from None
