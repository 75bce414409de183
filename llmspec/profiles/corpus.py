"""The files a coding-assistant session reads, handed out in pieces of a given token size, the way
an agent's `read_file` tool results arrive (profiles/session.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from llmspec.profiles.long_context import cut_to_tokens


class Corpus:
    """The files, read one after another (again from the first when all are read), in pieces."""

    def __init__(self, files: list[Path], start: int = 0):
        self.texts = [(repo_path(f), f.read_text(encoding="utf-8")) for f in files]
        self.index, self.pos = start % len(self.texts), 0

    def take(self, tokens: int, count: Callable[[str], int]) -> str:
        """The next piece of at most `tokens` tokens, as `read_file` results (more than one file if needed)."""
        parts = []
        while tokens > 0:
            path, text = self.texts[self.index]
            head = f"[read_file for '{path}'] Result:\n"
            window = text[self.pos:self.pos + tokens * 8]  # a token is never 8 characters: enough to cut from
            budget = tokens - count(head)
            if budget <= 0:
                break
            piece, n = cut_to_tokens(window, budget, count)
            if not piece:
                break
            parts.append(head + piece)
            tokens -= count(head + piece) + 1
            self.pos += len(piece)
            if self.pos >= len(text):
                self.index, self.pos = (self.index + 1) % len(self.texts), 0
        return "\n\n".join(parts)


def repo_path(file: Path) -> str:
    """`01-llmspec-stats.py.txt` -> `llmspec/stats.py`: the path the session says it read."""
    name = file.name.removesuffix(".txt").split("-", 1)[-1]
    stem, dot, ext = name.rpartition(".")
    return stem.replace("-", "/") + dot + ext if dot else name.replace("-", "/")
