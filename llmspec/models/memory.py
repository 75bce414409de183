"""How much memory a model file needs once an engine has loaded it: weights, the KV cache at the
configured context, the compute buffers and the engine's own runtime. The planner's pre-flight,
`llmspec init`, `llmspec suggest` and every engine's estimate (`llmspec.engines`) use this one
formula; an engine brings its own runtime overhead and cache types.

The terms follow what llama.cpp allocates (its `-v` log prints each buffer), checked against the
peak RSS of every demo configuration (tests/fixtures/memory_peaks.json, within 5 %):
- weights: the file, mapped; on x86 llama.cpp also copies some quant types into a repacked
  layout (CPU_REPACK) while the mapped pages stay resident, so those count twice in part;
- KV cache: per layer K and V heads x head size x cached tokens (context padded to 256); a
  sliding-window layer (gemma-3: 5 of every 6) caches only its window plus one micro-batch;
- compute buffers: a 512-token micro-batch's activations (3 x FFN + 5 x embedding floats per
  token, as the logged "CPU compute buffer size" grows) plus the attention mask (context x 512 x 2);
- runtime: the binary, the HTTP server and the vocabulary's strings and maps (~160 bytes a token).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OVERHEAD_BYTES = 24 * 2**20  # llama-server's binary, heap and HTTP server beside the buffers below
GB = 2**30
UBATCH = 512  # llama.cpp's default micro-batch: the compute buffers are sized for it
VOCAB_BYTES = 160  # per vocabulary entry: the token's string, score and the lookup maps
CTX_BYTES = 512  # per context token beside the KV cache (per-slot bookkeeping; fitted on the demo)
PAD = 256  # llama.cpp pads the KV cache to this many tokens
# Bytes per cached element of llama.cpp's KV cache types (block size and scale included: q8_0
# stores 32 values in 34 bytes).
KV_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32, "q4_1": 20 / 32,
            "iq4_nl": 18 / 32, "q5_0": 22 / 32, "q5_1": 24 / 32}
# Sliding-window attention as llama.cpp lays it out per architecture: every Nth layer attends to the
# whole context, the others to `attention.sliding_window` tokens (llama.cpp src/llama-model.cpp,
# `hparams.set_swa_pattern`). Architectures not named here are counted at the full context.
SWA_PATTERN = {"gemma2": 2, "gemma3": 6, "cohere2": 4, "gpt-oss": 2}
# Share of the weights that x86 llama.cpp keeps twice (mapped file + repacked copy), by file type.
# Measured on the demo: SmolLM2's Q2_K (whose 576-wide rows fall back to repacked IQ4_NL) about half,
# gemma-3's Q4_K_M a few percent (only some tensors are Q4_K); Q8_0 and Q4_1 none.
REPACKED_SHARE = {"Q2_K": 0.5, "Q4_0": 0.5, "IQ4_NL": 0.5, "Q4_K_M": 0.06, "Q4_K_S": 0.06}


@dataclass(frozen=True)
class Estimate:
    total_gb: float
    detail: str
    weights_bytes: float = 0.0
    kv_bytes: float = 0.0
    compute_bytes: float = 0.0


def _pad(tokens: int) -> int:
    return -(-tokens // PAD) * PAD


def kv_cache_bytes(meta: dict[str, Any] | None, ctx_size: int,
                   cache_types: tuple[str | None, str | None] = (None, None)) -> float:
    """K and V of every layer at `ctx_size` tokens, sliding-window layers at their window."""
    if not meta or not all(meta.get(k) for k in ("layers", "heads", "embedding_length")):
        return 0.0
    k_bytes, v_bytes = (KV_BYTES.get(t or "f16", 2.0) for t in cache_types)
    head_dim = meta["embedding_length"] / meta["heads"]  # unless the file says (gemma-3: 256, not 160)
    k_dim, v_dim = meta.get("key_length") or head_dim, meta.get("value_length") or head_dim
    per_token = (meta.get("kv_heads") or meta["heads"]) * (k_dim * k_bytes + v_dim * v_bytes)
    layers, full = meta["layers"], _pad(ctx_size)
    every, window = SWA_PATTERN.get(meta.get("architecture") or ""), meta.get("sliding_window")
    if not every or not window:
        return layers * full * per_token
    dense = layers // every
    return per_token * (dense * full + (layers - dense) * min(full, _pad(window + UBATCH)))


def compute_bytes(meta: dict[str, Any] | None, ctx_size: int) -> float:
    """The compute buffers for one micro-batch, the vocabulary and the per-token bookkeeping."""
    meta = meta or {}
    emb = meta.get("embedding_length") or 0
    ffn = meta.get("feed_forward_length") or 4 * emb
    return (UBATCH * 4 * (3 * ffn + 5 * emb) + _pad(ctx_size) * UBATCH * 2 + ctx_size * CTX_BYTES
            + (meta.get("vocab_size") or 0) * VOCAB_BYTES)


def estimate_memory(size_bytes: int, meta: dict[str, Any] | None, ctx_size: int,
                    cache_types: tuple[str | None, str | None] = (None, None),
                    overhead_bytes: float = OVERHEAD_BYTES) -> Estimate:
    """Weights plus the KV cache at the configured context (f16 unless `cache_types` says what K and
    V are stored as) plus compute buffers and runtime, never below size x 1.2."""
    weights = size_bytes * (1 + REPACKED_SHARE.get((meta or {}).get("file_type") or "", 0.0))
    kv = kv_cache_bytes(meta, ctx_size, cache_types)
    extra = compute_bytes(meta, ctx_size) + overhead_bytes
    total = max(weights + kv + extra, size_bytes * 1.2)
    kinds = "" if cache_types == (None, None) else f" ({cache_types[0] or 'f16'}/{cache_types[1] or 'f16'})"
    detail = (f"weights {weights / GB:.2f} GB + KV cache {kv / GB:.2f} GB{kinds} at {ctx_size} tokens"
              f" + compute buffers and runtime {extra / GB:.2f} GB")
    return Estimate(total / GB, detail, size_bytes, kv, extra)
