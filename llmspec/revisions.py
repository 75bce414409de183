"""Committed versions of result files, read straight from git: no checkout, no temporary worktree.

`llmspec compare HEAD~1:build/results ...` and the report's history section need files as they
were at earlier commits. Checking out a revision would touch the user's working tree (or cost a
worktree per revision); instead git lists the blobs (`git ls-tree -r`, or `git log --raw` for
every version a path had) and one `git cat-file --batch` process streams all their contents, so
the cost is a fixed handful of processes however many files and commits are read.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from llmspec.errors import UserError

NULL_SHA = "0" * 40


@dataclass(frozen=True)
class Commit:
    sha: str
    date: str  # committer date, ISO 8601
    subject: str
    changed: list[tuple[str, str]] = field(default_factory=list)  # (path from the repo root, blob sha)

    @property
    def short(self) -> str:
        return self.sha[:8]


def git(cwd: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """git in `cwd`, output as bytes; None of git's pager, colours or locale translation."""
    return subprocess.run(["git", "-c", "core.quotePath=false", "--no-pager", *args], cwd=cwd, input=stdin,
                          capture_output=True, env=_env(), check=False)


def _env() -> dict[str, str]:
    return {**os.environ, "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}


def toplevel(cwd: Path) -> Path | None:
    """The repository holding `cwd`, or None when it is in none (or git is missing)."""
    try:
        done = git(cwd, "rev-parse", "--show-toplevel")
    except (FileNotFoundError, NotADirectoryError):
        return None
    return Path(done.stdout.decode().strip()) if done.returncode == 0 else None


def describe(repo: Path, rev: str) -> Commit:
    """The commit `rev` names; a UserError naming it when there is none."""
    done = git(repo, "log", "-1", "--format=%H%x00%cI%x00%s", f"{rev}^{{commit}}", "--")
    if done.returncode != 0 or not done.stdout.strip():
        raise UserError(f"{rev}: no such revision in the git repository {repo} (try HEAD~1, a branch or a commit)")
    sha, date, subject = done.stdout.decode(errors="replace").strip().split("\0", 2)
    return Commit(sha, date, subject)


def tree_files(repo: Path, rev: str, path: str) -> list[tuple[str, str]]:
    """(path from the repo root, blob sha) of every file under `path` at `rev`."""
    done = git(repo, "ls-tree", "-r", "-z", "--full-tree", rev, "--", path.rstrip("/") or ".")
    if done.returncode != 0:
        raise UserError(f"{rev}:{path}: git could not list it ({_first_line(done.stderr)})")
    found = []
    for entry in done.stdout.decode(errors="replace").split("\0"):
        meta, _, name = entry.partition("\t")
        parts = meta.split()
        if len(parts) == 3 and parts[1] == "blob":
            found.append((name, parts[2]))
    return found


def read_blobs(repo: Path, shas: Iterable[str]) -> dict[str, bytes]:
    """The contents of every blob in `shas`, through one `git cat-file --batch`."""
    wanted = list(dict.fromkeys(shas))
    if not wanted:
        return {}
    done = git(repo, "cat-file", "--batch", stdin="".join(f"{s}\n" for s in wanted).encode())
    if done.returncode != 0:
        raise UserError(f"{repo}: git cat-file failed ({_first_line(done.stderr)})")
    out, at, found = done.stdout, 0, {}
    for sha in wanted:
        end = out.index(b"\n", at)
        header = out[at:end].split()
        at = end + 1
        if len(header) < 3 or header[1] == b"missing":
            continue
        size = int(header[2])
        found[sha] = out[at:at + size]
        at += size + 1  # the content is followed by a newline
    return found


def path_log(repo: Path, pathspecs: list[str], limit: int) -> list[Commit]:
    """The last `limit` commits touching `pathspecs` (newest first), each with the blobs it wrote
    there: one `git log --raw`. An empty list outside a repository or without such commits."""
    try:
        done = git(repo, "log", f"-n{limit}", "--no-renames", "--raw", "--no-abbrev", "--first-parent",
                   "--format=%x01%H%x00%cI%x00%s", "--", *pathspecs)
    except (FileNotFoundError, NotADirectoryError):
        return []
    if done.returncode != 0:
        return []
    commits = []
    for block in done.stdout.decode(errors="replace").split("\x01")[1:]:
        head, _, raw = block.partition("\n")
        sha, date, subject = (head.split("\0", 2) + ["", ""])[:3]
        changed = []
        for line in raw.splitlines():
            meta, _, name = line.partition("\t")
            parts = meta.split()
            if line.startswith(":") and len(parts) >= 5 and parts[3] != NULL_SHA:  # NULL: deleted
                changed.append((name, parts[3]))
        commits.append(Commit(sha, date, subject, changed))
    return commits


def head(cwd: Path) -> str:
    """The checked-out commit, or "" outside a repository: part of a report's signature, so a new
    commit re-renders the history section."""
    try:
        done = git(cwd, "rev-parse", "-q", "--verify", "HEAD")
    except (FileNotFoundError, NotADirectoryError):
        return ""
    return done.stdout.decode().strip() if done.returncode == 0 else ""


def _first_line(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    return lines[0].removeprefix("fatal: ") if lines else "no message"
