"""The measurement method's version, which every cell's fingerprint names (`llmspec.fingerprint`
holds the hashing itself, below the result file that stores it; it is re-exported here for
the planner's readers)."""

from __future__ import annotations

from llmspec.fingerprint import digest, explain_change, fill_missing_model

# Bump when the way a profile measures changes, so old results are re-measured. 2: every cell
# waits for a quiet machine and records the background; results without that evidence are redone.
MEASUREMENT_VERSION = 2

__all__ = ["MEASUREMENT_VERSION", "digest", "explain_change", "fill_missing_model"]
