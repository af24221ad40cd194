"""Side-by-side timing on a shared, noisy machine: interleave the contenders call by call.

Timing A for a while and then B lets a neighbour's job land on one of them only. Here every round
runs each contender once, in turn, and a contender's figure is its median over rounds, so a burst
of load costs every contender alike and the ratios stay honest.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def interleaved(
    contenders: dict[str, Callable[[], object]], rounds: int, warmup: int = 10
) -> dict[str, float]:
    """Median seconds per call of each contender, measured in alternation."""
    for _ in range(warmup):
        for fn in contenders.values():
            fn()
    times = {name: np.empty(rounds) for name in contenders}
    for r in range(rounds):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn()
            times[name][r] = time.perf_counter() - start
    return {name: float(np.median(t)) for name, t in times.items()}


def markdown_table(header: list[str], rows: list[list]) -> str:
    """Rows of values as a Markdown table (floats to 3 significant figures)."""

    def cell(v) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
