"""A toy profile in one module, to show what adding a profile takes: this file and one registration
(`LLMSPEC_PLUGINS=tests/toy_profile.py`, see llmspec/profiles/__init__.py). Nothing in llmspec/ names it.

"Echo": ask the server to repeat a word a few times and measure how long the first token takes,
with a 95 % interval of the median. It imports only llmspec.profiles.base and llmspec.stats, as
a profile module inside the package does.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from llmspec.errors import CellError
from llmspec.profiles.base import Case, Figure, Outcome, ProfileContext, ProfileKind, Rule, median
from llmspec.stats import median_interval


class EchoProfile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: int = Field(6, ge=1, description="measured requests")
    word: str = Field("llama", description="what the model is asked to repeat")
    max_tokens: int = Field(8, ge=1)


class EchoThresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_echo_ttft_s: float = Field(5.0, gt=0, description="time to the first token at most")


def run(ctx: ProfileContext) -> Outcome:
    s = ctx.settings
    records = []
    for i in range(s.requests):
        ctx.progress(f"echo {i + 1}/{s.requests}")
        record = ctx.client.chat(f"Repeat the word {s.word!r} five times.", prompt_name="echo",
                                 max_tokens=s.max_tokens, temperature=0)
        if record.error:
            raise CellError(f"echo {i + 1} failed: {record.error}")
        records.append(record)
    ttfts = [r.ttft_s for r in records]
    interval = median_interval(ttfts)
    return Outcome({"echo_ttft_s": median(ttfts), "echo_requests": len(records)},
                   [r.as_sample() for r in records], [], {"echo_ttft_s": interval} if interval else {})


KIND = ProfileKind(
    name="toy_echo",
    summary="a toy: time to the first token of a repeated word",
    version=1,
    settings=EchoProfile,
    thresholds=EchoThresholds,
    run=run,
    files=lambda s, root: ("prompt_files", []),
    metrics=("echo_ttft_s", "echo_requests"),
    rules=(Rule("echo_ttft_s", "max_echo_ttft_s", "max", critical=True),),
    headlines={"echo_ttft_s": "echo_ttft_s"},
    case=Case("Echoing a word", "echoing", ("echo_ttft_s",), (("echo_ttft_s", False),)),
    figures={"echo_ttft_s": Figure("{} s", "echo TTFT", "echo TTFT")},
)
