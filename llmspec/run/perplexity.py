"""llama-perplexity: the reference logits, and each quant's KL divergence from them.

Two runs of llama.cpp's own tool (tools/perplexity), the community's standard for what a
quantization costs:

- `--kl-divergence-base FILE` on the reference quant: scores the text in `chunks` chunks of
  `ctx` tokens and writes the log-probabilities of every scored position (see
  `llmspec.plan.reference`). Built once per reference and reused.
- `--kl-divergence --kl-divergence-base FILE` on any quant of the same model: reads the
  reference's tokens and log-probabilities, runs the quant over the same tokens and prints the
  statistics this module parses: mean KLD (± its standard error), median and 99th percentile,
  the share of positions where both pick the same top token (±), the quant's perplexity and its
  ratio to the reference's (±).

Both write their full output to a log under build/logs/perplexity/ so a number can be checked
against what the tool printed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from llmspec.errors import CellError, SkipCell
from llmspec.plan.fingerprint import digest
from llmspec.progress import Progress, follow, last_match
from llmspec.run.server import die_with_parent

if TYPE_CHECKING:  # types only: the profile that runs this module is imported by the planner
    from llmspec.plan.reference import Reference

GB = 1e9
TIMEOUT_S = 3600.0
NUMBER = r"([-+]?(?:\d+(?:\.\d+)?(?:[eE][-+]?\d+)?|nan|inf))"  # "-nan": the tool's ± of a self-comparison
PM = rf"{NUMBER}\s*±\s*{NUMBER}"
# Lines of the tool's final summary -> (our name, has an uncertainty)
SUMMARY = {
    "ppl": (rf"^Mean PPL\(Q\)\s*:\s*{PM}", True),
    "reference_ppl": (rf"^Mean PPL\(base\)\s*:\s*{PM}", True),
    "ppl_ratio": (rf"^Mean PPL\(Q\)/PPL\(base\)\s*:\s*{PM}", True),
    "kld_mean": (rf"^Mean\s+KLD:\s*{PM}", True),
    "kld_max": (rf"^Maximum KLD:\s*{NUMBER}", False),
    "kld_p99": (rf"^99\.0%\s+KLD:\s*{NUMBER}", False),
    "kld_median": (rf"^Median\s+KLD:\s*{NUMBER}", False),
    "same_top_pct": (rf"^Same top p:\s*{PM}\s*%", True),
    "delta_p_rms_pct": (rf"^RMS Δp\s*:\s*{PM}\s*%", True),
}
# How far the tool is: "[3]18.8254," per reference chunk; "   3      18.8254 ±    2.3038 ..." per compared chunk.
REFERENCE_CHUNK = re.compile(r"\[(\d+)\]\d")
DIVERGENCE_CHUNK = re.compile(r"^[ \t]*(\d+)[ \t]+[-+\d.naif]+\s+±", re.MULTILINE)
FINAL_PPL = re.compile(rf"Final estimate: PPL = {NUMBER} \+/- {NUMBER}")


@dataclass(frozen=True)
class Divergence:
    """What `--kl-divergence` printed: each figure, and its standard error where the tool gives one."""

    values: dict[str, float]
    errors: dict[str, float]  # one standard error (the tool's ±)
    scored: int  # positions compared


def parse_divergence(text: str) -> Divergence:
    """The tool's summary block; a missing figure means the run did not finish (an error)."""
    values, errors = {}, {}
    for name, (pattern, with_error) in SUMMARY.items():
        found = re.search(pattern, text, re.MULTILINE)
        if found is None:
            raise CellError(f"llama-perplexity printed no {name} (see its log); output ended: "
                            f"{' | '.join(text.strip().splitlines()[-3:])}")
        values[name] = float(found.group(1))
        if with_error:
            errors[name] = float(found.group(2))
    chunks = re.findall(r"^\s*(\d+)\s+\d", text, re.MULTILINE)
    return Divergence(values, errors, int(chunks[-1]) if chunks else 0)


def ensure_reference(ref: Reference, model_path: Path, vocab: int | None, tool: Path, threads: int,
                     identity: dict | None, version: str | None, min_free_gb: float, logs: Path, text: str,
                     say) -> dict:
    """The reference logits' facts (building them first when missing or stale). Too little disk
    for them is a skip with the figures, decided before anything is written."""
    fresh, why = ref.state(identity, version)
    if fresh:
        return ref.stored()
    if not vocab:
        raise CellError(f"{model_path.name}: the GGUF file names no vocabulary size, so the reference logits "
                        "cannot be sized")
    needed = ref.size_bytes(vocab)
    ref.path.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(ref.path.parent).free + (ref.path.stat().st_size if ref.path.exists() else 0)
    if needed + min_free_gb * GB > free:
        raise SkipCell(f"the reference logits of {ref.model} {ref.quant} need about {needed / GB:.2f} GB "
                       f"({ref.scored_tokens:,} scored tokens x {vocab:,}-token vocabulary x 2 bytes) and "
                       f"{ref.path.parent} has {free / GB:.2f} GB free, {min_free_gb:g} GB of which must stay free "
                       "(limits.min_free_disk_gb): free disk space or lower profiles.divergence.chunks",
                       evidence="disk space")
    say(f"reference logits: {ref.model} {ref.quant}, {ref.chunks} chunks of {ref.ctx} tokens, "
        f"about {needed / GB:.2f} GB ({why})")
    with tempfile.TemporaryDirectory(prefix="llmspec-divergence-") as tmp:
        text_file = Path(tmp) / "text.txt"
        text_file.write_text(text, encoding="utf-8")
        part = ref.path.with_name(ref.path.name + ".part")
        part.unlink(missing_ok=True)
        out = _run([str(tool), "-m", str(model_path), "-f", str(text_file), "-c", str(ref.ctx), "--chunks",
                    str(ref.chunks), "-t", str(threads), "--kl-divergence-base", str(part)],
                   logs / f"{ref.spec}-{ref.model}@{ref.quant}-reference.log",
                   Progress("reference logits", ref.chunks, " chunks", say), REFERENCE_CHUNK)
    final = FINAL_PPL.search(out)
    if final is None or not part.is_file():
        part.unlink(missing_ok=True)
        raise CellError(f"llama-perplexity wrote no reference logits for {ref.model} {ref.quant}; output ended: "
                        f"{' | '.join(out.strip().splitlines()[-3:])}")
    os.replace(part, ref.path)
    facts = {"fingerprint": digest(ref.inputs(identity, version)), "inputs": ref.inputs(identity, version),
             "bytes": ref.path.stat().st_size, "ppl": float(final.group(1)), "ppl_error": float(final.group(2)),
             "scored_tokens": ref.scored_tokens, "vocab_size": vocab}
    ref.meta_path.write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
    return facts


def divergence(ref: Reference, model_path: Path, tool: Path, threads: int, log: Path, say=print) -> Divergence:
    """`--kl-divergence` of the quant at `model_path` against the reference logits (the same chunks)."""
    out = _run([str(tool), "-m", str(model_path), "-c", str(ref.ctx), "-t", str(threads),
                "--kl-divergence", "--kl-divergence-base", str(ref.path)], log,
               Progress("KL divergence", ref.chunks, " chunks", say), DIVERGENCE_CHUNK)
    return parse_divergence(out)


def _run(cmd: list[str], log: Path, bar: Progress, chunk: re.Pattern[str]) -> str:
    """The tool's output (stdout and stderr, as it interleaves them), kept in `log`, its chunks counted
    on `bar` as it prints them; a failure is the cell's error."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with bar:
        code, out = follow(cmd, bar, last_match(chunk), TIMEOUT_S, preexec_fn=die_with_parent)
    if code is None:
        raise CellError(f"llama-perplexity took over {TIMEOUT_S:.0f} s: {' '.join(cmd)}")
    log.write_text(f"$ {' '.join(cmd)}\n{out}", encoding="utf-8")
    if code != 0:
        raise CellError(f"llama-perplexity exited with code {code} (log: {log}); output ended: "
                        f"{' | '.join(out.strip().splitlines()[-3:])}")
    return out
