"""Time for grid-25 to reach 24/25 modes per episode, by seed, beside variants of the settings.

    python benchmarks/grid25.py cache_dir=/tmp/cache
    python benchmarks/grid25.py cache_dir=/tmp/cache --seeds 0 1 2 3 4 --variants ""

Each run trains scenarios/gmm_grid25.yaml (the pretrained VAE comes from the cache) and reads its
per-epoch history: the wall time of training, per-epoch evaluations included (``seconds``), at the
first epoch whose 20 held-out episodes cover at least 24 of the 25 modes on average, and the agent
steps collected by then. The variants run after the scenario as shipped, one seed each:

- ``agent=ppo train.epochs=36``: the PPO preset (lr 0.001, 8 passes) instead of the scenario's ``ppo_fast``;
- ``train.vector_env=dummy``: env copies stepped one by one by Tianshou instead of together.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere: this checkout first

from benchmarks.timing import markdown_table  # noqa: E402
from marlgen.build import build_parts  # noqa: E402
from marlgen.config import load_scenario  # noqa: E402
from marlgen.train import train  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TARGET = 24.0


def run(seed: int, variant: str, overrides: list[str]) -> list:
    extra = variant.split() if variant else []
    cfg = load_scenario(ROOT / "scenarios/gmm_grid25.yaml", [f"seed={seed}", *extra, *overrides])
    parts = build_parts(cfg, progress=False)
    with tempfile.TemporaryDirectory() as run_dir:
        history = train(cfg, parts, Path(run_dir), progress=False, log=lambda *a: None).history
    hit = next((row for row in history if row["episode_modes_covered"] >= TARGET), None)
    best = max(row["episode_modes_covered"] for row in history)
    if hit is None:
        return [variant or "as shipped", seed, "not reached", "-", "-", best, history[-1]["seconds"]]
    return [variant or "as shipped", seed, hit["seconds"], hit["training_seconds"], hit["env_steps"], best,
            history[-1]["seconds"]]  # fmt: skip


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("overrides", nargs="*", help="key=value for every run, e.g. cache_dir=/tmp/cache")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--variants", nargs="*", default=["agent=ppo train.epochs=36", "train.vector_env=dummy"]
    )
    args = parser.parse_args(argv)
    rows = [run(seed, "", args.overrides) for seed in args.seeds]
    for row in rows:
        print(row, flush=True)
    for variant in args.variants:
        if variant:
            rows.append(run(args.seeds[0], variant, args.overrides))
            print(rows[-1], flush=True)
    header = ["settings", "seed", "s to 24/25 (with evaluation)", "training s to 24/25", "agent steps",
              "best modes", "s for all epochs"]  # fmt: skip
    print("\n" + markdown_table(header, rows), flush=True)


if __name__ == "__main__":
    main()
