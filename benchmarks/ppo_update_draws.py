"""PPO training with and without the action draws of its update passes, side by side.

    python benchmarks/ppo_update_draws.py cache_dir=/tmp/cache [--agents 16] [--reps 3] \\
        [--routes shared-gains aec]

``agents.ppo.DiscretePPOPolicy`` moves the random stream on by the draws a categorical sample
makes instead of drawing actions the update throws away; ``tianshou`` rows put Tianshou's own
``DiscreteActorPolicy.forward`` back. Runs alternate (ours, tianshou, ours, ...) so that a shared
machine's load falls on both alike; the learning figures must come out equal (same bits).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere: this checkout first

from agents import ppo  # noqa: E402
from benchmarks.timing import markdown_table  # noqa: E402
from benchmarks.training import ROUTES, run  # noqa: E402

OURS = ppo.DiscretePPOPolicy.forward


def main(argv=None) -> None:
    # Here, not at the top: tianshou must come after marlgen (imported through agents), which keeps
    # numba's JIT off as every marlgen entry point does; with it on, runs train to other figures.
    from tianshou.algorithm.modelfree.reinforce import DiscreteActorPolicy

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("overrides", nargs="*", help="key=value for every run, e.g. cache_dir=/tmp/cache")
    parser.add_argument("--agents", type=int, default=16)
    parser.add_argument("--routes", nargs="*", choices=list(ROUTES), default=["shared-gains", "aec"])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="as benchmarks/training.py's first seed")
    args = parser.parse_args(argv)
    seconds: dict = {}
    learned: dict = {}
    for _ in range(args.reps):
        for route in args.routes:
            for draws, forward in (("ours", OURS), ("tianshou", DiscreteActorPolicy.forward)):
                ppo.DiscretePPOPolicy.forward = forward
                try:
                    r = run(route, args.agents, "ppo_fast", 8, 4096, [*args.overrides, f"seed={args.seed}"])
                finally:
                    ppo.DiscretePPOPolicy.forward = OURS
                seconds.setdefault((route, draws), []).append(r["training_s"])
                learned.setdefault((route, draws), set()).add((r["best_modes"], r["last_modes"]))
                print(f"{route} {draws}: {r['training_s']:.2f} s", flush=True)
    rows = []
    for route in args.routes:
        ours, theirs = np.median(seconds[route, "ours"]), np.median(seconds[route, "tianshou"])
        for draws, s in (("ours", ours), ("tianshou", theirs)):
            (best, last), *rest = sorted(learned[route, draws])
            same = "yes" if not rest and learned[route, "ours"] == learned[route, "tianshou"] else "NO"
            rows.append([route, draws, f"{s:.2f}", f"{theirs / s:.2f}", f"{best:.2f} / {last:.2f}", same])
    print(markdown_table(["route", "update draws", "training s (median)", "x tianshou", "modes best / last",
                          "same learning"], rows))  # fmt: skip
    if len(args.routes) > 1:
        for draws in ("ours", "tianshou"):
            ratio = np.median(seconds[args.routes[-1], draws]) / np.median(seconds[args.routes[0], draws])
            print(f"{args.routes[0]} against {args.routes[-1]} ({draws} draws): {ratio:.2f}x")


if __name__ == "__main__":
    main()
