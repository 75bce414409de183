"""How much memory a model file needs once an engine has loaded it: weights, the KV cache at the
configured context, and the engine's own overhead. The planner's pre-flight and every engine's
estimate (`llmspec.engines`) use this one formula; an engine brings its own overhead and cache types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OVERHEAD_BYTES = 150e6  # llama-server's compute buffers and runtime, on top of weights and KV
GB = 2**30
# Bytes per cached element of llama.cpp's KV cache types (block size and scale included: q8_0
# stores 32 values in 34 bytes).
KV_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32, "q4_1": 20 / 32,
            "iq4_nl": 18 / 32, "q5_0": 22 / 32, "q5_1": 24 / 32}


@dataclass(frozen=True)
class Estimate:
    total_gb: float
    detail: str
    weights_bytes: float = 0.0
    kv_bytes: float = 0.0


def estimate_memory(size_bytes: int, meta: dict[str, Any] | None, ctx_size: int,
                    cache_types: tuple[str | None, str | None] = (None, None),
                    overhead_bytes: float = OVERHEAD_BYTES) -> Estimate:
    """Weights plus the KV cache at the configured context (f16 unless `cache_types` says what K and
    V are stored as) plus overhead, never below size x 1.2."""
    kv = 0.0
    k_bytes, v_bytes = (KV_BYTES.get(t or "f16", 2.0) for t in cache_types)
    if meta and all(meta.get(k) for k in ("layers", "heads", "embedding_length")):
        head_dim = meta["embedding_length"] / meta["heads"]  # unless the file says (gemma-3: 256, not 160)
        k_dim, v_dim = meta.get("key_length") or head_dim, meta.get("value_length") or head_dim
        kv = meta["layers"] * ctx_size * (meta.get("kv_heads") or meta["heads"]) * (k_dim * k_bytes + v_dim * v_bytes)
    total = max(size_bytes + kv + overhead_bytes, size_bytes * 1.2)
    kinds = "" if cache_types == (None, None) else f" ({cache_types[0] or 'f16'}/{cache_types[1] or 'f16'})"
    detail = f"weights {size_bytes / GB:.2f} GB + KV cache {kv / GB:.2f} GB{kinds} at {ctx_size} tokens + overhead"
    return Estimate(total / GB, detail, size_bytes, kv)
