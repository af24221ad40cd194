"""PPO training with and without some of marlgen's changes to Tianshou's and torch's classes, side by side.

    python benchmarks/training_changes.py cache_dir=/tmp/cache [--change update-draws sampling ...]
        [--agents 16] [--reps 3] [--routes shared-gains aec] [--seed 0]

Each change is something marlgen puts in place of Tianshou's or torch's own; the ``tianshou`` rows
put theirs back (all the changes named, together):

- ``update-draws`` (``agents.ppo.DiscretePPOPolicy.forward``): PPO's update passes return the
  distribution without drawing an action nobody reads (Tianshou's policy draws one for every row);
- ``sampling`` (``agents.ppo.Categorical.sample``): actions drawn by inverse CDF, one uniform per row
  (torch's ``multinomial``: an exponential per logit);
- ``categorical`` (``agents.ppo.categorical``): marlgen's Categorical altogether, one ``log_softmax``
  and the inverse-CDF draw (torch's Categorical, argument checks off as before);
- ``adam`` (``agents.ppo.FusedAdamFactory``): torch's fused Adam step (Tianshou's factory: one
  small operation after another per parameter tensor);
- ``no-grad-chunks`` (``agents.ppo.NO_GRAD_CHUNK``): PPO's no-grad passes in chunks of 4,096 rows
  (Tianshou's 256);
- ``buffer-add`` (``SlotReplayBuffer.add``, ``reset``, its stored indices): the sub-buffers' state
  moved all at once (Tianshou's: one Python call per sub-buffer per step);
- ``episode-lengths`` (``SlotReplayBuffer.get_buffer_indices``): a finished episode's length read
  without building its index array (Tianshou's builds it);
- ``null-check`` (``SlotReplayBuffer.hasnull``): the Collector's NaN check after every collect, read
  in place.

Runs alternate (ours, tianshou, ours, ...) so that a shared machine's load falls on both alike.
``buffer-add``, ``episode-lengths`` and ``null-check`` keep every bit, so their learning figures must
come out equal; the others change the random stream (``update-draws``, ``sampling``) or the last
bits of the arithmetic, so the learning figures of one seed differ, and equal learning is a question
for several seeds (benchmarks/training.py --seeds).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere: this checkout first

from benchmarks.timing import markdown_table  # noqa: E402
from benchmarks.training import ROUTES, run  # noqa: E402

CHANGES = ("update-draws", "sampling", "categorical", "adam", "no-grad-chunks", "buffer-add",
           "episode-lengths", "null-check")  # fmt: skip


def changes() -> dict:
    """name: [(owner, attribute, Tianshou's or torch's value)]. Imported here, after marlgen
    (benchmarks.training), which keeps numba's JIT off as every marlgen run has it; with it on, runs
    train to other figures."""
    import torch
    from tianshou.algorithm.modelfree.reinforce import DiscreteActorPolicy
    from tianshou.algorithm.optim import AdamOptimizerFactory
    from tianshou.data import VectorReplayBuffer

    import agents.ppo as ppo
    from marlgen.buffers import SlotReplayBuffer

    def torch_categorical(logits):  # marlgen's dist_fn before agents.ppo.Categorical
        return torch.distributions.Categorical(logits=logits, validate_args=False)

    def multinomial(self, sample_shape=()):
        return torch.distributions.Categorical.sample(self, torch.Size(sample_shape))

    return {
        "update-draws": [(ppo.DiscretePPOPolicy, "forward", DiscreteActorPolicy.forward)],
        "sampling": [(ppo.Categorical, "sample", multinomial)],
        "categorical": [(ppo, "categorical", torch_categorical)],
        "adam": [(ppo, "FusedAdamFactory", AdamOptimizerFactory)],
        "no-grad-chunks": [(ppo, "NO_GRAD_CHUNK", 256)],
        "buffer-add": [
            (SlotReplayBuffer, "add", VectorReplayBuffer.add),
            (SlotReplayBuffer, "reset", VectorReplayBuffer.reset),
            (SlotReplayBuffer, "_stored_indices", lambda self: VectorReplayBuffer.sample_indices(self, 0)),
        ],
        "episode-lengths": [(SlotReplayBuffer, "get_buffer_indices", VectorReplayBuffer.get_buffer_indices)],
        "null-check": [(SlotReplayBuffer, "hasnull", VectorReplayBuffer.hasnull)],
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
    all_changes = changes()
    undone = [swap for name in args.change for swap in all_changes[name]]
    ours = [vars(owner)[attribute] for owner, attribute, _ in undone]
    seconds: dict = {}
    learned: dict = {}
    for _ in range(args.reps):
        for route in args.routes:
            for who in ("ours", "tianshou"):
                if who == "tianshou":
                    for owner, attribute, theirs in undone:
                        setattr(owner, attribute, theirs)
                try:
                    r = run(route, args.agents, "ppo_fast", 8, 4096, [*args.overrides, f"seed={args.seed}"])
                finally:
                    for (owner, attribute, _), mine in zip(undone, ours, strict=True):
                        setattr(owner, attribute, mine)
                seconds.setdefault((route, who), []).append(r["training_s"])
                learned.setdefault((route, who), set()).add((r["best_modes"], r["last_modes"]))
                print(f"{route} {who}: {r['training_s']:.2f} s, modes {r['best_modes']} / {r['last_modes']}",
                      flush=True)  # fmt: skip
    rows = []
    for route in args.routes:
        mine, theirs = np.median(seconds[route, "ours"]), np.median(seconds[route, "tianshou"])
        for who, s in (("ours", mine), ("tianshou", theirs)):
            (best, last), *rest = sorted(learned[route, who])
            same = "yes" if not rest and learned[route, "ours"] == learned[route, "tianshou"] else "no"
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
