"""The TOML spec: what to measure, on which models and quants, judged by which thresholds.

`schema` holds the pydantic models (the profiles' own settings and thresholds come from the
profile registry); `load` reads a file into them, turning every problem into one line.
"""

from llmspec.models.quants import KNOWN_QUANTS
from llmspec.spec.load import describe_validation_error, load_spec, project_root_of, spec_from_text
from llmspec.spec.schema import Endpoint, Limits, Model, PlannerSettings, Profiles, ServerSettings, Spec, Thresholds

__all__ = ["KNOWN_QUANTS", "Endpoint", "Limits", "Model", "PlannerSettings", "Profiles", "ServerSettings", "Spec",
           "Thresholds", "describe_validation_error", "load_spec", "project_root_of",
           "spec_from_text"]
