"""PPO training with and without one of marlgen's changes to Tianshou's classes, side by side.

    python benchmarks/training_changes.py cache_dir=/tmp/cache [--change update-draws null-check]
        [--agents 16] [--reps 3] [--routes shared-gains aec]

Each change is a method marlgen overrides; the ``tianshou`` rows put Tianshou's own back:
``update-draws`` (``agents.ppo.DiscretePPOPolicy.forward``: PPO's update passes move the random
stream on instead of drawing actions nobody reads) and ``null-check`` (``SlotReplayBuffer.hasnull``:
the Collector's NaN check after every collect, read in place). Runs alternate (ours, tianshou, ours,
...) so that a shared machine's load falls on both alike; the learning figures must come out equal
(the changes keep every bit).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere: this checkout first

from benchmarks.timing import markdown_table  # noqa: E402
from benchmarks.training import ROUTES, run  # noqa: E402

CHANGES = ("update-draws", "null-check")


def changes() -> dict:
    """name: (class, method, Tianshou's method). Imported here, after marlgen (benchmarks.training),
    which keeps numba's JIT off as every marlgen run has it; with it on, runs train to other figures."""
    from tianshou.algorithm.modelfree.reinforce import DiscreteActorPolicy
    from tianshou.data import VectorReplayBuffer

    from agents.ppo import DiscretePPOPolicy
    from marlgen.buffers import SlotReplayBuffer

    return {
        "update-draws": (DiscretePPOPolicy, "forward", DiscreteActorPolicy.forward),
        "null-check": (SlotReplayBuffer, "hasnull", VectorReplayBuffer.hasnull),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("overrides", nargs="*", help="key=value for every run, e.g. cache_dir=/tmp/cache")
    parser.add_argument("--change", nargs="+", default=["update-draws"], choices=CHANGES,
                        help="the changes the tianshou rows undo, together")  # fmt: skip
    parser.add_argument("--agents", type=int, default=16)
    parser.add_argument("--routes", nargs="*", choices=list(ROUTES), default=["shared-gains", "aec"])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="as benchmarks/training.py's first seed")
    args = parser.parse_args(argv)
    undone = [changes()[name] for name in args.change]
    ours = [getattr(cls, method) for cls, method, _ in undone]
    seconds: dict = {}
    learned: dict = {}
    for _ in range(args.reps):
        for route in args.routes:
            for who in ("ours", "tianshou"):
                if who == "tianshou":
                    for cls, method, theirs in undone:
                        setattr(cls, method, theirs)
                try:
                    r = run(route, args.agents, "ppo_fast", 8, 4096, [*args.overrides, f"seed={args.seed}"])
                finally:
                    for (cls, method, _), mine in zip(undone, ours, strict=True):
                        setattr(cls, method, mine)
                seconds.setdefault((route, who), []).append(r["training_s"])
                learned.setdefault((route, who), set()).add((r["best_modes"], r["last_modes"]))
                print(f"{route} {who}: {r['training_s']:.2f} s", flush=True)
    rows = []
    for route in args.routes:
        mine, theirs = np.median(seconds[route, "ours"]), np.median(seconds[route, "tianshou"])
        for who, s in (("ours", mine), ("tianshou", theirs)):
            (best, last), *rest = sorted(learned[route, who])
            same = "yes" if not rest and learned[route, "ours"] == learned[route, "tianshou"] else "NO"
            rows.append([route, who, f"{s:.2f}", f"{theirs / s:.2f}", f"{best:.2f} / {last:.2f}", same])
    print(f"\nundone in the tianshou rows: {', '.join(args.change)}")
    header = ["route", "+".join(args.change), "training s (median)", "x tianshou", "modes best / last",
              "same learning"]  # fmt: skip
    print(markdown_table(header, rows))
    if len(args.routes) > 1:
        for who in ("ours", "tianshou"):
            ratio = np.median(seconds[args.routes[-1], who]) / np.median(seconds[args.routes[0], who])
            print(f"{args.routes[0]} against {args.routes[-1]} ({who}): {ratio:.2f}x")


if __name__ == "__main__":
    main()
