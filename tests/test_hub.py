"""llmspec.models.hub against a real local HTTP server that imitates the hub (tests/fakehub.py).

Everything below runs huggingface_hub's real download code over real sockets; nothing in
llmspec is patched.
"""

import hashlib
import socket

import pytest
from fakehub import COMMIT, FakeFile, FakeHub
from huggingface_hub import constants

from llmspec.errors import UserError
from llmspec.models.hub import check_free_space, download, remote_file_info

REPO = "org/tiny-GGUF"
NAME = "tiny-Q4_K_M.gguf"
DATA = bytes(range(256)) * 4096 + b"tail"  # ~1 MB, not a multiple of any chunk size


@pytest.fixture(autouse=True)
def isolated_hf_home(tmp_path, monkeypatch):
    """Keep huggingface_hub away from ~/.cache and any real token.

    Its settings are read from the environment once, at import, so the module constants are set
    too: the environment alone would only work if this ran before the first import.
    """
    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    for name, value in {
        "HF_HOME": str(home),
        "HF_HUB_CACHE": str(home / "hub"),
        "HF_TOKEN_PATH": str(home / "token"),
        "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
        "HF_HUB_DISABLE_TELEMETRY": True,
    }.items():
        monkeypatch.setattr(constants, name, value)


def test_download_lands_at_dest_with_identical_bytes(tmp_path):
    with FakeHub({(REPO, NAME): DATA}) as hub:
        path = download(REPO, NAME, tmp_path / "models", endpoint=hub.endpoint)
    assert path == (tmp_path / "models" / NAME).resolve()
    assert path.read_bytes() == DATA


def test_second_download_reuses_the_verified_file(tmp_path):
    with FakeHub({(REPO, NAME): DATA}) as hub:
        first = download(REPO, NAME, tmp_path, endpoint=hub.endpoint)
        gets_before = sum(m == "GET" for m, _ in hub.requests)
        second = download(REPO, NAME, tmp_path, endpoint=hub.endpoint)
        assert sum(m == "GET" for m, _ in hub.requests) == gets_before
    assert first == second and second.read_bytes() == DATA


def test_endpoint_comes_from_hf_endpoint_at_call_time(tmp_path, monkeypatch):
    with FakeHub({(REPO, NAME): DATA}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        assert download(REPO, NAME, tmp_path).read_bytes() == DATA
        assert hub.requests, "the request went to HF_ENDPOINT"


def test_remote_file_info_gives_size_sha256_and_commit():
    with FakeHub({(REPO, NAME): DATA, (REPO, "README.md"): FakeFile(b"# hi\n", lfs=False)}) as hub:
        info = remote_file_info(REPO, NAME, endpoint=hub.endpoint)
        readme = remote_file_info(REPO, "README.md", endpoint=hub.endpoint)
    assert info.size == len(DATA)
    assert info.sha256 == hashlib.sha256(DATA).hexdigest()
    assert info.commit == COMMIT
    assert readme.size == 5 and readme.sha256 is None  # git-stored: the ETag is a sha1, not a sha256


def test_corrupted_download_is_rejected_and_deleted(tmp_path):
    corrupted = bytes([DATA[0] ^ 1]) + DATA[1:]
    with FakeHub({(REPO, NAME): FakeFile(DATA, served=corrupted)}) as hub:
        with pytest.raises(UserError, match="sha256") as e:
            download(REPO, NAME, tmp_path, endpoint=hub.endpoint)
    assert hashlib.sha256(DATA).hexdigest() in str(e.value)
    assert hashlib.sha256(corrupted).hexdigest() in str(e.value)
    assert not (tmp_path / NAME).exists()


def test_truncated_download_is_a_user_error_and_leaves_no_file(tmp_path):
    with FakeHub({(REPO, NAME): FakeFile(DATA, served=DATA[:1000])}) as hub:
        with pytest.raises(UserError, match=NAME):
            download(REPO, NAME, tmp_path, endpoint=hub.endpoint)
    assert not (tmp_path / NAME).exists()


def test_unknown_repo_names_the_repo(tmp_path):
    with FakeHub({(REPO, NAME): DATA}) as hub:
        with pytest.raises(UserError, match="org/no-such-repo") as e:
            download("org/no-such-repo", NAME, tmp_path, endpoint=hub.endpoint)
    assert hub.endpoint in str(e.value) and "\n" not in str(e.value)


def test_unknown_file_names_the_file_and_repo(tmp_path):
    with FakeHub({(REPO, NAME): DATA}) as hub:
        with pytest.raises(UserError, match="no-such-Q9.gguf") as e:
            download(REPO, "no-such-Q9.gguf", tmp_path, endpoint=hub.endpoint)
    assert REPO in str(e.value) and "\n" not in str(e.value)


def test_unknown_revision_names_it(tmp_path):
    with FakeHub({(REPO, NAME): DATA}) as hub:
        with pytest.raises(UserError, match="v9-nope"):
            download(REPO, NAME, tmp_path, revision="v9-nope", endpoint=hub.endpoint)


def test_unreachable_endpoint_is_a_user_error(tmp_path):
    with socket.socket() as s:  # a port that was free a moment ago and has nothing listening now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.raises(UserError, match="cannot reach") as e:
        download(REPO, NAME, tmp_path, endpoint=endpoint)
    assert endpoint in str(e.value) and NAME in str(e.value) and "\n" not in str(e.value)


def test_check_free_space():
    check_free_space(100, 100, "/x")
    with pytest.raises(UserError, match=r"not enough free disk in /models: need 2.00 GB, have 1.00 GB"):
        check_free_space(2_000_000_000, 1_000_000_000, "/models")


def test_download_too_big_for_the_disk_is_refused_before_any_transfer(tmp_path):
    petabyte = 10**15
    with FakeHub({(REPO, NAME): FakeFile(DATA, size=petabyte)}) as hub:
        with pytest.raises(UserError, match=f"not enough free disk in {tmp_path} for {REPO}/{NAME}"):
            download(REPO, NAME, tmp_path, endpoint=hub.endpoint)
        assert [m for m, _ in hub.requests] == ["HEAD"]
    assert not (tmp_path / NAME).exists()
