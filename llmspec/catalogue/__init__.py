"""Well-known GGUF models a user could download: repos, files per quant with sizes, the facts the
memory estimate needs, license and capabilities, each fact naming where it came from.

`llmspec suggest` ranks them for a host; `llmspec catalogue refresh` rebuilds the bundled snapshot
(`snapshot.json`) from the hub, reading GGUF headers with range requests instead of downloads.
"""
