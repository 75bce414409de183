"""What a cell measures: a model file llmspec serves itself, or a server it does not manage.

Each kind knows what of it goes into a fingerprint, what a result records about it, and (for an
endpoint) how to reach it, so nothing else in the project branches on which kind a cell has.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmspec.engines import DEFAULT, argv, engine_named
from llmspec.engines.base import ServerArgs
from llmspec.errors import UserError
from llmspec.models.files import ModelFile, identity, metadata_or_none
from llmspec.spec import Endpoint, ServerSettings

if TYPE_CHECKING:
    from llmspec.run.client import ChatClient


@dataclass(frozen=True)
class LocalModel:
    """A (model, quant) file served by an engine that llmspec starts and stops (llama-server by default)."""

    file: ModelFile
    managed = True

    def measured_pids(self) -> set[int]:
        """Processes that are part of the measurement besides llmspec's own (its server is its child)."""
        return set()

    def identity_now(self) -> dict[str, Any] | None:
        """Name, size and sha256 of the file if it is on disk; None lets a committed result vouch for it."""
        return identity(self.file.path) if os.path.exists(self.file.path) else None

    def fingerprint_parts(self, model_identity: dict | None, version: str | None, args: ServerArgs) -> dict:
        """The engine's name joins the server part only when it is not llama-server, so results
        measured before engines existed keep their fingerprints."""
        server = {"version": version, "args": list(argv(args))}
        if args.engine != DEFAULT:
            server["engine"] = args.engine
        return {"model": model_identity, "source": self.file.source, "server": server}

    def server_block(self, version: str | None, args: ServerArgs) -> dict[str, Any]:
        found = engine_named(args.engine)
        return {"binary": found.program, "engine": found.name, "version": version, "args": list(argv(args))}

    def metadata_now(self) -> dict[str, Any] | None:
        return metadata_or_none(self.file.path)

    def provenance(self, model_identity: dict | None, metadata: dict | None) -> dict[str, Any] | None:
        """The result's `model_file`: identity, quant, where it came from and its GGUF metadata."""
        if model_identity is None:
            return None
        return {**model_identity, "quant": self.file.quant, "source": self.file.kind, "metadata": metadata}

    def unapplied(self, server: ServerSettings) -> list[str]:
        """Every [server] setting reaches the server llmspec starts."""
        return []


@dataclass(frozen=True)
class EndpointTarget:
    """An OpenAI-compatible server llmspec does not manage (vLLM, Ollama, another machine)."""

    endpoint: Endpoint
    managed = False

    @property
    def _remote(self) -> dict[str, str]:
        return {"kind": "endpoint", "url": self.endpoint.url, "model": self.endpoint.model}

    def measured_pids(self) -> set[int]:
        """An endpoint on this machine is the server under test: its CPU is not background."""
        from urllib.parse import urlsplit

        from llmspec.machine.activity import listening_pids

        url = urlsplit(self.endpoint.url)
        loopback = url.hostname in ("127.0.0.1", "localhost", "::1")
        return listening_pids(url.port or (443 if url.scheme == "https" else 80)) if loopback else set()

    def identity_now(self) -> dict[str, Any] | None:
        return None

    def fingerprint_parts(self, model_identity: dict | None, version: str | None, args: ServerArgs) -> dict:
        return {"model": self._remote, "source": self._remote, "server": {"version": None, "args": []}}

    def server_block(self, version: str | None, args: ServerArgs) -> dict[str, Any]:
        return {"endpoint": self.endpoint.url, "model": self.endpoint.model}

    def metadata_now(self) -> None:
        return None

    def provenance(self, model_identity: dict | None, metadata: dict | None) -> None:
        return None

    def unapplied(self, server: ServerSettings) -> list[str]:
        """[server] settings that change what a model answers but cannot reach a server llmspec did not
        start, said in the plan and in each result rather than silently dropped. The budget is not sent
        per request: llama-server would read one from a request's body, but an endpoint may be any
        server, and one that refuses unknown fields would fail every cell."""
        budgets = [server.reasoning_budget] if server.reasoning_budget is not None else []
        if server.sweep is not None and server.sweep.reasoning_budget is not None:
            budgets += [b for b in server.sweep.reasoning_budget if b not in budgets]
        if not budgets:
            return []
        return [f"reasoning_budget {', '.join(map(str, budgets))} not applied: the endpoint's server was not started "
                f"by llmspec; set it on that server"]

    def api_key(self) -> str | None:
        """Read from the environment at run time; never written to any file."""
        name = self.endpoint.api_key_env
        key = os.environ.get(name) if name else None
        if name and not key:
            raise UserError(f"endpoints: {self.endpoint.name}: environment variable {name} is not set")
        return key

    def client(self, timeout_s: float, api_key: str | None) -> ChatClient:
        from llmspec.run.client import ChatClient

        return ChatClient(self.endpoint.url, model=self.endpoint.model, api_key=api_key, timeout_s=timeout_s,
                          deadline_s=timeout_s)


Target = LocalModel | EndpointTarget
