"""One catalogue entry, validated strictly: a wrong fact here becomes a confident wrong suggestion.

Every entry says where each group of facts came from (`sources`): a GGUF header that was read
("gguf header: ..."), a page (an https:// address; "from the model card as ... recalled" marks a
fact written from memory of that page and not yet read from the file), or a computation ("computed: ...");
a file size that was computed rather than read carries `size_computed = true`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from llmspec.models.quants import check_quant
from llmspec.strict import Strict

SOURCE_KINDS = ("gguf header", "https://", "http://", "computed")  # http: a local hub mirror
FACT_GROUPS = ("architecture", "parameters", "license", "capabilities", "files")


def _check_source(value: str) -> str:
    if not value.startswith(SOURCE_KINDS):
        raise PydanticCustomError("source", "'{value}' names no source (start with 'gguf header', 'https://' or "
                                            "'computed')", {"value": value[:60]})
    return value


Source = Annotated[str, AfterValidator(_check_source)]
Quant = Annotated[str, AfterValidator(check_quant)]


class Architecture(Strict):
    """What the memory estimate reads (the same keys as a GGUF file's metadata in llmspec)."""

    architecture: str
    layers: int = Field(gt=0)
    heads: int = Field(gt=0)
    kv_heads: int = Field(gt=0)
    embedding_length: int = Field(gt=0)
    key_length: int | None = Field(None, gt=0)
    value_length: int | None = Field(None, gt=0)
    feed_forward_length: int | None = Field(None, gt=0)
    sliding_window: int | None = Field(None, gt=0)
    context_length: int = Field(gt=0)
    vocab_size: int = Field(gt=0)
    # the output matrix's elements (0: tied to the embedding table), read from a header by `refresh`;
    # unknown in entries written by hand, where an untied output counts as prompt work (`plan.prediction`)
    output_parameters: int | None = Field(None, ge=0)


class Capabilities(Strict):
    chat_template: bool
    tools: bool  # the chat template declares tools
    reasoning: bool  # thinks before it answers
    vision: bool  # a vision projector (mmproj) exists for it


class ModelFile(Strict):
    file: str = Field(min_length=1)
    size: int = Field(gt=0)
    size_computed: bool = False  # parameters x bits per weight, not read from the hub


class Entry(Strict):
    name: str = Field(min_length=1)
    family: str = Field(min_length=1)
    parameters: int = Field(gt=0)
    license: str = Field(min_length=1)
    repo: str = Field(pattern=r"^[\w.-]+/[\w.-]+$")
    capabilities: Capabilities
    architecture: Architecture
    files: dict[Quant, ModelFile] = Field(min_length=1)
    sources: dict[str, Source]

    @model_validator(mode="after")
    def _every_fact_sourced(self) -> Entry:
        missing = [g for g in FACT_GROUPS if g not in self.sources]
        if missing:
            raise PydanticCustomError("unsourced", "sources: no source for {m} (each of {all} needs one)",
                                      {"m": ", ".join(missing), "all": ", ".join(FACT_GROUPS)})
        return self

    @property
    def meta(self) -> dict:
        """The facts in the shape llmspec keeps a GGUF file's metadata in (`models.identity`)."""
        return {**self.architecture.model_dump(), "parameters": self.parameters,
                "has_chat_template": self.capabilities.chat_template}


class Catalogue(Strict):
    about: str
    models: list[Entry]
