"""llama-perplexity: the reference logits, and each quant's KL divergence from them.

Two runs of llama.cpp's own tool (tools/perplexity), the community's standard for what a
quantization costs:

- `--kl-divergence-base FILE` on the reference quant: scores the text in `chunks` chunks of
  `ctx` tokens and writes the log-probabilities of every scored position (`write_logits`; the
  divergence profile's reference, built once and reused). This module knows the tool, not the plan.
- `--kl-divergence --kl-divergence-base FILE` on any quant of the same model: reads the
  reference's tokens and log-probabilities, runs the quant over the same tokens and prints the
  statistics this module parses: mean KLD (± its standard error), median and 99th percentile,
  the share of positions where both pick the same top token (±), the quant's perplexity and its
  ratio to the reference's (±).

Both write their full output to a log under build/logs/perplexity/ so a number can be checked
against what the tool printed.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from llmspec.errors import CellError
from llmspec.progress import Progress, follow, last_match
from llmspec.run.server import die_with_parent

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


def write_logits(model_path: Path, text: str, ctx: int, chunks: int, tool: Path, threads: int, target: Path,
                 log: Path, what: str, say) -> tuple[float, float]:
    """`--kl-divergence-base`: the log-probabilities of `what` (the reference, "<model> <quant>") over
    `text` into `target`, written beside it and renamed, so a killed run leaves no half file; the
    tool's (PPL, its ±)."""
    with tempfile.TemporaryDirectory(prefix="llmspec-divergence-") as tmp:
        text_file = Path(tmp) / "text.txt"
        text_file.write_text(text, encoding="utf-8")
        part = target.with_name(target.name + ".part")
        part.unlink(missing_ok=True)
        out = _run([str(tool), "-m", str(model_path), "-f", str(text_file), "-c", str(ctx), "--chunks",
                    str(chunks), "-t", str(threads), "--kl-divergence-base", str(part)],
                   log, Progress("reference logits", chunks, " chunks", say), REFERENCE_CHUNK)
    final = FINAL_PPL.search(out)
    if final is None or not part.is_file():
        part.unlink(missing_ok=True)
        raise CellError(f"llama-perplexity wrote no reference logits for {what}; output ended: "
                        f"{' | '.join(out.strip().splitlines()[-3:])}")
    os.replace(part, target)
    return float(final.group(1)), float(final.group(2))


def divergence(logits: Path, ctx: int, chunks: int, model_path: Path, tool: Path, threads: int, log: Path,
               say=print) -> Divergence:
    """`--kl-divergence` of the quant at `model_path` against the reference logits (the same chunks)."""
    out = _run([str(tool), "-m", str(model_path), "-c", str(ctx), "-t", str(threads),
                "--kl-divergence", "--kl-divergence-base", str(logits)], log,
               Progress("KL divergence", chunks, " chunks", say), DIVERGENCE_CHUNK)
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
