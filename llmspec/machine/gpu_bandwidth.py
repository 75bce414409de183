"""A GPU's memory bandwidth by its name, from the makers' published specifications.

Decoding one token reads every weight on the GPU once, so the bandwidth bounds a GPU's tokens/s as
it bounds a CPU's (`plan.prediction`). This host's CPU bandwidth is measured (`machine.bandwidth`);
a GPU's is looked up, since measuring it would need a GPU library llmspec does not depend on.
nvidia-smi cannot stand in: its `clocks.mem` is the current clock (405 MHz on an idle card, see
tests/fixtures/nvidia-smi) and no `--query-gpu` field gives the memory bus width, so clock x width
is not available from it. A GPU not in the table gets no speed prediction, and says so.

Figures are the peak bandwidth the maker lists (GB/s, 1e9 bytes). Each row names its source; rows
marked "recalled" were written from memory of that page and are unchecked until someone reads it.
"""

from __future__ import annotations

import re

NVIDIA_30 = "https://www.nvidia.com/en-us/geforce/graphics-cards/30-series/"
NVIDIA_40 = "https://www.nvidia.com/en-us/geforce/graphics-cards/40-series/"
NVIDIA_50 = "https://www.nvidia.com/en-us/geforce/graphics-cards/50-series/"
NVIDIA_DC = "https://www.nvidia.com/en-us/data-center/"
RECALLED = " (recalled; unchecked)"

# (name pattern matched against nvidia-smi's name, GB/s, source). More specific names first.
KNOWN: tuple[tuple[str, float, str], ...] = (
    (r"RTX 3060 Ti", 448, NVIDIA_30 + "rtx-3060-3060ti/" + RECALLED),
    (r"RTX 3060\b", 360, "https://pcpartdb.com/gpus/view/nvidia-geforce-rtx-3060-12-gb-ga104 (12 GB GDDR6, "
                         "1875 MHz x 192 bit = 360 GB/s)"),
    (r"RTX 3070 Ti", 608, NVIDIA_30 + "rtx-3070-3070ti/" + RECALLED),
    (r"RTX 3070\b", 448, NVIDIA_30 + "rtx-3070-3070ti/" + RECALLED),
    (r"RTX 3080 Ti", 912, NVIDIA_30 + "rtx-3080/" + RECALLED),
    (r"RTX 3080\b", 760, NVIDIA_30 + "rtx-3080/ (10 GB)" + RECALLED),
    (r"RTX 3090 Ti", 1008, NVIDIA_30 + "rtx-3090-3090ti/" + RECALLED),
    (r"RTX 3090\b", 936, NVIDIA_30 + "rtx-3090-3090ti/" + RECALLED),
    (r"RTX 4060 Ti", 288, NVIDIA_40 + "rtx-4060-4060ti/" + RECALLED),
    (r"RTX 4060\b", 272, NVIDIA_40 + "rtx-4060-4060ti/" + RECALLED),
    (r"RTX 4070", 504, NVIDIA_40 + "rtx-4070-family/ (4070, 4070 Ti)" + RECALLED),
    (r"RTX 4080", 717, NVIDIA_40 + "rtx-4080-family/ (4080: 716.8)" + RECALLED),
    (r"RTX 4090", 1008, NVIDIA_40 + "rtx-4090/" + RECALLED),
    (r"RTX 5090", 1792, NVIDIA_50 + "rtx-5090/" + RECALLED),
    (r"RTX 5080", 960, NVIDIA_50 + "rtx-5080/" + RECALLED),
    (r"GTX 1080 Ti", 484, "https://www.nvidia.com/en-gb/geforce/graphics-cards/geforce-gtx-1080-ti/specifications/"
                          + RECALLED),
    (r"GTX 1060 6GB", 192, "https://www.nvidia.com/en-gb/geforce/10-series/ (GTX 1060 6 GB)" + RECALLED),
    (r"\bT4\b", 320, NVIDIA_DC + "tesla-t4/" + RECALLED),
    (r"\bL4\b", 300, NVIDIA_DC + "l4/" + RECALLED),
    (r"\bA10\b", 600, NVIDIA_DC + "products/a10-gpu/" + RECALLED),
    (r"L40S", 864, NVIDIA_DC + "l40s/" + RECALLED),
    (r"A100.*80GB.*PCIe", 1935, NVIDIA_DC + "a100/ (80 GB PCIe)" + RECALLED),
    (r"A100.*80GB", 2039, NVIDIA_DC + "a100/ (80 GB SXM)" + RECALLED),
    (r"A100", 1555, NVIDIA_DC + "a100/ (40 GB PCIe)" + RECALLED),
    (r"H100.*PCIe", 2000, NVIDIA_DC + "h100/ (PCIe)" + RECALLED),
    (r"H100", 3350, NVIDIA_DC + "h100/ (SXM)" + RECALLED),
    (r"H200", 4800, NVIDIA_DC + "h200/" + RECALLED),
    (r"GB10\b", 273, "https://www.nvidia.com/en-us/products/workstations/dgx-spark/ (LPDDR5x, shared with the CPU)"
                     + RECALLED),
)


def lookup(name: str) -> tuple[float, str] | None:
    """(GB/s, where the figure comes from) for a GPU nvidia-smi names, or None when it is not known."""
    for pattern, gbps, source in KNOWN:
        if re.search(pattern, name, re.IGNORECASE):
            return float(gbps), source
    return None
