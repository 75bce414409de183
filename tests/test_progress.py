"""One long step's progress: plain periodic lines where the console is no terminal, a bar redrawn
with a carriage return where it is one (a real pseudo-terminal from the pty module), and a tool
followed by what it prints (llmspec.progress)."""

from __future__ import annotations

import io
import os
import pty
import re
import sys

from llmspec.progress import Progress, follow, last_match


class Clock:
    """Time that moves only when the test says so: which lines appear is then certain."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_not_a_terminal_gets_a_line_at_start_then_at_most_every_interval_and_at_the_end():
    clock, lines = Clock(), []
    with Progress("sustained generation", 1800, " s", lines.append, io.StringIO(), every_s=20, clock=clock) as bar:
        for t in (5, 15, 25, 30, 44, 46, 900):
            clock.now = 1000 + t
            bar.update(t, note=f"{t // 3} requests")
    assert lines == [
        "sustained generation: 0% (0/1800 s), 0:00 elapsed",
        "sustained generation: 1% (25/1800 s), 0:25 elapsed, about 29:35 left; 8 requests",
        "sustained generation: 3% (46/1800 s), 0:46 elapsed, about 29:14 left; 15 requests",
        "sustained generation: 50% (900/1800 s), 15:00 elapsed, about 15:00 left; 300 requests",
        "sustained generation: 50% (900/1800 s), 15:00 elapsed, done; 300 requests",
    ]


def test_a_step_without_a_total_says_how_long_it_has_run_and_how_it_ended():
    clock, lines = Clock(), []
    try:
        with Progress("llama-quantize x.gguf", say=lines.append, stream=io.StringIO(), clock=clock):
            clock.now += 65
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert lines == ["llama-quantize x.gguf, 0:00 elapsed", "llama-quantize x.gguf, 1:05 elapsed, stopped"]


def test_a_terminal_gets_one_bar_redrawn_in_place():
    leader, follower = pty.openpty()
    terminal = os.fdopen(follower, "w")
    clock, said = Clock(), []
    with Progress("reference logits", 8, " chunks", said.append, terminal, clock=clock) as bar:
        for k in range(1, 9):
            clock.now += 10
            bar.update(k)
    terminal.close()
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 1 << 16)
        except OSError:  # the terminal's other end is closed: everything is read
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    text = shown.decode()
    assert said == []  # nothing as separate lines
    assert text.count("\n") == 1 and text.endswith("\n")  # (the pty turns it into \r\n)
    frames = [f.strip() for f in text.split("\r") if f.strip()]
    assert frames[0].startswith("reference logits [------------------------] 0%  0:00 elapsed")
    assert "reference logits [######------------------] 25%  0:20 elapsed, about 1:00 left" in frames
    assert frames[-1] == "reference logits [########################] 100%  1:20 elapsed, done"


def test_a_tool_is_followed_by_what_it_prints(tmp_path):
    tool = tmp_path / "tool.py"
    tool.write_text("import sys, time\n"
                    "for k in range(1, 6):\n"
                    "    print(f'[{k:4d}/{5:4d}] blk.{k}.weight', flush=True)\n"
                    "    time.sleep(0.05)\n"
                    "print('oops', file=sys.stderr)\n"
                    "sys.exit(3)\n")
    lines = []
    with Progress("tool", say=lines.append, stream=io.StringIO(), every_s=0) as bar:
        code, out = follow([sys.executable, str(tool)], bar, last_match(re.compile(r"\[\s*(\d+)/\s*(\d+)\]")))
    assert code == 3 and out.splitlines()[-1] == "oops" and "[   5/   5]" in out
    assert bar.total == 5 and bar.done == 5
    assert lines[-1].startswith("tool: 100% (5/5), ") and lines[-1].endswith(", done")


def test_a_tool_past_its_time_is_killed(tmp_path):
    with Progress("sleeper", say=[].append, stream=io.StringIO()) as bar:
        code, _ = follow([sys.executable, "-c", "import time; time.sleep(60)"], bar, lambda text: None, timeout_s=0.5)
    assert code is None
